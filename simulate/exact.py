"""Exact distributions of tokens per step, where they exist: the yardstick the simulation is checked against.

The *means* are the cost model's closed forms (imported from :mod:`speccascade.costmodel.acceptance` and
:mod:`speccascade.costmodel.tree`, never re-derived here). The *distributions* come from the survival function of
the accepted run, S_j = P(run >= j), with P(tokens = j + 1) = S_j - S_{j+1} and E[tokens] = sum_{j=0}^{K} S_j:

- i.i.d. alpha: S_j = alpha^j; positional: S_j = prod_{i<=j} alpha_i; a filter passing each position with
  probability g multiplies S_j by g^j.
- Markov (mean alpha, lag-1 correlation rho, p11 = alpha + rho (1 - alpha), p01 = alpha (1 - rho)): a step that
  starts after an accepted token has S_j = p11^j, after a rejected one S_j = p01 p11^(j-1) (j >= 1). With the chain
  running on across steps the start state is stationary over steps: P(start accepted) = pi = a0 / (1 - a1 + a0),
  a_s = P(all K accepted | s). With a fresh start per step, S_j = alpha p11^(j-1). The Markov mean has no cost-model
  counterpart (it assumes i.i.d.), so it is computed here from this survival function.
- Vertical cascade: the Draft's K reviews yield M draft tokens, the convolution of K copies of the review yield
  (``costmodel.acceptance.review_yield_distribution``); the target keeps min(M, run): S_j = P(M >= j) alpha^j.
- Heads: P(depth >= d) = sum of the values of the tree's depth-d nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speccascade.costmodel.acceptance import (expected_tokens, filtered_total_acceptance,
                                              horizontal_expected_tokens, review_yield_distribution,
                                              vertical_expected_tokens)

from .empirical import EmpiricalBetas
from .processes import IID, Markov, Positional
from .tree import TreeAcceptance


@dataclass(frozen=True)
class ClosedForm:
    """Exact mean tokens per step, its distribution (index t = tokens) and where the mean comes from."""

    mean: float
    pmf: np.ndarray
    source: str


def pmf_from_survival(survival: np.ndarray) -> np.ndarray:
    """S_0..S_K -> P(tokens = t) for t = 0..K+1 (P(tokens = 0) = 0)."""
    survival = np.append(np.asarray(survival, dtype=float), 0.0)
    return np.concatenate([[0.0], survival[:-1] - survival[1:]])


def markov_survival(process: Markov, k: int) -> np.ndarray:
    """P(run >= j), j = 0..K, of one step with K drafts (fixed K) under the Markov process."""
    powers = process.p11 ** np.arange(k)                     # p11^(j-1) for j = 1..K
    start_accepted = process.stationary_start(k) if process.persistent else None
    if start_accepted is None:
        first = process.alpha
    else:
        first = start_accepted * process.p11 + (1.0 - start_accepted) * process.p01
    return np.concatenate([[1.0], first * powers])


def process_survival(process, k: int) -> np.ndarray | None:
    """S_0..S_K for the processes with an exact law at fixed K (None for replayed streams)."""
    if isinstance(process, IID):
        return process.alpha ** np.arange(k + 1, dtype=float)
    if isinstance(process, Positional):
        return np.concatenate([[1.0], np.cumprod(process.confidence(k))])
    if isinstance(process, Markov):
        return markov_survival(process, k)
    if isinstance(process, EmpiricalBetas) and process.resample == "iid":
        return process.mean_acceptance ** np.arange(k + 1, dtype=float)
    return None


def process_mean(process, k: int) -> tuple[float, str] | None:
    """Mean tokens per step of a speculative step: the cost model's closed form where its assumption holds."""
    if isinstance(process, IID):
        return float(expected_tokens(process.alpha, k)), "costmodel.acceptance.expected_tokens"
    if isinstance(process, Positional):
        return float(horizontal_expected_tokens(process.confidence(k))), \
            "costmodel.acceptance.horizontal_expected_tokens"
    if isinstance(process, EmpiricalBetas) and process.resample == "iid":
        return float(expected_tokens(process.mean_acceptance, k)), \
            "costmodel.acceptance.expected_tokens (mean beta)"
    if isinstance(process, Markov):
        return float(markov_survival(process, k).sum()), "exact two-state Markov chain (simulate.exact)"
    return None


def speculative_closed_form(process, k: int, filter_pass: float | None = None) -> ClosedForm | None:
    survival, mean = process_survival(process, k), process_mean(process, k)
    if survival is None or mean is None:
        return None
    value, source = mean
    if filter_pass is not None:
        survival = survival * filter_pass ** np.arange(k + 1)
        if isinstance(process, IID):
            gamma = filtered_total_acceptance(filter_pass, 1.0, process.alpha)
            value, source = float(expected_tokens(gamma, k)), "costmodel (seed eq. 6 gamma_total, expected_tokens)"
        else:
            value, source = float(survival.sum()), source + " x filter (simulate.exact)"
    return ClosedForm(value, pmf_from_survival(survival), source)


def draft_count_pmf(alpha_tiny: float, k_tiny: int, reviews: int) -> np.ndarray:
    """P(M = m), m = 0..reviews (k_tiny + 1): tokens the Draft's ``reviews`` reviews yield (K-fold convolution)."""
    review = review_yield_distribution(alpha_tiny, k_tiny)
    total = np.array([1.0])
    for _ in range(reviews):
        total = np.convolve(total, review)
    return total


def vertical_closed_form(outer, inner, reviews: int, k_tiny: int) -> ClosedForm | None:
    if not (isinstance(outer, IID) and isinstance(inner, IID)):
        return None
    counts = draft_count_pmf(inner.alpha, k_tiny, reviews)
    at_least = counts[::-1].cumsum()[::-1]                         # P(M >= j)
    survival = at_least * outer.alpha ** np.arange(at_least.size)
    mean = float(vertical_expected_tokens(outer.alpha, inner.alpha, reviews, k_tiny))
    return ClosedForm(mean, pmf_from_survival(survival), "costmodel.acceptance.vertical_expected_tokens")


def tree_closed_form(sampler: TreeAcceptance) -> ClosedForm:
    depth = sampler.tree.depth
    survival = np.zeros(depth + 1)
    survival[0] = 1.0
    for path, value in zip(sampler.tree.paths, sampler.tree.values):
        survival[len(path)] += value
    return ClosedForm(sampler.tree.expected_tokens, pmf_from_survival(survival),
                      "costmodel.tree.CandidateTree.expected_tokens")
