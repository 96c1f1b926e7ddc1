"""Closed forms: the optimal draft length of speculative decoding and the break-even acceptance rates.

All formulas live in the abstract model of Leviathan et al. (2023, section 3.4): one target forward costs 1,
one draft forward costs ``c`` (the draft/target cost ratio), verification of K drafts costs ``v`` target steps
(``v = 1`` in Leviathan's model; ``v = t_target(K+1 tokens) / t_target(1 token)`` with real costs), and
acceptance is i.i.d. with rate ``alpha``:

    E(alpha, K) = (1 - alpha^(K+1)) / (1 - alpha)                  expected tokens per target step
    S(alpha, c, K) = E(alpha, K) / (K c + v)                          walltime speedup over autoregressive

**Optimal K** (v = 1). dS/dK = 0 gives alpha^(K+1) (1 - x ln alpha) = 1 with x = K + 1/c; substituting
y = 1 - x ln alpha turns it into y e^(-y) = exp(ln(alpha)/c - ln(alpha) - 1), whose root with y > 1 is the
lower branch of the Lambert W function:

    K* = (1 + W_{-1}(-exp(ln(alpha)/c - 1) / alpha)) / ln(alpha) - 1/c

S is quasi-concave in K (a concave numerator over a positive affine denominator), so the best integer K is
floor(K*) or ceil(K*), clipped to K >= 1.

**Break-even acceptance**: the smallest alpha at which K drafts beat autoregressive decoding solves
E(alpha, K) = K c + v(K); with v = 1 and K = 1 it is alpha = c (Leviathan's "a speedup exists iff alpha > c").

**Vertical synergy** (the seed paper's eq. 3, made testable): a Tiny model drafting k_tiny tokens per review
for the Draft, whose K reviews feed the Target (Chen et al. 2024, "Cascade Speculative Drafting"), yields

    phi(z) = (1 - a0) z (1 - (a0 z)^k0) / (1 - a0 z) + a0^k0 z^(k0+1)   (PGF of one review's yield)
    E3 = (1 - alpha phi(alpha)^K) / (1 - alpha),   S3 = E3 / (v + K (c + k0 c0))

with a0 = alpha_tiny, k0 = k_tiny, c0 the Tiny/Target cost ratio. The tiny stage pays when S3 exceeds the
best 2-level speedup max_K S(alpha, c, K); S3 increases with a0, so the threshold a0_min is one root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import sympy as sp
from scipy.special import lambertw

from speccascade.errors import InputError

from ..acceptance import expected_tokens, vertical_expected_tokens

alpha, c, k, v = sp.symbols("alpha c K v", positive=True)
alpha_tiny, c_tiny, k_tiny = sp.symbols("alpha_tiny c_tiny k_tiny", positive=True)

EXPECTED_TOKENS = (1 - alpha ** (k + 1)) / (1 - alpha)
SPEEDUP_2LEVEL = EXPECTED_TOKENS / (k * c + 1)
SPEEDUP_2LEVEL_REAL_VERIFY = EXPECTED_TOKENS / (k * c + v)
K_STAR = (1 + sp.LambertW(-sp.exp(sp.log(alpha) / c - 1) / alpha, -1)) / sp.log(alpha) - 1 / c
BREAK_EVEN_EQUATION = sp.Eq(EXPECTED_TOKENS, k * c + v)

def review_pgf_polynomial(a0: sp.Expr, k0: int, z: sp.Expr) -> sp.Expr:
    """phi(z) for an integer k0 as an explicit polynomial (``acceptance.review_pgf`` in closed form), so that
    sympy can solve the synergy condition for alpha_tiny."""
    return (1 - a0) * z * sum((a0 * z) ** j for j in range(k0)) + a0**k0 * z ** (k0 + 1)


def vertical_speedup_expression(k: int, k_tiny: int) -> sp.Expr:
    """S3 for fixed integer K and k_tiny in the abstract model (verify cost v), as a sympy expression."""
    phi = review_pgf_polynomial(alpha_tiny, k_tiny, alpha)
    return (1 - alpha * phi**k) / ((1 - alpha) * (v + k * (c + k_tiny * c_tiny)))


# --- numeric forms (numpy, vectorized) -------------------------------------------------------------------

def _arrays(*values):
    return np.broadcast_arrays(*(np.asarray(value, dtype=float) for value in values))


def speedup_2level(alpha_value, c_value, k_value, verify_cost=1.0) -> np.ndarray:
    """S = E(alpha, K) / (K c + v): speculative decoding over autoregressive decoding of the same target."""
    a, cc, kk, vv = _arrays(alpha_value, c_value, k_value, verify_cost)
    return expected_tokens(a, kk) / (kk * cc + vv)


def _w_minus1_of_minus_exp(s: np.ndarray) -> np.ndarray:
    """W_{-1}(-e^s) for s <= -1, via scipy's lambertw; Newton on ln(y) - y = s where e^s underflows."""
    s = np.asarray(s, dtype=float)
    result = np.empty_like(s)
    direct = s > -700.0
    result[direct] = lambertw(-np.exp(s[direct]), -1).real
    if np.any(~direct):
        y = -s[~direct] + np.log(-s[~direct])
        for _ in range(8):
            y = y - (np.log(y) - y - s[~direct]) / (1.0 / y - 1.0)
        result[~direct] = -y
    return result


def continuous_optimal_k(alpha_value, c_value) -> np.ndarray:
    """K* (real) maximizing S(alpha, c, K) with v = 1 (see the module docstring); inf where S grows forever
    (c = 0 or alpha = 1 with c < 1); may be <= 0 where speculation never pays (alpha <= c roughly)."""
    a, cc = _arrays(alpha_value, c_value)
    _check_alpha_c(a, cc)
    out = np.full(a.shape, np.nan)
    unbounded = (cc == 0) | ((a >= 1.0) & (cc < 1.0))
    zero_alpha = a <= 0.0
    out[unbounded] = np.inf
    out[zero_alpha & ~unbounded] = 0.0
    regular = ~unbounded & ~zero_alpha & (a < 1.0)
    if np.any(regular):
        log_a = np.log(a[regular])
        s = log_a / cc[regular] - 1.0 - log_a
        out[regular] = (1.0 + _w_minus1_of_minus_exp(s)) / log_a - 1.0 / cc[regular]
    out[(a >= 1.0) & (cc >= 1.0)] = 0.0
    return out


@dataclass(frozen=True)
class OptimalK:
    """The optimal draft length for one (alpha, c)."""

    alpha: float
    c: float
    k_continuous: float              # Lambert-W optimum (inf when unbounded)
    k: int                           # best integer K >= 1 (capped at k_max when unbounded)
    speedup: float                   # S at k
    neighbours: dict[int, float] = field(default_factory=dict)  # integer candidates -> S
    pays: bool = True                # S(k) > 1: speculation beats autoregressive decoding

    def to_json(self) -> dict:
        return {"alpha": self.alpha, "c": self.c, "k_continuous": _finite_or_none(self.k_continuous),
                "k": self.k, "speedup": self.speedup, "pays": self.pays,
                "neighbours": [{"k": key, "speedup": value} for key, value in self.neighbours.items()],
                "formula": str(K_STAR)}


def _finite_or_none(value: float):
    return float(value) if np.isfinite(value) else None


def optimal_k(alpha_value: float, c_value: float, k_max: int = 64) -> OptimalK:
    """Best integer K in [1, k_max] from the Lambert-W optimum's integer neighbours."""
    if k_max < 1:
        raise InputError(f"k_max must be >= 1, got {k_max}")
    k_cont = float(continuous_optimal_k(alpha_value, c_value))
    if np.isfinite(k_cont):
        candidates = sorted({int(np.clip(np.floor(k_cont), 1, k_max)), int(np.clip(np.ceil(k_cont), 1, k_max))})
    else:
        candidates = [k_max]
    speedups = {kk: float(speedup_2level(alpha_value, c_value, kk)) for kk in candidates}
    best = max(speedups, key=lambda key: (speedups[key], -key))
    return OptimalK(float(alpha_value), float(c_value), k_cont, best, speedups[best], speedups, speedups[best] > 1.0)


def _check_alpha_c(a: np.ndarray, cc: np.ndarray) -> None:
    if np.any((a < 0) | (a > 1)) or np.any(np.isnan(a)):
        raise InputError(f"alpha must be in [0, 1], got {a[(a < 0) | (a > 1) | np.isnan(a)].ravel()[0]}")
    if np.any(cc < 0) or np.any(np.isnan(cc)):
        raise InputError("the cost ratio c must be >= 0")


# --- break-even acceptance -------------------------------------------------------------------------------

def _bisect_increasing(function, target: np.ndarray, lo: float = 0.0, hi: float = 1.0, steps: int = 60):
    """Smallest x in [lo, hi] with function(x) >= target, elementwise, for function increasing in x.

    Returns lo where function(lo) >= target already, nan where function(hi) < target (never reached)."""
    target = np.asarray(target, dtype=float)
    low = np.full(target.shape, lo)
    high = np.full(target.shape, hi)
    reached_at_lo = function(low) >= target
    never = function(high) < target
    for _ in range(steps):
        middle = 0.5 * (low + high)
        above = function(middle) >= target
        high = np.where(above, middle, high)
        low = np.where(above, low, middle)
    return np.where(reached_at_lo, lo, np.where(never, np.nan, high))


def break_even_alpha(c_value, k_value, verify_cost=1.0) -> np.ndarray:
    """Smallest alpha with E(alpha, K) >= K c + v: where K drafts stop losing to autoregressive decoding.

    0 where even alpha = 0 wins (K c + v <= 1); nan where no alpha does (K c + v > K + 1)."""
    cc, kk, vv = _arrays(c_value, k_value, verify_cost)
    return _bisect_increasing(lambda a: expected_tokens(a, kk), kk * cc + vv)


def break_even_alpha_expression(k_value: int) -> sp.Expr | sp.Eq:
    """The break-even alpha as a closed form for K = 1 and 2 (the real root in [0, 1]), else the equation."""
    equation = BREAK_EVEN_EQUATION.subs(k, k_value)
    if k_value > 2:
        return sp.Eq(sp.expand(sp.cancel(equation.lhs)), equation.rhs)
    roots = sp.solve(sp.Eq(sp.cancel(equation.lhs), equation.rhs), alpha)
    return roots[-1]  # the root with the + square root (the one in [0, 1])


@dataclass(frozen=True)
class BreakEven:
    """Minimum acceptance at which speculative decoding beats autoregressive decoding, over K = 1..len(costs)."""

    c: float
    alpha_by_k: dict[int, float | None]
    alpha_min: float | None
    k_at_min: int | None

    def to_json(self) -> dict:
        return {"c": self.c, "alpha_min": self.alpha_min, "k_at_min": self.k_at_min,
                "alpha_by_k": [{"k": key, "alpha": value} for key, value in self.alpha_by_k.items()]}


def minimum_break_even(c_value: float, verify_costs) -> BreakEven:
    """Break-even alpha for K = 1..n with verify_costs[K-1] = t_target(K+1 tokens) / t_target(1 token)."""
    costs = np.asarray(verify_costs, dtype=float)
    ks = np.arange(1, costs.size + 1)
    alphas = break_even_alpha(c_value, ks, costs)
    by_k = {int(kk): (None if np.isnan(value) else float(value)) for kk, value in zip(ks, alphas)}
    if np.all(np.isnan(alphas)):
        return BreakEven(float(c_value), by_k, None, None)
    index = int(np.nanargmin(alphas))
    return BreakEven(float(c_value), by_k, float(alphas[index]), int(ks[index]))


# --- vertical synergy: when the Tiny stage pays --------------------------------------------------------

def vertical_speedup(alpha_value, alpha_tiny_value, c_value, c_tiny_value, k_value, k_tiny_value,
                     verify_cost=1.0) -> np.ndarray:
    """S3 in the abstract model: E3 / (v + K (c + k_tiny c_tiny))."""
    e3 = vertical_expected_tokens(alpha_value, alpha_tiny_value, k_value, k_tiny_value)
    kk, k0, cc, c0, vv = _arrays(k_value, k_tiny_value, c_value, c_tiny_value, verify_cost)
    return e3 / (vv + kk * (cc + k0 * c0))


@dataclass(frozen=True)
class SynergyThreshold:
    """Minimum Tiny acceptance at which the 3-stage cascade beats the best 2-level setup."""

    alpha: float
    c: float
    c_tiny: float
    best_2level_k: int
    best_2level_speedup: float
    alpha_tiny_min: float | None       # over the (K, k_tiny) grid; None: the tiny stage never pays
    k: int | None
    k_tiny: int | None
    grid: dict[tuple[int, int], float | None]

    def to_json(self) -> dict:
        return {"alpha": self.alpha, "c": self.c, "c_tiny": self.c_tiny, "best_2level_k": self.best_2level_k,
                "best_2level_speedup": self.best_2level_speedup, "alpha_tiny_min": self.alpha_tiny_min,
                "k": self.k, "k_tiny": self.k_tiny,
                "grid": [{"k": key[0], "k_tiny": key[1], "alpha_tiny_min": value}
                         for key, value in self.grid.items()]}


def synergy_threshold(alpha_value: float, c_value: float, c_tiny_value: float, k_max: int = 16,
                      k_tiny_max: int = 8) -> SynergyThreshold:
    """Smallest alpha_tiny with S3(K, k_tiny) > max_K S(K) over K <= k_max, k_tiny <= k_tiny_max (abstract model)."""
    _check_alpha_c(np.asarray([alpha_value]), np.asarray([c_value, c_tiny_value]))
    ks = np.arange(1, k_max + 1)
    two_level = speedup_2level(alpha_value, c_value, ks)
    best_index = int(np.argmax(two_level))
    target = float(two_level[best_index])
    kk, k0 = np.meshgrid(np.arange(1, k_max + 1), np.arange(1, k_tiny_max + 1), indexing="ij")
    thresholds = _bisect_increasing(
        lambda a0: vertical_speedup(alpha_value, a0, c_value, c_tiny_value, kk, k0), np.full(kk.shape, target))
    grid = {(int(a), int(b)): (None if np.isnan(value) else float(value))
            for a, b, value in zip(kk.ravel(), k0.ravel(), thresholds.ravel())}
    if np.all(np.isnan(thresholds)):
        return SynergyThreshold(alpha_value, c_value, c_tiny_value, int(ks[best_index]), target, None, None, None,
                                grid)
    flat = int(np.nanargmin(thresholds))
    return SynergyThreshold(alpha_value, c_value, c_tiny_value, int(ks[best_index]), target,
                            float(thresholds.ravel()[flat]), int(kk.ravel()[flat]), int(k0.ravel()[flat]), grid)


@lru_cache(maxsize=64)
def synergy_condition_expression(k: int = 1, k_tiny: int = 1) -> sp.Expr:
    """alpha_tiny at which S3(K, k_tiny) equals a 2-level speedup S2 (symbol), solved where sympy can
    (K = 1, k_tiny = 1 is linear in alpha_tiny); otherwise the equation S3 = S2."""
    s2 = sp.Symbol("S_2")
    equation = sp.Eq(vertical_speedup_expression(k, k_tiny), s2)
    if k * k_tiny <= 2:
        roots = sp.solve(equation, alpha_tiny)
        if roots:
            return sp.simplify(roots[-1])
    return equation
