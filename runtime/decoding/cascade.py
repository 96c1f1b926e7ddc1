"""Three-model cascades: the vertical cascade and the seed paper's filtered cascade (Algorithm 1).

Vertical cascade (Chen et al. 2024 "Cascade Speculative Drafting"; Spector and Re 2023 "staged"), outer K, inner k:
  repeat while fewer than K draft-level tokens are ready (a ``Loop``, at most K rounds):
    Tiny drafts k tokens y_j ~ r_j (lag 2: first forward 2 tokens, then k - 1 forwards of 1);
    Draft verifies them in one forward over k + 2 tokens (lag 2) -> q_1..q_{k+1}, accepts n with the lossless
    rule and adds one corrected/bonus token. The n + 1 delivered tokens are exact samples of the Draft's own
    autoregressive process, and the Draft distribution of each delivered token is q_1..q_{n+1}, known from
    this forward; they go to a fixed float[K + k + 1, V] buffer.
  Target verifies the first K delivered tokens against those Draft distributions (the distribution each token
  was actually drawn from) and commits. Taking the first K tokens of an exact Draft sample is itself an exact
  Draft sample, so the outer level is ordinary speculative decoding: exactly the Target's distribution.

Filtered cascade (seed 000, Algorithm 1: Tiny proposes, its top candidates filter the Draft, the Target verifies):
  for each of K positions, Tiny's top-m tokens form a set S; the Draft's proposal is its distribution restricted to
  S and renormalized, q'(x) = q(x) [x in S] / q(S) (computed as ``to_probs`` of the masked logits); the token is
  drawn from q' and the Target verifies against q' with the lossless rule. Any q' works, so this is exact too;
  the filter only changes acceptance (and, with an output layer restricted to S, the Draft's cost).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM

from .base import DRAFT_LAG, Strategy, feed, record_verdict, set_cache, split_key
from .program import Loop, Program, Stage, State
from .sampling import GREEDY, SamplingConfig, draw, to_probs, verify_chain
from .strategies import DraftThenVerify, check_positive, draft_token_stage, verify_stage


class VerticalCascade(Strategy):
    """Tiny -> Draft -> Target: Tiny speculates for Draft (k per round), Draft for Target (K per step)."""

    name = "cascade"
    roles = ("tiny", "draft", "target")
    lags = (DRAFT_LAG, DRAFT_LAG, 1)
    inner_pair = "tiny->draft"
    outer_pair = "draft->target"

    def __init__(self, tiny: CausalLM, draft: CausalLM, target: CausalLM, k_outer: int = 6, k_inner: int = 3,
                 sampling: SamplingConfig = GREEDY):
        check_positive("k_outer", k_outer)
        check_positive("k_inner", k_inner)
        super().__init__((tiny, draft, target), sampling)
        self.k_outer, self.k_inner = int(k_outer), int(k_inner)

    @property
    def lookahead(self) -> int:
        return self.k_outer + self.k_inner + 1

    @property
    def pairs(self) -> dict[str, int]:
        return {self.inner_pair: self.k_outer * self.k_inner, self.outer_pair: self.k_outer}

    @property
    def verify_sizes(self) -> dict[str, int]:
        return {self.inner_pair: self.k_inner, self.outer_pair: self.k_outer}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "k_outer": self.k_outer, "k_inner": self.k_inner}

    def forward_plan(self, proposed: dict[str, int]) -> list[tuple[str, int]]:
        rounds = proposed[self.inner_pair] // self.k_inner
        one_round = [("tiny", DRAFT_LAG)] + [("tiny", 1)] * (self.k_inner - 1) + [("draft", self.k_inner + DRAFT_LAG)]
        return one_round * rounds + [("target", self.k_outer + 1)]

    def buffers(self) -> dict[str, jax.Array]:
        vocab = self.vocab_size
        buffers = {"count": jnp.zeros((), jnp.int32), "rounds": jnp.zeros((), jnp.int32)}
        if not self.sampling.greedy:  # greedy drafts are point masses: the tokens are the distributions
            buffers["q"] = jnp.zeros((self.k_outer + self.k_inner + 1, vocab), jnp.float32)
            buffers["r"] = jnp.zeros((self.k_inner, vocab), jnp.float32)
        return buffers

    def _tiny_propose(self, params: Any, state: State) -> State:
        tiny, config, k = self.models[0], self.sampling, self.k_inner
        base = state["length"] + state["count"]  # working length L

        # the first draft feeds 2 tokens from L - 2 (lag 2); later drafts 1 token each, unrolled (k is small)
        for j in range(k):
            start, count = (base - DRAFT_LAG, DRAFT_LAG) if j == 0 else (base + j - 1, 1)
            logits, cache = feed(tiny, params[0], state["caches"][0], state["seq"], start, count)
            state, key = split_key(set_cache(state, 0, cache), config)
            token, r = draw(key, logits[-1], config)
            state = {**state, "seq": state["seq"].at[base + j].set(token)}
            if r is not None:
                state = {**state, "r": state["r"].at[j].set(r)}
        return state

    def _draft_review(self, params: Any, state: State) -> State:
        draft, config, k = self.models[1], self.sampling, self.k_inner
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

    def program(self) -> Program:
        k_outer = self.k_outer
        return (Loop(lambda state: state["count"] < k_outer,
                     (Stage("tiny", self._tiny_propose), Stage("draft", self._draft_review))),
                verify_stage(self, 2, k_outer, self.outer_pair))


class FilteredCascade(DraftThenVerify):
    """The seed's Algorithm 1 made exact: Draft proposals restricted to Tiny's top-m, verified by the Target."""

    name = "filtered"
    roles = ("tiny", "draft", "target")
    lags = (DRAFT_LAG, DRAFT_LAG, 1)

    def __init__(self, tiny: CausalLM, draft: CausalLM, target: CausalLM, k: int = 4, top_m: int = 32,
                 sampling: SamplingConfig = GREEDY, draft_columns: bool = True):
        check_positive("k", k)
        check_positive("top_m", top_m)
        super().__init__((tiny, draft, target), sampling)
        if top_m > self.vocab_size:
            raise InputError(f"top_m ({top_m}) exceeds the vocabulary size ({self.vocab_size})")
        self.k, self.top_m = int(k), int(top_m)
        # the Draft computes only the m columns of its output head when it can; otherwise it computes all V and
        # masks them, which also measures how much Draft mass the filter keeps (topm_coverage_sum)
        self.columns = bool(draft_columns) and draft.forward_columns is not None

    def extras(self) -> dict[str, jax.Array]:
        return {} if self.columns else {"topm_coverage_sum": jnp.zeros((), jnp.float32)}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "top_m": self.top_m,
                "draft_head": f"{self.top_m} columns" if self.columns else "full, masked"}

    def output_columns(self, role: str) -> int | None:
        return self.top_m if role == "draft" and self.columns else None

    def forward_plan(self, proposed: dict[str, int]) -> list[tuple[str, int]]:
        return ([("tiny", DRAFT_LAG), ("draft", DRAFT_LAG)] + [("tiny", 1), ("draft", 1)] * (self.k - 1)
                + [("target", self.k + 1)])

    def buffers(self) -> dict[str, jax.Array]:
        buffers = super().buffers()
        if self.columns:
            buffers["topm_ids"] = jnp.zeros((self.top_m,), jnp.int32)
        else:
            buffers["topm"] = jnp.zeros((self.vocab_size,), jnp.bool_)
        return buffers

    def _tiny_filter(self, first: bool) -> Stage:
        tiny, top_m = self.models[0], self.top_m

        def step(params: Any, state: State) -> State:
            start = state["length"] - DRAFT_LAG if first else state["length"] + state["i"] - 1
            logits, cache = feed(tiny, params[0], state["caches"][0], state["seq"], start,
                                 DRAFT_LAG if first else 1)
            top = jax.lax.top_k(logits[-1], top_m)[1].astype(jnp.int32)
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
