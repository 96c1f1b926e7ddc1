"""What every strategy shares: the decoding state, feeding a model from the token buffer, step statistics.

State (a dict pytree with fixed shapes, so one compiled step serves every step):

* ``seq`` int32[C]: prompt + committed tokens in ``[0, length)``; positions from ``length`` on hold the
  current step's provisional (draft) tokens or garbage. ``C`` is the decoder's capacity.
* ``length`` int32: committed tokens. ``caches``: one cache per model (same order as ``roles``). ``key``: PRNG.
* ``stats``: per-step counters (reset by :meth:`DecodingStrategy.begin`), plus each strategy's own buffers.

Cache invariant (the "lag"): at the start of a step a model with lag ``g`` holds valid cache entries for
positions ``[0, length - g)`` and its first forward of the step feeds ``seq[length - g : ...]`` starting at
position ``length - g``. The final verifier has lag 1 (it feeds the last committed token plus the drafts). A
drafter has lag 2: re-feeding the second-to-last token covers the case where every draft was accepted and the
drafter never saw its own last draft (the usual off-by-one of speculative decoding), with static shapes and
no branch. Every forward positions the cache explicitly (:func:`feed`), so rollback is free: entries past the
pointer are stale, masked by attention and overwritten later.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import jax
import jax.numpy as jnp

from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM, with_position

from .program import Program, State
from .sampling import SamplingConfig, Verdict

FINAL_LAG = 1
DRAFT_LAG = registry.DRAFT_LAG


def feed(model: CausalLM, params: Any, cache: dict, seq: jax.Array, start: jax.Array, count: int,
         ids: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """Run ``model`` over ``seq[start : start + count]`` written at positions ``start..``; logits float32[count, V],
    or float32[count, m] of the vocabulary entries ``ids`` int32[m] only (``CausalLM.forward_columns``)."""
    tokens = jax.lax.dynamic_slice_in_dim(seq, start, count)[None, :]
    cache = with_position(cache, start)
    if ids is None:
        logits, cache = model.forward(params, cache, tokens)
    else:
        logits, cache = model.forward_columns(params, cache, tokens, ids)
    return logits[0].astype(jnp.float32), cache


def split_key(state: State, config: SamplingConfig) -> tuple[State, jax.Array]:
    """A fresh subkey for one random draw. Greedy decoding draws nothing, so it splits nothing (on XLA:CPU each
    threefry split is a small loop of its own: skipping it keeps the greedy step lean)."""
    if config.greedy:
        return state, state["key"]
    key, sub = jax.random.split(state["key"])
    return {**state, "key": key}, sub


def set_cache(state: State, index: int, cache: dict) -> State:
    caches = list(state["caches"])
    caches[index] = cache
    return {**state, "caches": tuple(caches)}


def pair_template(flag_slots: int) -> dict[str, jax.Array]:
    """Counters of one (drafter -> verifier) pair for one step. ``tested``: positions whose verdict was drawn."""
    return {"proposed": jnp.zeros((), jnp.int32), "tested": jnp.zeros((), jnp.int32),
            "accepted": jnp.zeros((), jnp.int32), "beta_sum": jnp.zeros((), jnp.float32),
            "flags": jnp.full((flag_slots,), -1, jnp.int8)}


def record_verdict(pair: dict[str, jax.Array], verdict: Verdict, flag_offset: jax.Array | int) -> dict[str, jax.Array]:
    return {"proposed": pair["proposed"] + verdict.proposed,
            "tested": pair["tested"] + verdict.beta_count,
            "accepted": pair["accepted"] + verdict.accepted,
            "beta_sum": pair["beta_sum"] + verdict.beta_sum,
            "flags": jax.lax.dynamic_update_slice_in_dim(pair["flags"], verdict.flags, flag_offset, 0)}


def commit(state: State, verdict: Verdict) -> State:
    """Commit the accepted drafts (already in ``seq[length:]``) and the verdict's extra token."""
    length = state["length"]
    seq = state["seq"].at[length + verdict.accepted].set(verdict.token)
    return {**state, "seq": seq, "length": length + verdict.accepted + 1}


class DecodingStrategy(ABC):
    """A decoding strategy: models by role, a sampling config, and a step program over the shared state.

    ``name`` is the strategy's registry name (:mod:`speccascade.strategies`); :meth:`knobs` gives its knobs by
    their registry names, and :meth:`forward_plan` the registry's step shape at those knobs, which the runtime
    must execute (tests count the forwards a compiled step really runs against it)."""

    name: str
    roles: tuple[str, ...]
    lags: tuple[int, ...]

    def __init__(self, models: tuple[CausalLM, ...], sampling: SamplingConfig):
        vocab = {model.vocab_size for model in models}
        if len(vocab) != 1:
            raise InputError(f"{self.name}: models disagree on the vocabulary size: {sorted(vocab)}")
        self.models = models
        self.sampling = sampling
        self.vocab_size = models[0].vocab_size

    @property
    def params(self) -> tuple[Any, ...]:
        return tuple(model.params for model in self.models)

    @property
    def spec(self) -> registry.StrategySpec:
        return registry.get(self.name)

    def knobs(self) -> dict[str, int]:
        """The strategy's knobs by their registry names (``k``, ``k_tiny``, ``filter_width``, ...)."""
        return {}

    def reviews(self, proposed: dict[str, int]) -> int | None:
        """Draft reviews one step ran, from the pairs' ``proposed`` counts (None: no reviews in this strategy)."""
        return None

    def with_models(self, models: tuple[CausalLM, ...]) -> "DecodingStrategy":
        """The same strategy over other models of the same roles (e.g. sharded copies)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.models = models
        return clone

    @property
    @abstractmethod
    def lookahead(self) -> int:
        """Positions past ``length`` one step may touch (token buffer or caches)."""

    @property
    def pairs(self) -> dict[str, int]:
        """Pair name -> flag slots per step (e.g. ``{"draft->target": K}``)."""
        return {}

    @property
    def verify_sizes(self) -> dict[str, int]:
        """Pair name -> draft tokens per verification (the flag slots come in chunks of this size)."""
        return self.pairs

    def extras(self) -> dict[str, jax.Array]:
        """Strategy-specific per-step scalar statistics, zeroed."""
        return {}

    def buffers(self) -> dict[str, jax.Array]:
        """Strategy-specific fixed-shape state (draft distributions, counters), zeroed."""
        return {}

    def config(self) -> dict[str, Any]:
        """What a trace header records about this strategy."""
        return {"strategy": self.name, "sampling": self.sampling.describe(), "knobs": self.knobs(),
                "models": {role: model.name for role, model in zip(self.roles, self.models)}}

    def output_columns(self, role: str) -> int | None:
        """How many output-head columns the forwards of ``role`` compute (None: the whole vocabulary)."""
        return None

    def forward_plan(self, proposed: dict[str, int]) -> list[tuple[str, int]]:
        """The model forwards one step ran, as (role, new tokens), given each pair's ``proposed`` count: the
        registry's step shape at this strategy's knobs (and the step's review count, where it is random)."""
        shape = self.spec.step_shape(self.knobs())
        reviews = self.reviews(proposed) if shape.reviews is None else None
        return [(f.role, int(f.tokens)) for f in shape.forwards(reviews) for _ in range(int(f.count))]

    @abstractmethod
    def program(self) -> Program:
        """The step as stages (see :mod:`.program`)."""

    def stats_template(self) -> dict[str, Any]:
        return {"start_length": jnp.zeros((), jnp.int32),
                "pairs": {name: pair_template(slots) for name, slots in self.pairs.items()},
                "extras": self.extras()}

    def after_prefill(self, params: tuple[Any, ...], state: State) -> State:
        """The state right after every model prefilled the prompt (inside the prefill's jit); a strategy that
        carries more than caches from step to step (the heads' last hidden state) adds it here. Identity here."""
        return state

    def begin(self, state: State) -> State:
        """Reset the per-step statistics and buffers at the start of a step."""
        stats = self.stats_template()
        stats["start_length"] = state["length"]
        return {**state, **self.buffers(), "stats": stats}
