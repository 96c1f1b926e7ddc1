"""One decoding step of every cost-model strategy, sampled for a block of (rows x lanes) steps.

A :class:`StepModel` turns acceptance draws into *tokens per step* (accepted drafts + the verifier's own token)
and *time per step*. Times come from the cost model: with a fixed draft length the step time is the cost model's
(``costmodel.predict``'s step_ms); with a draft-length policy it is a table over the proposal d built from
``stage_timings(config).forward_ms``: drafter forwards (policy.draft_forwards(d, K)) + verify over d + 1 tokens.

- autoregressive: 1 token per target forward.
- speculative: K drafts, accepted run from the process.
- filtered (the seed's Algorithm 1): a draft position survives Tiny's top-m filter and the Draft's choice with
  probability g = gamma_0 gamma_1|0 (seed eq. 6), independently; the target's acceptance (gamma_2|1) is the process;
  the step keeps min(target run, filter run).
- horizontal: position-dependent drafters; the process is positional (alpha_i per position) by default.
- vertical (Chen et al. 2024): per target step, K Draft reviews; in each, Tiny drafts k_tiny tokens and the Draft
  keeps a run of them plus its own token (the inner process, alpha_tiny); the M tokens of the K reviews are then
  verified by the target (the outer process): tokens = min(M, outer run) + 1.
- vertical-budget: reviews (each Tiny drafts k_tiny tokens, the Draft keeps a run of them plus its own token) run
  until K tokens are delivered; the target verifies the first K (tokens = outer run + 1), and the step's time is
  R x (one review) + the verify forward, R the reviews that step needed (so the step time varies per step).
- heads: the accepted depth in the Medusa candidate tree (:mod:`.tree`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speccascade.costmodel.timings import StageTimings

from .exact import ClosedForm, speculative_closed_form, tree_closed_form, vertical_closed_form
from .policies import DraftPolicy, FixedK, check_policy, is_fixed
from .processes import count_dtype, geometric_run
from .tree import TreeAcceptance


@dataclass
class Block:
    """Sampled steps: ``tokens`` (rows, lanes) and ``step_ms`` (a number, or an array of the same shape)."""

    tokens: np.ndarray
    step_ms: float | np.ndarray
    state: Any = None


def policy_step_ms(policy: DraftPolicy, k: int, draft_ms_per_position: np.ndarray,
                   timings: StageTimings) -> np.ndarray:
    """Step time for every proposal d = 0..K: the drafter's forwards (cumulative per-position cost) + verify(d + 1)."""
    proposals = np.arange(k + 1)
    forwards = np.asarray(policy.draft_forwards(proposals, k), dtype=np.int64)
    cumulative = np.concatenate([[0.0], np.cumsum(draft_ms_per_position)])
    return cumulative[forwards] + np.asarray(timings.forward_ms("target", proposals + 1), dtype=float)


@dataclass
class StepModel:
    """Base: ``name``, the most tokens one step yields, and the fixed-draft-length step time."""

    name: str
    max_tokens: int
    fixed_step_ms: float

    def initial_state(self, rng: np.random.Generator, lanes: int) -> Any:
        return None

    def sample(self, rng: np.random.Generator, rows: int, lanes: int, state: Any) -> Block:
        raise NotImplementedError

    def closed_form(self) -> ClosedForm | None:
        return None

    def stateful(self) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name}


@dataclass
class Autoregressive(StepModel):
    def sample(self, rng, rows, lanes, state) -> Block:
        return Block(np.ones((rows, lanes), dtype=np.uint8), self.fixed_step_ms, state)

    def closed_form(self) -> ClosedForm:
        return ClosedForm(1.0, np.array([0.0, 1.0]), "autoregressive: one token per step")


@dataclass
class Speculative(StepModel):
    """speculative / horizontal / filtered: one drafting level, K positions, optional filter and policy."""

    process: Any = None
    k: int = 1
    policy: DraftPolicy = field(default_factory=FixedK)
    filter_pass: float | None = None          # filtered: gamma_0 * gamma_1|0 per position
    step_ms_table: np.ndarray | None = None   # per proposal d (policies only)

    def initial_state(self, rng, lanes):
        return self.process.initial_state(rng, lanes, self.k)

    def stateful(self) -> bool:
        return self.process.initial_state(np.random.default_rng(0), 1, self.k) is not None

    def sample(self, rng, rows, lanes, state) -> Block:
        cut = None
        if self.filter_pass is not None:
            cut = geometric_run(rng, self.filter_pass, self.k, (rows, lanes), count_dtype(self.k))
        draw = self.process.sample(rng, self.k, rows, lanes, state, cut=cut,
                                   policy=None if is_fixed(self.policy) else self.policy)
        tokens = draw.accepted
        tokens += 1
        if is_fixed(self.policy):
            step_ms = self.fixed_step_ms
        else:
            step_ms = self.step_ms_table[np.asarray(draw.proposed, dtype=np.int64)]
        return Block(tokens, step_ms, draw.state)

    def closed_form(self) -> ClosedForm | None:
        if not is_fixed(self.policy):
            return None
        return speculative_closed_form(self.process, self.k, self.filter_pass)

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "k": self.k, "policy": _policy_info(self.policy),
                "filter_pass": self.filter_pass, **self.process.describe()}


@dataclass
class Vertical(StepModel):
    """K Draft reviews of k_tiny Tiny drafts each, then one target verification of the M reviewed tokens."""

    outer: Any = None
    inner: Any = None
    k: int = 1
    k_tiny: int = 1

    @property
    def max_drafts(self) -> int:
        return self.k * (self.k_tiny + 1)

    def initial_state(self, rng, lanes):
        return (self.outer.initial_state(rng, lanes, self.max_drafts),
                self.inner.initial_state(rng, lanes, self.k_tiny))

    def stateful(self) -> bool:
        return any(part is not None for part in self.initial_state(np.random.default_rng(0), 1))

    def sample(self, rng, rows, lanes, state) -> Block:
        outer_state, inner_state = state if state is not None else (None, None)
        reviews = self.inner.sample(rng, self.k_tiny, rows * self.k, lanes, inner_state)
        drafted = reviews.accepted.reshape(rows, self.k, lanes).sum(axis=1, dtype=np.uint16)
        drafted += self.k                                         # each review adds the Draft's own token
        draw = self.outer.sample(rng, self.max_drafts, rows, lanes, outer_state, proposed=drafted)
        tokens = draw.accepted
        tokens += 1
        return Block(tokens, self.fixed_step_ms, (draw.state, reviews.state))

    def closed_form(self) -> ClosedForm | None:
        return vertical_closed_form(self.outer, self.inner, self.k, self.k_tiny)

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "k": self.k, "k_tiny": self.k_tiny, **self.outer.describe(),
                "inner": self.inner.describe()}


@dataclass
class VerticalBudget(StepModel):
    """Draft reviews of k_tiny Tiny drafts until k tokens are delivered; the target verifies the first k."""

    outer: Any = None
    inner: Any = None
    k: int = 1
    k_tiny: int = 1
    review_ms: float = 0.0   # one review: the Tiny's k_tiny forwards and the Draft's review forward
    verify_ms: float = 0.0   # the target's forward over k + 1 tokens

    def initial_state(self, rng, lanes):
        return (self.outer.initial_state(rng, lanes, self.k), self.inner.initial_state(rng, lanes, self.k_tiny))

    def stateful(self) -> bool:
        return any(part is not None for part in self.initial_state(np.random.default_rng(0), 1))

    def reviews(self, rng, rows, lanes, inner_state) -> tuple[np.ndarray, Any]:
        """Reviews each step needs: the first r with yield_1 + ... + yield_r >= k (at most k, each yields >= 1)."""
        draws = self.inner.sample(rng, self.k_tiny, rows * self.k, lanes, inner_state)
        yields = draws.accepted.reshape(rows, self.k, lanes).astype(np.int32) + 1
        delivered = np.cumsum(yields, axis=1)
        return np.argmax(delivered >= self.k, axis=1) + 1, draws.state

    def sample(self, rng, rows, lanes, state) -> Block:
        outer_state, inner_state = state if state is not None else (None, None)
        reviews, inner_state = self.reviews(rng, rows, lanes, inner_state)
        draw = self.outer.sample(rng, self.k, rows, lanes, outer_state)
        tokens = draw.accepted
        tokens += 1
        return Block(tokens, reviews * self.review_ms + self.verify_ms, (draw.state, inner_state))

    def closed_form(self) -> ClosedForm | None:
        return speculative_closed_form(self.outer, self.k, None)

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, "k": self.k, "k_tiny": self.k_tiny, **self.outer.describe(),
                "inner": self.inner.describe()}


@dataclass
class Heads(StepModel):
    tree: TreeAcceptance | None = None

    def sample(self, rng, rows, lanes, state) -> Block:
        tokens = self.tree.sample(rng, rows, lanes)
        tokens += 1
        return Block(tokens, self.fixed_step_ms, state)

    def closed_form(self) -> ClosedForm:
        return tree_closed_form(self.tree)

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, **self.tree.describe()}


def _policy_info(policy: DraftPolicy) -> dict[str, Any]:
    info = {"name": getattr(policy, "name", type(policy).__name__)}
    if hasattr(policy, "threshold"):
        info["threshold"] = policy.threshold
    return info


__all__ = ["Block", "StepModel", "Autoregressive", "Speculative", "Vertical", "VerticalBudget", "Heads", "policy_step_ms",
           "check_policy"]
