"""Three-model cascades: the vertical cascade (two variants) and the seed paper's filtered cascade (Algorithm 1).

Vertical cascade (Chen et al. 2024 "Cascade Speculative Drafting"; Spector and Re 2023 "staged"). One Draft
*review* (inner draft length k_tiny):
    Tiny drafts k_tiny tokens y_j ~ r_j (lag 3: first forward 3 tokens, then k_tiny - 1 forwards of 1);
    Draft verifies them in one forward over k_tiny + 2 tokens (lag 2) -> q_1..q_{k_tiny+1}, accepts n with the
    lossless rule and adds one corrected/bonus token. The n + 1 delivered tokens are exact samples of the Draft's
    own autoregressive process, and the Draft distribution of each delivered token is q_1..q_{n+1}, known from
    this forward; they go to a fixed float[slots, V] buffer.
The two registered variants (:mod:`speccascade.strategies`) differ only in when reviews stop and what the Target
verifies:
  ``vertical`` (:class:`VerticalCascade`): exactly k reviews per step; the Target verifies every delivered token
    (between k and k (k_tiny + 1) of them) in one forward over the static k (k_tiny + 1) + 1 slots, slots past the
    delivered count being never accepted (``verify_chain``'s ``valid``). This is the cost model's PGF form.
  ``vertical-budget`` (:class:`VerticalBudget`): reviews run while fewer than k tokens are delivered (at most k
    reviews); the Target verifies the first k delivered tokens, a forward over k + 1 tokens.
Either way the Target verifies against the Draft distributions the tokens were actually drawn from, and a prefix
of an exact Draft sample is an exact Draft sample, so the outer level is ordinary speculative decoding: exactly
the Target's distribution.

Filtered cascade (seed 000, Algorithm 1: Tiny proposes, its top candidates filter the Draft, the Target verifies):
  for each of k positions, Tiny's top-m tokens (m = filter_width) form a set S; the Draft's proposal is its
  distribution restricted to S and renormalized, q'(x) = q(x) [x in S] / q(S) (computed as ``to_probs`` of the
  masked logits); the token is drawn from q' and the Target verifies against q' with the lossless rule. Any q'
  works, so this is exact too; the filter only changes acceptance (and, with an output layer restricted to S, the
  Draft's cost).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM

from speccascade.strategies import TINY_LAG

from .base import DRAFT_LAG, DecodingStrategy, feed, record_verdict, set_cache, split_key
from .program import Loop, Program, Stage, State
from .sampling import GREEDY, SamplingConfig, draw, to_probs, verify_chain
from .strategies import DraftThenVerify, check_positive, draft_token_stage, verify_stage


class _ReviewCascade(DecodingStrategy):
    """Tiny -> Draft -> Target with Draft reviews of k_tiny Tiny drafts; subclasses set when reviews stop
    (:meth:`_more_reviews`) and how many delivered tokens the Target verifies (:attr:`verify_slots`)."""

    roles = ("tiny", "draft", "target")
    lags = (DRAFT_LAG, DRAFT_LAG, 1)
    inner_pair = "tiny->draft"
    outer_pair = "draft->target"

    def __init__(self, tiny: CausalLM, draft: CausalLM, target: CausalLM, k: int = 4, k_tiny: int = 3,
                 sampling: SamplingConfig = GREEDY):
        check_positive("k", k)
        check_positive("k_tiny", k_tiny)
        super().__init__((tiny, draft, target), sampling)
        self.k, self.k_tiny = int(k), int(k_tiny)

    @property
    def max_reviews(self) -> int:
        return self.k

    @property
    def verify_slots(self) -> int:
        raise NotImplementedError

    @property
    def delivered_slots(self) -> int:
        """Rows of the delivered-token buffer: the last review starts below ``verify_slots`` and adds <= k_tiny+1."""
        return max(self.verify_slots, self.k) + self.k_tiny + 1

    @property
    def lookahead(self) -> int:
        return self.delivered_slots

    @property
    def pairs(self) -> dict[str, int]:
        return {self.inner_pair: self.max_reviews * self.k_tiny, self.outer_pair: self.verify_slots}

    @property
    def verify_sizes(self) -> dict[str, int]:
        return {self.inner_pair: self.k_tiny, self.outer_pair: self.verify_slots}

    def knobs(self) -> dict[str, int]:
        return {"k": self.k, "k_tiny": self.k_tiny}

    def reviews(self, proposed: dict[str, int]) -> int:
        return proposed[self.inner_pair] // self.k_tiny

    def buffers(self) -> dict[str, jax.Array]:
        vocab = self.vocab_size
        buffers = {"count": jnp.zeros((), jnp.int32), "rounds": jnp.zeros((), jnp.int32)}
        if not self.sampling.greedy:  # greedy drafts are point masses: the tokens are the distributions
            buffers["q"] = jnp.zeros((self.delivered_slots, vocab), jnp.float32)
            buffers["r"] = jnp.zeros((self.k_tiny, vocab), jnp.float32)
        return buffers

    def _tiny_propose(self, params: Any, state: State) -> State:
        tiny, config, k = self.models[0], self.sampling, self.k_tiny
        base = state["length"] + state["count"]  # working length L

        # the first draft feeds TINY_LAG = 3 tokens ending at L - 1: two levels below the Target, the Tiny may lack
        # three positions at a step's start (its last review accepted every draft, so it never fed the last one,
        # and the Target then accepted everything and added the bonus). Near the prompt's start the window is
        # clamped at 0 and the logits at L - 1 picked by index (the extra position written is overwritten later).
        # Later drafts feed 1 token each, unrolled (k is small).
        for j in range(k):
            if j == 0:
                start = jnp.maximum(base - TINY_LAG, 0)
                logits, cache = feed(tiny, params[0], state["caches"][0], state["seq"], start, TINY_LAG)
                last = jax.lax.dynamic_index_in_dim(logits, base - 1 - start, keepdims=False)
            else:
                logits, cache = feed(tiny, params[0], state["caches"][0], state["seq"], base + j - 1, 1)
                last = logits[-1]
            state, key = split_key(set_cache(state, 0, cache), config)
            token, r = draw(key, last, config)
            state = {**state, "seq": state["seq"].at[base + j].set(token)}
            if r is not None:
                state = {**state, "r": state["r"].at[j].set(r)}
        return state

    def _draft_review(self, params: Any, state: State) -> State:
        draft, config, k = self.models[1], self.sampling, self.k_tiny
        count = state["count"]
        base = state["length"] + count
        logits, cache = feed(draft, params[1], state["caches"][1], state["seq"], base - DRAFT_LAG, k + DRAFT_LAG)
        state, key = split_key(set_cache(state, 1, cache), config)
        logits = logits[DRAFT_LAG - 1:]  # the Draft's logits for the k + 1 positions after L - 1
        drafts = jax.lax.dynamic_slice_in_dim(state["seq"], base, k)
        verdict = verify_chain(key, drafts, None if config.greedy else state["r"], logits, config)
        stats = state["stats"]
        pair = record_verdict(stats["pairs"][self.inner_pair], verdict, state["rounds"] * k)
        state = {**state,
                 "seq": state["seq"].at[base + verdict.accepted].set(verdict.token),
                 "count": count + verdict.accepted + 1, "rounds": state["rounds"] + 1,
                 "stats": {**stats, "pairs": {**stats["pairs"], self.inner_pair: pair}}}
        if not config.greedy:  # the Draft distributions of the delivered tokens, for the Target's verification
            state["q"] = jax.lax.dynamic_update_slice_in_dim(state["q"], to_probs(logits, config), count, 0)
        return state

    def _more_reviews(self, state: State) -> jax.Array:
        raise NotImplementedError

    def _verify(self) -> Stage:
        raise NotImplementedError

    def program(self) -> Program:
        return (Loop(self._more_reviews, (Stage("tiny", self._tiny_propose), Stage("draft", self._draft_review))),
                self._verify())


class VerticalCascade(_ReviewCascade):
    """``vertical``: k Draft reviews per step, the Target verifies every delivered token (k .. k (k_tiny+1))."""

    name = "vertical"

    @property
    def verify_slots(self) -> int:
        return self.k * (self.k_tiny + 1)

    def _more_reviews(self, state: State) -> jax.Array:
        return state["rounds"] < self.k

    def _verify(self) -> Stage:
        return verify_stage(self, 2, self.verify_slots, self.outer_pair, valid="count")


class VerticalBudget(_ReviewCascade):
    """``vertical-budget``: Draft reviews until k tokens are delivered, the Target verifies the first k."""

    name = "vertical-budget"

    @property
    def verify_slots(self) -> int:
        return self.k

    def _more_reviews(self, state: State) -> jax.Array:
        return state["count"] < self.k

    def _verify(self) -> Stage:
        return verify_stage(self, 2, self.k, self.outer_pair)


class FilteredCascade(DraftThenVerify):
    """The seed's Algorithm 1 made exact: Draft proposals restricted to Tiny's top-m, verified by the Target."""

    name = "filtered"
    roles = ("tiny", "draft", "target")
    lags = (DRAFT_LAG, DRAFT_LAG, 1)

    def __init__(self, tiny: CausalLM, draft: CausalLM, target: CausalLM, k: int = 4, filter_width: int = 64,
                 sampling: SamplingConfig = GREEDY, draft_columns: bool = True):
        check_positive("k", k)
        check_positive("filter_width", filter_width)
        super().__init__((tiny, draft, target), sampling)
        if filter_width > self.vocab_size:
            raise InputError(f"filter_width ({filter_width}) exceeds the vocabulary size ({self.vocab_size})")
        self.k, self.filter_width = int(k), int(filter_width)
        # the Draft computes only the m columns of its output head when it can; otherwise it computes all V and
        # masks them, which also measures how much Draft mass the filter keeps (topm_coverage_sum)
        self.columns = bool(draft_columns) and draft.forward_columns is not None

    def extras(self) -> dict[str, jax.Array]:
        return {} if self.columns else {"topm_coverage_sum": jnp.zeros((), jnp.float32)}

    def knobs(self) -> dict[str, int]:
        return {"k": self.k, "filter_width": self.filter_width}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "draft_head": f"{self.filter_width} columns" if self.columns else "full, masked"}

    def output_columns(self, role: str) -> int | None:
        return self.filter_width if role == "draft" and self.columns else None

    def buffers(self) -> dict[str, jax.Array]:
        buffers = super().buffers()
        if self.columns:
            buffers["topm_ids"] = jnp.zeros((self.filter_width,), jnp.int32)
        else:
            buffers["topm"] = jnp.zeros((self.vocab_size,), jnp.bool_)
        return buffers

    def _tiny_filter(self, first: bool) -> Stage:
        tiny, filter_width = self.models[0], self.filter_width

        def step(params: Any, state: State) -> State:
            start = state["length"] - DRAFT_LAG if first else state["length"] + state["i"] - 1
            logits, cache = feed(tiny, params[0], state["caches"][0], state["seq"], start,
                                 DRAFT_LAG if first else 1)
            top = jax.lax.top_k(logits[-1], filter_width)[1].astype(jnp.int32)
            if self.columns:
                return {**set_cache(state, 0, cache), "topm_ids": top}
            mask = jnp.zeros((self.vocab_size,), jnp.bool_).at[top].set(True)
            return {**set_cache(state, 0, cache), "topm": mask}

        return Stage("tiny", step)

    def program(self) -> Program:
        k = self.k
        keep = {"columns": "topm_ids"} if self.columns else {"restrict": "topm"}
        return (self._tiny_filter(first=True), draft_token_stage(self, 1, "draft", first=True, **keep),
                Loop(lambda state: state["i"] < k,
                     (self._tiny_filter(first=False),
                      draft_token_stage(self, 1, "draft", first=False, **keep))),
                verify_stage(self, 2, k, self.pair))
