"""Every decoding strategy as sympy expressions over acceptance and per-forward times.

Time symbols are the seconds of one forward of a stage (``forward.py`` gives them for real hardware; the abstract
mode sets t_target = t_verify = 1 and t_draft = c, Leviathan et al. 2023 section 3.4). For each strategy:

    ms_per_token = step_time / expected_tokens,   speedup = t_target_1 / ms_per_token

=============  ==========================================================  ============================================
strategy       expected tokens per target step E                           step time
=============  ==========================================================  ============================================
autoregressive 1                                                           t_T(1)
speculative    (1 - a^(K+1)) / (1 - a)                                     K t_D(1) + t_T(K+1)
vertical       (1 - a phi(a)^K) / (1 - a)  (Chen et al. 2024, PGF)         K (k0 t_0(1) + t_D(k0+1)) + t_T(K(k0+1)+1)
filtered       (1 - g^(K+1)) / (1 - g), g = g0 g1|0 g2|1 (seed eq. 6)      K (t_0(1) + t_D,m(1)) + t_T(K+1)
horizontal     1 + sum_i prod_{j<=i} a_j                                   K_D t_D(1) + (K - K_D) t_0(1) + t_T(K+1)
heads          1 + sum of tree node values (Medusa, best-first tree)       t_T(N+1) + t_heads
=============  ==========================================================  ============================================

t_D,m is a Draft forward whose output layer computes only the m columns of Tiny's top-m (the seed's Algorithm 1);
the vertical cascade verifies its static buffer of K (k0 + 1) draft tokens (every review fully accepted), which is
what a fixed-shape runtime does. The physical bound is the target's weight bytes streamed once per step at the
datasheet bandwidth of the level that holds them, divided by the most tokens one step can yield.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from .acceptance import ALPHA, ALPHA_TINY, EXPECTED_SPECULATIVE, EXPECTED_VERTICAL, K, K_TINY, VERTICAL_DRAFT_TOKENS
from .symbolic import CompiledExpression, compile_expression

_time = {"nonnegative": True}
T_TARGET_1 = sp.Symbol("t_target_1", positive=True)        # one target decode step (1 token)
T_VERIFY = sp.Symbol("t_target_verify", **_time)           # target forward over all drafted tokens + 1
T_DRAFT_1 = sp.Symbol("t_draft_1", **_time)                # one draft forward over 1 token
T_DRAFT_REVIEW = sp.Symbol("t_draft_review", **_time)      # draft forward over k_tiny + 1 tokens (a review)
T_TINY_1 = sp.Symbol("t_tiny_1", **_time)                  # one tiny forward over 1 token
T_HEADS = sp.Symbol("t_heads", **_time)                    # Medusa heads on top of the verify forward
GAMMA = sp.Symbol("gamma_total", nonnegative=True)         # filtered cascade: gamma_0 gamma_1|0 gamma_2|1
K_DRAFT = sp.Symbol("k_draft", nonnegative=True, integer=True)  # horizontal: positions drafted by the Draft
TREE_TOKENS = sp.Symbol("tree_expected_tokens", positive=True)  # heads: 1 + sum of node values
HORIZONTAL_TOKENS = sp.Symbol("horizontal_expected_tokens", positive=True)  # 1 + sum_i prod_{j<=i} a_j

STRATEGY_NAMES = ("autoregressive", "speculative", "vertical", "filtered", "horizontal", "heads")


@dataclass(frozen=True)
class Strategy:
    """A strategy's expressions: expected tokens per step, step time, tokens the target verifies per step."""

    name: str
    description: str
    expected_tokens: sp.Expr
    step_time: sp.Expr
    verify_tokens: sp.Expr

    @property
    def time_per_token(self) -> sp.Expr:
        return self.step_time / self.expected_tokens

    @property
    def speedup(self) -> sp.Expr:
        return T_TARGET_1 / self.time_per_token

    def compiled(self, part: str) -> CompiledExpression:
        return _compiled(self.name, part)


STRATEGIES: dict[str, Strategy] = {
    "autoregressive": Strategy(
        "autoregressive", "one target forward per token", sp.Integer(1), T_TARGET_1, sp.Integer(1)),
    "speculative": Strategy(
        "speculative", "Draft proposes K tokens, Target verifies K+1 in one forward (Leviathan et al. 2023)",
        EXPECTED_SPECULATIVE, K * T_DRAFT_1 + T_VERIFY, K + 1),
    "vertical": Strategy(
        "vertical", "Tiny drafts k_tiny tokens per Draft review, K reviews per Target step (Chen et al. 2024)",
        EXPECTED_VERTICAL, K * (K_TINY * T_TINY_1 + T_DRAFT_REVIEW) + T_VERIFY, VERTICAL_DRAFT_TOKENS + 1),
    "filtered": Strategy(
        "filtered", "Tiny's top-m restricts each Draft proposal (seed Algorithm 1; gamma_total by eq. 6)",
        EXPECTED_SPECULATIVE.subs(ALPHA, GAMMA), K * (T_TINY_1 + T_DRAFT_1) + T_VERIFY, K + 1),
    "horizontal": Strategy(
        "horizontal", "Draft drafts the first k_draft positions, Tiny the remaining K - k_draft",
        HORIZONTAL_TOKENS, K_DRAFT * T_DRAFT_1 + (K - K_DRAFT) * T_TINY_1 + T_VERIFY, K + 1),
    "heads": Strategy(
        "heads", "Medusa heads propose a candidate tree of N nodes, verified in one Target forward",
        TREE_TOKENS, T_VERIFY + T_HEADS, sp.Symbol("tree_nodes", positive=True, integer=True) + 1),
}


def get_strategy(name: str) -> Strategy:
    from speccascade.errors import InputError

    if name not in STRATEGIES:
        raise InputError(f"unknown strategy {name!r}; known: {', '.join(STRATEGY_NAMES)}")
    return STRATEGIES[name]


@lru_cache(maxsize=None)
def _compiled(name: str, part: str) -> CompiledExpression:
    strategy = STRATEGIES[name]
    expression = {"expected_tokens": strategy.expected_tokens, "step_time": strategy.step_time,
                  "time_per_token": strategy.time_per_token}[part]
    return compile_expression(sp.sympify(expression))


def symbols_used() -> dict[str, sp.Symbol]:
    """Every symbol a strategy expression may use, by name (for explain's legend)."""
    return {symbol.name: symbol for symbol in (ALPHA, ALPHA_TINY, K, K_TINY, T_TARGET_1, T_VERIFY, T_DRAFT_1,
                                               T_DRAFT_REVIEW, T_TINY_1, T_HEADS, GAMMA, K_DRAFT, TREE_TOKENS,
                                               HORIZONTAL_TOKENS)}
