"""The cost model's implementation of every registered strategy: expected tokens per step and its inputs.

What a step *runs* is not defined here: the step time is the registry's step shape (:mod:`speccascade.strategies`)
charged at the forward-time model, ``step = sum over forwards of count x t_role(tokens)``, the same shape the
runtime executes and the simulator draws. This module adds what the registry leaves to the cost model, the
acceptance side (Leviathan et al. 2023; Chen et al. 2024; seed 000 eq. 6; Medusa):

=================  ======================================================================================
strategy           expected tokens per target step E
=================  ======================================================================================
autoregressive     1
speculative        (1 - a^(K+1)) / (1 - a)
vertical           (1 - a phi(a)^K) / (1 - a), phi the PGF of one review's yield (K reviews)
vertical-budget    (1 - a^(K+1)) / (1 - a); reviews per step E[R] by the renewal recursion
filtered           (1 - g^(K+1)) / (1 - g), g = gamma_0 gamma_1|0 gamma_2|1 (seed eq. 6)
horizontal         1 + sum_i prod_{j<=i} a_j
heads              1 + sum of tree node values (best-first tree)
=================  ======================================================================================

and then ``ms_per_token = step / E`` (a renewal-reward ratio, so random review counts enter as their mean) and
``speedup = t_T(1) / ms_per_token``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import sympy as sp

from speccascade import strategies as registry
from speccascade.errors import InputError

from .acceptance import (ALPHA, ALPHA_TINY, EXPECTED_REVIEWS, EXPECTED_SPECULATIVE, EXPECTED_VERTICAL, K, K_TINY,
                         expected_reviews, filtered_total_acceptance, horizontal_expected_tokens, review_pgf)
from .symbolic import CompiledExpression, compile_expression
from .tree import build_tree

GAMMA = sp.Symbol("gamma_total", nonnegative=True)         # filtered cascade: gamma_0 gamma_1|0 gamma_2|1
TREE_TOKENS = sp.Symbol("tree_expected_tokens", positive=True)  # heads: 1 + sum of node values
HORIZONTAL_TOKENS = sp.Symbol("horizontal_expected_tokens", positive=True)  # 1 + sum_i prod_{j<=i} a_j
KNOB_SYMBOLS = {"k": K, "k_tiny": K_TINY, "filter_width": sp.Symbol("m", positive=True, integer=True),
                "k_draft": sp.Symbol("k_draft", nonnegative=True, integer=True),
                "tree_nodes": sp.Symbol("N", positive=True, integer=True)}
ROLE_TIME = {role: sp.Function(f"t_{role}") for role in registry.ROLES}  # t_role(new tokens): one forward


@dataclass(frozen=True)
class Inputs:
    """What one strategy's acceptance side needs, for one (vectorized) evaluation: symbol values, knob values that
    the inputs fix (horizontal's k is the number of alphas), and the heads tree."""

    values: dict[str, Any]
    knobs: dict[str, Any] = field(default_factory=dict)
    tree: Any = None


Getter = Callable[[str], Any]


def need(value, flag: str, strategy: str):
    if value is None:
        raise InputError(f"the {strategy} strategy needs {flag}")
    return value


@dataclass(frozen=True)
class StrategyForm:
    """One strategy in the cost model: E (sympy), how its symbols get values, and notes for ``explain``."""

    name: str
    expected_tokens: sp.Expr
    inputs: Callable[[Getter, Any], Inputs]
    source: str
    notes: tuple[sp.Expr, ...] = ()

    @property
    def spec(self) -> registry.StrategySpec:
        return registry.get(self.name)

    def compiled(self) -> CompiledExpression:
        return _compiled(self.name)

    def step_time_expression(self) -> sp.Expr:
        """The registry's step shape as sympy: sum of count x t_role(tokens) (t_draft^m: an m-column head)."""
        shape = self.spec.step_shape(KNOB_SYMBOLS)
        reviews = shape.reviews if shape.reviews is not None else EXPECTED_REVIEWS
        total = sp.Integer(0)
        for forwards in shape.forwards(reviews):
            time = ROLE_TIME[forwards.role] if forwards.columns is None else sp.Function(f"t_{forwards.role}^m")
            total += sp.sympify(forwards.count) * time(sp.sympify(forwards.tokens))
        return total


COSTMODEL: registry.Implementations[StrategyForm] = registry.Implementations("cost model")


def _register(form: StrategyForm) -> StrategyForm:
    return COSTMODEL.register(form.name, form)


def _speculative_inputs(get: Getter, config) -> Inputs:
    return Inputs({"alpha": need(get("alpha"), "--alpha", "speculative"), "k": get("k")})


def _vertical_inputs(get: Getter, config) -> Inputs:
    return Inputs({"alpha": need(get("alpha"), "--alpha", "vertical"),
                   "alpha_tiny": need(get("alpha_tiny"), "--alpha-tiny", "vertical"),
                   "k": get("k"), "k_tiny": get("k_tiny")})


def _budget_inputs(get: Getter, config) -> Inputs:
    alpha_tiny = need(get("alpha_tiny"), "--alpha-tiny", "vertical-budget")
    return Inputs({"alpha": need(get("alpha"), "--alpha", "vertical-budget"), "k": get("k"),
                   "expected_reviews": expected_reviews(get("k"), get("k_tiny"), alpha_tiny)})


def _filtered_inputs(get: Getter, config) -> Inputs:
    gamma = get("gamma_total")
    if gamma is None:
        gamma_target = get("gamma_target_given_draft")
        gamma_target = gamma_target if gamma_target is not None else get("alpha")
        gamma = filtered_total_acceptance(get("gamma_tiny"), get("gamma_draft_given_tiny"),
                                          need(gamma_target, "--alpha (gamma_2|1)", "filtered"))
    return Inputs({"gamma_total": gamma, "k": get("k")})


def _horizontal_inputs(get: Getter, config) -> Inputs:
    alphas = np.asarray(need(get("alphas"), "--alphas", "horizontal"), dtype=float)
    positions = alphas.shape[-1]
    k_draft = get("k_draft")
    k_draft = registry.default_k_draft(positions) if k_draft is None else k_draft
    if np.any(np.asarray(k_draft) > positions):
        raise InputError(f"k_draft ({int(np.max(k_draft))}) exceeds the number of positions ({positions})")
    return Inputs({"horizontal_expected_tokens": horizontal_expected_tokens(alphas)},
                  {"k": positions, "k_draft": k_draft})


def _heads_inputs(get: Getter, config) -> Inputs:
    accuracy = get("heads_accuracy")
    if accuracy is None:
        raise InputError("the heads strategy needs --heads-accuracy FILE.json")
    tree = build_tree(accuracy.marginal(), get("tree_nodes"))
    return Inputs({"tree_expected_tokens": tree.expected_tokens}, {"tree_nodes": tree.nodes}, tree)


_register(StrategyForm("autoregressive", sp.Integer(1), lambda get, config: Inputs({}),
                       "one target forward per token"))
_register(StrategyForm("speculative", EXPECTED_SPECULATIVE, _speculative_inputs,
                       "Leviathan et al. 2023, eq. 1 (E -> K+1 as alpha -> 1); verification is one forward over K+1"))
_z = sp.Symbol("z")
_register(StrategyForm("vertical", EXPECTED_VERTICAL, _vertical_inputs,
                       "Chen et al. 2024 (Cascade Speculative Drafting): phi is the generating function of the tokens "
                       "one Draft review of k_tiny Tiny drafts yields; K fixed reviews, every delivered token verified",
                       (sp.Eq(sp.Function("phi")(_z), review_pgf(_z)),)))
_register(StrategyForm("vertical-budget", EXPECTED_SPECULATIVE, _budget_inputs,
                       "reviews until K tokens are delivered, the Target verifies K: E as speculative decoding; "
                       "expected_reviews = E[R] by the renewal recursion m(n) = 1 + sum_j P(X = j) m(n - j)",
                       (sp.Eq(EXPECTED_REVIEWS, sp.Symbol("E[R](k, k_tiny, alpha_tiny)")),)))
_register(StrategyForm("filtered", EXPECTED_SPECULATIVE.subs(ALPHA, GAMMA), _filtered_inputs,
                       "the seed paper's Algorithm 1 and eq. 6; t_draft^m: the Draft's output layer computes "
                       "Tiny's top-m columns",
                       (sp.Eq(GAMMA, sp.Symbol("gamma_0") * sp.Symbol("gamma_1|0") * sp.Symbol("gamma_2|1")),)))
_register(StrategyForm("horizontal", HORIZONTAL_TOKENS, _horizontal_inputs,
                       "Chen et al. 2024 horizontal cascade: the Draft drafts positions 1..k_draft, the Tiny the rest",
                       (sp.Eq(HORIZONTAL_TOKENS, 1 + sp.Sum(sp.Product(sp.IndexedBase("alpha")[sp.Symbol("j")],
                                                                        (sp.Symbol("j"), 1, sp.Symbol("i"))),
                                                             (sp.Symbol("i"), 1, K))),)))
_register(StrategyForm("heads", TREE_TOKENS, _heads_inputs,
                       "Medusa (Cai et al. 2024): node value = product of the marginal rank accuracies on its path; "
                       "best-first tree of N nodes; t_heads streams H (d^2 + d V) head weights"))


def get_form(name: str) -> StrategyForm:
    """The cost model's form of ``name`` (canonical or alias; one line naming the problem otherwise)."""
    return COSTMODEL.get(name)


@lru_cache(maxsize=None)
def _compiled(name: str) -> CompiledExpression:
    return compile_expression(sp.sympify(COSTMODEL.table[name].expected_tokens))


def symbols_used() -> dict[str, sp.Symbol]:
    """Every symbol an expected-tokens expression may use, by name (for explain's legend)."""
    return {symbol.name: symbol for symbol in (ALPHA, ALPHA_TINY, K, K_TINY, GAMMA, TREE_TOKENS, HORIZONTAL_TOKENS,
                                               EXPECTED_REVIEWS)}
