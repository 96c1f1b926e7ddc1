"""Acceptance processes: which draft tokens the verifier accepts, sampled step by step, vectorized.

Every process samples, for ``rows`` consecutive steps of ``lanes`` independent token streams, the number of
leading draft tokens accepted out of K (the *accepted run*). Each step may be limited by

- ``proposed``: drafts actually proposed (a draft-length policy, or the variable draft count of a cascade);
- ``cut``: an independent rejection at position cut + 1 (the filtered cascade's Tiny top-m filter),

so accepted = min(run, proposed, cut). Stateful processes (Markov, empirical streams) keep one state per lane and
advance it by the tokens the verifier *judged*: the accepted ones plus the rejected one, if any.

Processes: :class:`IID` (Bernoulli(alpha) per token; the run is a truncated geometric, sampled directly from one
uniform: run = min(K, floor(log u / log alpha)), P(run >= j) = alpha^j), :class:`Positional` (alpha_i per
position; P(run >= j) = prod_{i<=j} alpha_i), :class:`Markov` (two-state chain over judged tokens with mean alpha
and lag-1 correlation rho). Empirical processes are in :mod:`.empirical`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from speccascade.errors import InputError

from .policies import DraftPolicy, is_fixed


def count_dtype(k: int) -> type[np.unsignedinteger]:
    """Smallest unsigned type holding 0..k+1 (tokens per step = accepted + 1)."""
    return np.uint8 if k <= 254 else np.uint16


def geometric_run(rng: np.random.Generator, ratio: float, cap: int, shape: tuple[int, ...],
                  dtype=np.uint8) -> np.ndarray:
    """Leading successes of Bernoulli(ratio) trials, at most ``cap``: min(cap, floor(log u / log ratio)), u ~ U[0, 1).

    P(run >= j) = P(u <= ratio^j) = ratio^j: one float32 uniform per sample instead of ``cap`` Bernoulli draws.
    u = 0 (probability 2^-24) gives +inf -> cap; float32 resolution moves each probability by < 1e-7.
    """
    if ratio <= 0.0 or cap <= 0:
        return np.zeros(shape, dtype=dtype)
    if ratio >= 1.0:
        return np.full(shape, cap, dtype=dtype)
    values = rng.random(shape, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(values, out=values)
    values *= np.float32(1.0 / np.log(ratio))
    np.minimum(values, np.float32(cap), out=values)
    return values.astype(dtype)


def apply_limits(accepted: np.ndarray, proposed, cut) -> np.ndarray:
    """accepted = min(run, proposed, cut) in place (None means no limit)."""
    if proposed is not None:
        np.minimum(accepted, np.asarray(proposed).astype(accepted.dtype, copy=False), out=accepted)
    if cut is not None:
        np.minimum(accepted, np.asarray(cut).astype(accepted.dtype, copy=False), out=accepted)
    return accepted


@dataclass
class Draw:
    """One block of steps: ``accepted`` (rows, lanes); ``proposed`` (None: K everywhere) and the new state."""

    accepted: np.ndarray
    proposed: np.ndarray | int | None
    state: Any = None


class AcceptanceProcess(Protocol):
    name: str

    @property
    def mean_acceptance(self) -> float: ...

    def initial_state(self, rng: np.random.Generator, lanes: int, k: int) -> Any: ...

    def confidence(self, k: int) -> np.ndarray: ...

    def sample(self, rng: np.random.Generator, k: int, rows: int, lanes: int, state: Any = None, *,
               proposed=None, cut=None, policy: DraftPolicy | None = None) -> Draw: ...

    def describe(self) -> dict[str, Any]: ...


def _check_probability(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0 or np.isnan(value):
        raise InputError(f"{what} must lie in [0, 1], got {value}")
    return value


def _policy_proposal(policy: DraftPolicy | None, confidence: np.ndarray, proposed):
    """Stateless processes: the policy's proposal (the same for every lane) combined with ``proposed``."""
    if is_fixed(policy):
        return proposed
    if proposed is not None:
        raise InputError("a draft-length policy cannot be combined with a cascade's variable draft count")
    return int(np.asarray(policy.propose(confidence[None, :]))[0])


@dataclass(frozen=True)
class IID:
    """Each draft token accepted independently with probability alpha (Leviathan et al. 2023's assumption)."""

    alpha: float
    name: str = field(default="iid", init=False)

    def __post_init__(self) -> None:
        _check_probability(self.alpha, "alpha")

    @property
    def mean_acceptance(self) -> float:
        return self.alpha

    def initial_state(self, rng, lanes, k):
        return None

    def confidence(self, k: int) -> np.ndarray:
        return np.full(k, self.alpha)

    def sample(self, rng, k, rows, lanes, state=None, *, proposed=None, cut=None, policy=None) -> Draw:
        proposed = _policy_proposal(policy, self.confidence(k), proposed)
        accepted = geometric_run(rng, self.alpha, k, (rows, lanes), count_dtype(k))
        return Draw(apply_limits(accepted, proposed, cut), proposed)

    def describe(self) -> dict[str, Any]:
        return {"process": self.name, "alpha": self.alpha}


@dataclass(frozen=True)
class Positional:
    """Draft position i accepted with probability alpha_i (given the earlier ones were): P(run >= j) = prod_{i<=j}
    alpha_i. Sampled from one uniform per step by counting the survival thresholds above it."""

    alphas: tuple[float, ...]
    name: str = field(default="positional", init=False)

    def __post_init__(self) -> None:
        if len(self.alphas) == 0:
            raise InputError("positional process: give at least one alpha (--alphas a1,a2,...)")
        object.__setattr__(self, "alphas", tuple(_check_probability(a, "every positional alpha") for a in self.alphas))

    @property
    def mean_acceptance(self) -> float:
        return float(np.mean(self.alphas))

    def initial_state(self, rng, lanes, k):
        return None

    def _check_k(self, k: int) -> None:
        if k > len(self.alphas):
            raise InputError(f"positional process has {len(self.alphas)} alphas but K = {k} draft positions")

    def confidence(self, k: int) -> np.ndarray:
        self._check_k(k)
        return np.asarray(self.alphas[:k], dtype=float)

    def sample(self, rng, k, rows, lanes, state=None, *, proposed=None, cut=None, policy=None) -> Draw:
        proposed = _policy_proposal(policy, self.confidence(k), proposed)
        survival = np.cumprod(np.asarray(self.alphas[:k], dtype=np.float64)).astype(np.float32)
        uniforms = rng.random((rows, lanes), dtype=np.float32)
        accepted = np.zeros((rows, lanes), dtype=count_dtype(k))
        scratch = np.empty((rows, lanes), dtype=bool)
        for threshold in survival:           # K vectorized passes; run >= j  <=>  u < prod_{i<=j} alpha_i
            if threshold <= 0.0:
                break
            np.less(uniforms, threshold, out=scratch)
            accepted += scratch
        return Draw(apply_limits(accepted, proposed, cut), proposed)

    def describe(self) -> dict[str, Any]:
        return {"process": self.name, "alphas": list(self.alphas)}


def markov_rho_range(alpha: float) -> tuple[float, float]:
    """rho keeping P(accept | accept) = alpha + rho (1 - alpha) and P(accept | reject) = alpha (1 - rho) in [0, 1]:
    rho in [max(-alpha / (1 - alpha), -(1 - alpha) / alpha), 1]."""
    lower = -np.inf
    if alpha < 1.0:
        lower = max(lower, -alpha / (1.0 - alpha))
    if alpha > 0.0:
        lower = max(lower, -(1.0 - alpha) / alpha)
    return (float(lower) if np.isfinite(lower) else 0.0), 1.0


@dataclass(frozen=True)
class Markov:
    """Two-state Markov chain over the tokens the verifier judges, stationary mean ``alpha``, lag-1 correlation
    ``rho`` (rho = 0 is i.i.d.): P(accept | previous accepted) = alpha + rho (1 - alpha) = p11 and
    P(accept | previous rejected) = alpha (1 - rho) = p01 (stationary mean p01 / (1 - p11 + p01) = alpha).

    ``persistent=True`` (default): the chain runs on across steps, so a step that follows a rejection starts in
    the hard state (bursts outlive steps). ``persistent=False``: each step's first draft is drawn from the
    stationary law (bursts only within a step). Within a step the accepted run is sampled directly: the first
    draft is accepted with p(state), then a truncated geometric run with p11.
    """

    alpha: float
    rho: float = 0.0
    persistent: bool = True
    name: str = field(default="markov", init=False)

    def __post_init__(self) -> None:
        _check_probability(self.alpha, "alpha")
        lower, upper = markov_rho_range(self.alpha)
        if not lower - 1e-12 <= self.rho <= upper + 1e-12 or np.isnan(self.rho):
            raise InputError(f"rho {self.rho} is outside [{lower:.4g}, {upper:g}] for alpha {self.alpha}: "
                             "P(accept|accept) = alpha + rho (1 - alpha) and P(accept|reject) = alpha (1 - rho) "
                             "must lie in [0, 1]")

    @property
    def p11(self) -> float:
        return min(1.0, max(0.0, self.alpha + self.rho * (1.0 - self.alpha)))

    @property
    def p01(self) -> float:
        return min(1.0, max(0.0, self.alpha * (1.0 - self.rho)))

    @property
    def mean_acceptance(self) -> float:
        return self.alpha

    def stationary_start(self, k: int) -> float:
        """P(a step starts after an accepted token) in the long run with K drafts per step: the step-start chain
        moves to 'accepted' iff the step accepts all K, with probability a_s = p_s1 p11^(K-1) from state s."""
        full_after_accept = self.p11 ** k
        full_after_reject = self.p01 * self.p11 ** (k - 1)
        denominator = 1.0 - full_after_accept + full_after_reject
        return self.alpha if denominator <= 1e-15 else full_after_reject / denominator

    def initial_state(self, rng, lanes, k):
        if not self.persistent:
            return None
        return rng.random(lanes) < self.stationary_start(k)

    def confidence(self, k: int) -> np.ndarray:
        """Per position, P(accept | earlier drafts of this step accepted), from the stationary start."""
        return np.concatenate([[self.alpha], np.full(k - 1, self.p11)])

    def sample(self, rng, k, rows, lanes, state=None, *, proposed=None, cut=None, policy=None) -> Draw:
        dtype = count_dtype(k)
        first = rng.random((rows, lanes), dtype=np.float32)
        run = geometric_run(rng, self.p11, k - 1, (rows, lanes), dtype)
        run += 1                                              # the first draft, if accepted, then the run
        if not self.persistent:
            proposed = _policy_proposal(policy, self.confidence(k), proposed)
            run *= first < np.float32(self.alpha)
            return Draw(apply_limits(run, proposed, cut), proposed)
        if state is None:
            state = self.initial_state(rng, lanes, k)
        accept_if_accepted = first < np.float32(self.p11)
        accept_if_rejected = first < np.float32(self.p01)
        fixed = is_fixed(policy)
        if not fixed and proposed is not None:
            raise InputError("a draft-length policy cannot be combined with a cascade's variable draft count")
        used = np.empty((rows, lanes), dtype=np.int64) if not fixed else proposed
        confidence = np.empty((lanes, k))
        confidence[:, 1:] = self.p11
        for row in range(rows):                               # sequential in steps, vectorized over lanes
            first_accepted = np.where(state, accept_if_accepted[row], accept_if_rejected[row])
            limit = None
            if not fixed:
                confidence[:, 0] = np.where(state, self.p11, self.p01)
                limit = used[row] = policy.propose(confidence)
            elif proposed is not None:
                limit = proposed[row] if np.ndim(proposed) == 2 else proposed
            accepted = run[row] * first_accepted
            if limit is not None:
                np.minimum(accepted, np.asarray(limit).astype(dtype, copy=False), out=accepted)
            if cut is not None:
                np.minimum(accepted, cut[row].astype(dtype, copy=False), out=accepted)
            run[row] = accepted
            # the last judged token: accepted iff the whole proposal was accepted; with no proposal the target
            # still writes one token, and the chain moves through that (unjudged) position
            offered = k if limit is None else np.asarray(limit)
            state = np.where(offered > 0, accepted == offered, first_accepted)
        return Draw(run, used, state)

    def describe(self) -> dict[str, Any]:
        return {"process": self.name, "alpha": self.alpha, "rho": self.rho, "persistent": self.persistent,
                "p_accept_after_accept": self.p11, "p_accept_after_reject": self.p01}
