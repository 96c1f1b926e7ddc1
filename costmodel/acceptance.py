"""Expected tokens per target step: the acceptance side of every strategy (sympy, compiled to numpy).

Symbols: ``alpha`` is the probability that the target accepts one draft token (alpha = E[sum_x min(p, q)],
Leviathan et al. 2023); ``alpha_tiny`` the same for Tiny tokens reviewed by the Draft; ``k`` drafts per target step;
``k_tiny`` Tiny drafts per Draft review.

- Speculative decoding (Leviathan et al. 2023, eq. 1): E = sum_{i=0}^{K} alpha^i = (1 - alpha^(K+1)) / (1 - alpha),
  with the limit K + 1 at alpha = 1.
- Vertical cascade (Chen et al. 2024, "Cascade Speculative Drafting", PGF form): one Draft review of k_tiny Tiny
  tokens yields X tokens, P(X = j) = (1 - a0) a0^(j-1) for j <= k0 and P(X = k0 + 1) = a0^k0, whose probability
  generating function is phi(z) = (1 - a0) z G(a0 z, k0) + a0^k0 z^(k0+1), G(r, n) = sum_{i<n} r^i. K reviews give
  M = X_1 + ... + X_K draft tokens; the target keeps a prefix, so E = E[sum_{j=0}^{M} a^j] = (1 - a phi(a)^K) / (1 - a),
  with the limit 1 + K G(a0, k0 + 1) at a = 1.
- Vertical cascade with a delivered-token budget (``vertical-budget``): reviews run until K tokens are delivered and
  the target verifies the first K, so E = (1 - a^(K+1)) / (1 - a) as in speculative decoding; the number R of
  reviews is random, a renewal count over the review yields X: E[R](n) = 1 + sum_j P(X = j) E[R](n - j) with
  E[R](n <= 0) = 0 (:func:`expected_reviews`).
- Horizontal cascade (position-dependent drafters): E = 1 + sum_i prod_{j<=i} alpha_j.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

from .symbolic import UNIT_TOLERANCE, CompiledExpression, compile_expression, geometric_sum

ALPHA, ALPHA_TINY = sp.symbols("alpha alpha_tiny", nonnegative=True)
K, K_TINY = sp.symbols("k k_tiny", positive=True, integer=True)
_z = sp.Symbol("z")

EXPECTED_SPECULATIVE = geometric_sum(ALPHA, K + 1)


def review_pgf(z: sp.Expr, alpha_tiny: sp.Expr = ALPHA_TINY, k_tiny: sp.Expr = K_TINY) -> sp.Expr:
    """phi(z): probability generating function of the tokens one Draft review of ``k_tiny`` Tiny drafts yields."""
    return (1 - alpha_tiny) * z * geometric_sum(alpha_tiny * z, k_tiny) + alpha_tiny**k_tiny * z ** (k_tiny + 1)


EXPECTED_VERTICAL = sp.Piecewise(
    (1 + K * geometric_sum(ALPHA_TINY, K_TINY + 1), sp.Abs(1 - ALPHA) < UNIT_TOLERANCE),
    ((1 - ALPHA * review_pgf(ALPHA) ** K) / (1 - ALPHA), True),
)
EXPECTED_REVIEWS = sp.Symbol("expected_reviews", positive=True)  # vertical-budget: E[R], see expected_reviews


_FORMS = {"speculative": (EXPECTED_SPECULATIVE, (ALPHA, K)),
          "vertical": (EXPECTED_VERTICAL, (ALPHA, ALPHA_TINY, K, K_TINY))}


@lru_cache(maxsize=None)
def _compiled(which: str) -> CompiledExpression:
    return compile_expression(*_FORMS[which])


def expected_tokens(alpha, k) -> np.ndarray:
    """E = (1 - alpha^(K+1)) / (1 - alpha), K + 1 at alpha = 1 (broadcasts over arrays)."""
    return _compiled("speculative")(alpha=np.asarray(alpha, float), k=np.asarray(k, float))


def vertical_expected_tokens(alpha, alpha_tiny, k, k_tiny) -> np.ndarray:
    """E = (1 - alpha phi(alpha)^K) / (1 - alpha) for K Draft reviews of k_tiny Tiny drafts each."""
    return _compiled("vertical")(alpha=np.asarray(alpha, float), alpha_tiny=np.asarray(alpha_tiny, float),
                                 k=np.asarray(k, float), k_tiny=np.asarray(k_tiny, float))


def review_yield_distribution(alpha_tiny: float, k_tiny: int) -> np.ndarray:
    """P(X = j) for j = 0..k_tiny+1 (index j), X the tokens one Draft review yields; P(X = 0) = 0."""
    probabilities = np.zeros(k_tiny + 2)
    j = np.arange(1, k_tiny + 1)
    probabilities[1:k_tiny + 1] = (1 - alpha_tiny) * alpha_tiny ** (j - 1)
    probabilities[k_tiny + 1] = alpha_tiny**k_tiny
    return probabilities


def expected_reviews(k, k_tiny, alpha_tiny) -> np.ndarray:
    """E[R]: expected Draft reviews until at least ``k`` tokens are delivered, each review of ``k_tiny`` Tiny
    drafts yielding X tokens with P(X = j) = (1 - a0) a0^(j-1) (j <= k_tiny), P(X = k_tiny + 1) = a0^k_tiny.

    Renewal recursion m(n) = 1 + sum_j P(X = j) m(n - j), m(n <= 0) = 0, evaluated for n = 1..max(k) at once over
    broadcast arrays (O(max k * max k_tiny) array operations). Limits: a0 = 0 gives k reviews; a0 = 1 gives
    ceil(k / (k_tiny + 1))."""
    k, k_tiny, alpha_tiny = np.broadcast_arrays(np.asarray(k, float), np.asarray(k_tiny, float),
                                                np.asarray(alpha_tiny, float))
    top_k, top_inner = int(np.max(k)), int(np.max(k_tiny))
    yields = np.arange(1, top_inner + 2)  # j = 1 .. max k_tiny + 1
    j = yields.reshape((-1,) + (1,) * k.ndim)
    with np.errstate(invalid="ignore"):
        p_yield = np.where(j <= k_tiny, (1 - alpha_tiny) * alpha_tiny ** (j - 1),
                           np.where(j == k_tiny + 1, alpha_tiny ** k_tiny, 0.0))
    m = [np.zeros_like(k)]  # m[n] for n = 0 .. top_k
    for n in range(1, top_k + 1):
        m.append(np.ones_like(k) + sum(p_yield[index] * m[n - int(step)] for index, step in enumerate(yields)
                                       if step < n))
    stacked = np.stack(m)  # [top_k + 1, ...]
    return np.take_along_axis(stacked, k.astype(int)[None], axis=0)[0]


def horizontal_expected_tokens(alphas) -> np.ndarray:
    """E = 1 + sum_i prod_{j<=i} alpha_j over the last axis of ``alphas`` (position-dependent acceptance)."""
    alphas = np.asarray(alphas, dtype=float)
    return 1.0 + np.cumprod(alphas, axis=-1).sum(axis=-1)


def filtered_total_acceptance(gamma_tiny, gamma_draft_given_tiny, gamma_target_given_draft) -> np.ndarray:
    """The seed paper's eq. 6: gamma_total = gamma_0 * gamma_{1|0} * gamma_{2|1}."""
    return np.asarray(gamma_tiny, float) * np.asarray(gamma_draft_given_tiny, float) * np.asarray(
        gamma_target_given_draft, float)
