"""Draft-length policies: how many of the K draft positions a drafter proposes in one step.

A policy sees, for every lane (an independent token stream) and draft position i = 1..K, the drafter's
*confidence* c_i: the probability that the target accepts the token at position i given that every earlier
draft was accepted (the only case in which position i matters). The processes in :mod:`.processes` supply it:
alpha (i.i.d.), alpha_i (positional), P(accept | previous outcome) (Markov), the recorded beta (empirical betas).
That is an ideally calibrated confidence; a real drafter's (its own max probability, or a learned acceptance
predictor) is noisier, so a threshold policy simulated here is an upper bound on what it gains.

Write your own policy as any object with the two methods of :class:`DraftPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from speccascade.errors import InputError


@runtime_checkable
class DraftPolicy(Protocol):
    """``propose``: confidences (..., K) -> proposed drafts (...) in 0..K; ``draft_forwards``: drafter forwards
    spent for a proposal (the drafter pays for a token it examined and then withheld)."""

    name: str

    def propose(self, confidence: np.ndarray) -> np.ndarray: ...

    def draft_forwards(self, proposed: np.ndarray, k: int) -> np.ndarray: ...


@dataclass(frozen=True)
class FixedK:
    """Always propose all K drafts (the cost model's assumption): K drafter forwards per step."""

    name: str = "fixed"

    def propose(self, confidence: np.ndarray) -> np.ndarray:
        return np.full(confidence.shape[:-1], confidence.shape[-1], dtype=np.int64)

    def draft_forwards(self, proposed: np.ndarray, k: int) -> np.ndarray:
        return np.full(np.shape(proposed), k, dtype=np.int64)


@dataclass(frozen=True)
class ConfidenceThreshold:
    """Stop drafting at the first position whose confidence is below ``threshold``.

    proposed = number of leading positions with c_i >= threshold; the drafter ran one forward more than it
    proposed (it drafted the low-confidence token to see its confidence) unless it reached K:
    forwards = min(proposed + 1, K).
    """

    threshold: float
    name: str = "threshold"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"confidence threshold must lie in [0, 1], got {self.threshold}")

    def propose(self, confidence: np.ndarray) -> np.ndarray:
        return leading_true(np.asarray(confidence) >= self.threshold)

    def draft_forwards(self, proposed: np.ndarray, k: int) -> np.ndarray:
        return np.minimum(np.asarray(proposed, dtype=np.int64) + 1, k)


def leading_true(mask: np.ndarray) -> np.ndarray:
    """Number of leading True values along the last axis (K when all are True)."""
    k = mask.shape[-1]
    first_false = np.argmin(mask, axis=-1)
    return np.where(mask.all(axis=-1), k, first_false).astype(np.int64)


def is_fixed(policy: DraftPolicy | None) -> bool:
    return policy is None or isinstance(policy, FixedK)


def check_policy(policy: DraftPolicy | None) -> DraftPolicy:
    policy = policy or FixedK()
    if not isinstance(policy, DraftPolicy):
        raise InputError(f"draft policy {policy!r} lacks propose(confidence) / draft_forwards(proposed, k)")
    return policy
