"""Autoregressive decoding and two-model speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

Speculative step with K drafts (draft lag 2, target lag 1, see :mod:`.base`):

1. the draft feeds ``seq[length-2:length]`` (2 tokens), then its own drafts one at a time (``K - 1`` forwards of
   1 token, a ``Loop``), sampling x_i ~ q_i and keeping q_i in a fixed float[K, V] buffer;
2. the target feeds ``seq[length-1 : length+K]`` (K + 1 tokens) in one forward, giving p_1..p_{K+1};
3. :func:`.sampling.verify_chain` accepts a prefix and adds one corrected or bonus token; ``length`` advances.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM

from .base import DRAFT_LAG, FINAL_LAG, DecodingStrategy, commit, feed, record_verdict, set_cache, split_key
from .program import Loop, Program, Stage, State
from .sampling import GREEDY, SamplingConfig, draw, to_probs, verify_chain


def check_positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise InputError(f"{name} must be >= 1, got {value}")


def verify_stage(strategy: DecodingStrategy, target_index: int, k: int, pair: str, q_buffer: str = "q",
                 valid: str | None = None) -> Stage:
    """The final verification: the target scores ``seq[length-1 : length+K]`` and commits a verdict. ``valid``
    names a state counter when fewer than K of the K slots hold drafts (see :func:`.sampling.verify_chain`)."""
    target = strategy.models[target_index]
    config = strategy.sampling

    def verify(params: Any, state: State) -> State:
        length = state["length"]
        logits, cache = feed(target, params[target_index], state["caches"][target_index], state["seq"],
                             length - FINAL_LAG, k + 1)
        state = set_cache(state, target_index, cache)
        state, key = split_key(state, config)
        drafts = jax.lax.dynamic_slice_in_dim(state["seq"], length, k)
        q = None if config.greedy else state[q_buffer][:k]
        verdict = verify_chain(key, drafts, q, logits, config, None if valid is None else state[valid])
        stats = state["stats"]
        pairs = {**stats["pairs"], pair: record_verdict(stats["pairs"][pair], verdict, 0)}
        state = {**state, "stats": {**stats, "pairs": pairs}}
        return commit(state, verdict)

    return Stage("target", verify)


def draft_token_stage(strategy: DecodingStrategy, index: int, role: str, first: bool,
                      restrict: str | None = None, columns: str | None = None) -> Stage:
    """One draft token at working position ``length + i`` (``i`` in state): feed, sample, store q_i.

    ``first`` feeds 2 tokens from ``length - 2`` (the lag-2 invariant); later calls feed the previous draft.
    ``restrict`` names a boolean[V] mask in the state: the proposal is then ``to_probs`` of the logits with
    every token outside the mask removed (the filtered cascade's renormalized restriction).
    ``columns`` names int32[m] vocabulary ids in the state instead: the model's output head computes those m
    columns only (``CausalLM.forward_columns``) and the proposal is ``to_probs`` of the m logits, scattered back
    to the vocabulary for verification: the same renormalized restriction, without the other V - m columns."""
    model = strategy.models[index]
    config = strategy.sampling

    def step(params: Any, state: State) -> State:
        i = jnp.zeros((), jnp.int32) if first else state["i"]
        start = state["length"] - DRAFT_LAG if first else state["length"] + i - 1
        count = DRAFT_LAG if first else 1
        logits, cache = feed(model, params[index], state["caches"][index], state["seq"], start, count,
                             None if columns is None else state[columns])
        state = set_cache(state, index, cache)
        logits = logits[-1]
        if restrict is not None:
            mask = state[restrict]
            if config.greedy:  # the Draft's point mass lies inside the Tiny's top-m or not
                coverage = mask[jnp.argmax(logits)].astype(jnp.float32)
            else:
                coverage = jnp.sum(jnp.where(mask, to_probs(logits, config), 0.0))
            logits = jnp.where(mask, logits, -jnp.inf)
            extras = state["stats"]["extras"]
            extras = {**extras, "topm_coverage_sum": extras["topm_coverage_sum"] + coverage}
            state = {**state, "stats": {**state["stats"], "extras": extras}}
        state, key = split_key(state, config)
        token, q = draw(key, logits, config)
        if columns is not None:  # back from column j to vocabulary id ids[j]
            token = state[columns][token]
            q = None if q is None else jnp.zeros((strategy.vocab_size,), q.dtype).at[state[columns]].set(q)
        position = state["length"] + i
        state = {**state, "seq": state["seq"].at[position].set(token), "i": i + 1}
        return state if q is None else {**state, "q": state["q"].at[i].set(q)}

    return Stage(role, step)


class Autoregressive(DecodingStrategy):
    """Plain decoding: one target forward over 1 token per emitted token. The baseline every speedup uses."""

    name = "autoregressive"
    roles = ("target",)
    lags = (FINAL_LAG,)

    def __init__(self, target: CausalLM, sampling: SamplingConfig = GREEDY):
        super().__init__((target,), sampling)

    @property
    def lookahead(self) -> int:
        return 1

    def program(self) -> Program:
        target = self.models[0]
        config = self.sampling

        def step(params: Any, state: State) -> State:
            length = state["length"]
            logits, cache = feed(target, params[0], state["caches"][0], state["seq"], length - FINAL_LAG, 1)
            state, key = split_key(set_cache(state, 0, cache), config)
            token, _ = draw(key, logits[0], config)
            return {**state, "seq": state["seq"].at[length].set(token), "length": length + 1}

        return (Stage("target", step),)


class DraftThenVerify(DecodingStrategy):
    """A step of K Draft tokens (one per position, loop counter ``i``) and one Target verification over K + 1
    positions: the shape that speculative decoding and the filtered cascade share. Subclasses set ``self.k``."""

    pair = "draft->target"
    k: int

    @property
    def lookahead(self) -> int:
        return self.k + 1

    @property
    def pairs(self) -> dict[str, int]:
        return {self.pair: self.k}

    def knobs(self) -> dict[str, int]:
        return {"k": self.k}

    def buffers(self) -> dict[str, jax.Array]:
        buffers = {"i": jnp.zeros((), jnp.int32)}
        if not self.sampling.greedy:  # greedy drafts are point masses: the tokens are the distributions
            buffers["q"] = jnp.zeros((self.k, self.vocab_size), jnp.float32)
        return buffers


class Speculative(DraftThenVerify):
    """Draft -> target speculative decoding with K drafts per step (lossless, any temperature)."""

    name = "speculative"
    roles = ("draft", "target")
    lags = (DRAFT_LAG, FINAL_LAG)

    def __init__(self, draft: CausalLM, target: CausalLM, k: int = 4, sampling: SamplingConfig = GREEDY):
        check_positive("k", k)
        super().__init__((draft, target), sampling)
        self.k = int(k)

    def program(self) -> Program:
        k = self.k
        return (draft_token_stage(self, 0, "draft", first=True),
                Loop(lambda state: state["i"] < k, (draft_token_stage(self, 0, "draft", first=False),)),
                verify_stage(self, 1, k, self.pair))
