"""Closed forms (costmodel/optimal.py) against brute force and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from speccascade.costmodel.search import optimal
from speccascade.costmodel.acceptance import vertical_expected_tokens
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import evaluate
from speccascade.errors import InputError


def test_issue_example_alpha_075_c_002():
    result = optimal.optimal_k(0.75, 0.02)
    assert result.k == 9
    assert result.speedup == pytest.approx(3.1989, abs=1e-4)
    assert result.k_continuous == pytest.approx(9.0444, abs=1e-3)
    assert set(result.neighbours) == {9, 10}


@pytest.mark.parametrize("alpha,c", [(0.6, 0.01), (0.75, 0.02), (0.8, 0.05), (0.9, 0.1), (0.95, 0.001),
                                     (0.5, 0.2), (0.99, 0.3)])
def test_lambert_w_optimum_matches_scipy(alpha, c):
    def negative_speedup(k):
        return -float(optimal.speedup_2level(alpha, c, k))

    numeric = minimize_scalar(negative_speedup, bounds=(0.0, 2000.0), method="bounded",
                              options={"xatol": 1e-9}).x
    assert float(optimal.continuous_optimal_k(alpha, c)) == pytest.approx(numeric, rel=1e-4, abs=1e-4)


def test_sympy_expression_is_the_numeric_optimum_and_a_stationary_point():
    function = sp.lambdify((optimal.alpha, optimal.c), optimal.K_STAR, modules=["scipy", "numpy"])
    for alpha, c in [(0.75, 0.02), (0.9, 0.05), (0.6, 0.1)]:
        assert complex(function(alpha, c)).real == pytest.approx(float(optimal.continuous_optimal_k(alpha, c)))
        derivative = sp.diff(optimal.SPEEDUP_2LEVEL, optimal.k).subs(
            {optimal.alpha: sp.Rational(str(alpha)), optimal.c: sp.Rational(str(c))})
        k_star = optimal.K_STAR.subs({optimal.alpha: sp.Rational(str(alpha)), optimal.c: sp.Rational(str(c))})
        assert abs(sp.N(derivative.subs(optimal.k, k_star), 40)) < 1e-30


@settings(max_examples=150, deadline=None)
@given(alpha=st.floats(0.05, 0.995), c=st.floats(1e-4, 0.9))
def test_integer_optimum_equals_brute_force(alpha, c):
    ks = np.arange(1, 3001)
    speedups = optimal.speedup_2level(alpha, c, ks)
    result = optimal.optimal_k(alpha, c, k_max=3000)
    assert result.speedup == pytest.approx(float(speedups.max()), rel=1e-12)


def test_unbounded_and_degenerate_cases():
    assert np.isinf(optimal.continuous_optimal_k(0.8, 0.0))
    assert optimal.optimal_k(0.8, 0.0, k_max=12).k == 12
    assert np.isinf(optimal.continuous_optimal_k(1.0, 0.1))
    assert optimal.continuous_optimal_k(0.0, 0.1) == 0.0
    no_gain = optimal.optimal_k(0.3, 0.5)
    assert no_gain.k == 1 and not no_gain.pays
    # e^(ln(alpha)/c) underflows: the Newton branch must agree with the brute-force optimum
    tiny_c = optimal.optimal_k(0.75, 1e-5, k_max=500)
    brute = np.arange(1, 501)[np.argmax(optimal.speedup_2level(0.75, 1e-5, np.arange(1, 501)))]
    assert tiny_c.k == brute


def test_bad_alpha_is_input_error():
    with pytest.raises(InputError, match="alpha"):
        optimal.continuous_optimal_k(1.5, 0.1)
    with pytest.raises(InputError, match="cost ratio"):
        optimal.continuous_optimal_k(0.5, -0.1)


@pytest.mark.parametrize("c", [0.0, 0.02, 0.1, 0.3])
@pytest.mark.parametrize("verify", [1.0, 1.05, 1.4])
def test_break_even_alpha_against_brute_force(c, verify):
    alphas = np.linspace(0.0, 1.0, 20001)
    for k in (1, 2, 3, 5, 8):
        cost = k * c + verify
        wins = optimal.expected_tokens(alphas, k) >= cost
        expected = alphas[np.argmax(wins)] if wins.any() else np.nan
        value = float(optimal.break_even_alpha(c, k, verify))
        if np.isnan(expected):
            assert np.isnan(value)
        else:
            assert value == pytest.approx(expected, abs=1e-4)


def test_break_even_leviathan_corollary_alpha_equals_c():
    # v = 1: the cheapest K is 1 and the threshold is alpha = c (Leviathan et al. 2023, corollary 3.9)
    for c in (0.01, 0.1, 0.4):
        result = optimal.minimum_break_even(c, np.ones(12))
        assert result.k_at_min == 1
        assert result.alpha_min == pytest.approx(c, abs=1e-12)


def test_break_even_closed_forms():
    assert sp.simplify(optimal.break_even_alpha_expression(1) - (optimal.c + optimal.v - 1)) == 0
    quadratic = optimal.break_even_alpha_expression(2)
    for c, verify in [(0.05, 1.0), (0.1, 1.3)]:
        value = float(quadratic.subs({optimal.c: c, optimal.v: verify}))
        assert value == pytest.approx(float(optimal.break_even_alpha(c, 2, verify)), abs=1e-9)
    assert isinstance(optimal.break_even_alpha_expression(4), sp.Eq)


def test_break_even_with_real_verify_cost_grows():
    # verification that costs more per drafted token pushes the threshold up
    cheap = optimal.minimum_break_even(0.05, np.ones(8))
    costly = optimal.minimum_break_even(0.05, 1.0 + 0.2 * np.arange(1, 9))
    assert costly.alpha_min > cheap.alpha_min
    never = optimal.minimum_break_even(0.9, np.full(4, 3.0))
    assert never.alpha_min is None and never.k_at_min is None


def test_vertical_speedup_matches_strategy_evaluate_in_abstract_mode():
    config = PredictConfig(strategy="vertical", alpha=0.8, alpha_tiny=0.7, c=0.1, c_tiny=0.01, k=3, k_tiny=2)
    ks, k0s = np.meshgrid(np.arange(1, 7), np.arange(1, 5), indexing="ij")
    lead = evaluate("vertical", config, k=ks, k_tiny=k0s)["speedup"]
    mine = optimal.vertical_speedup(0.8, 0.7, 0.1, 0.01, ks, k0s)
    np.testing.assert_allclose(mine, lead, rtol=1e-12)


def test_polynomial_pgf_matches_acceptance_module():
    for k, k_tiny in [(1, 1), (2, 3), (4, 2)]:
        expression = optimal.vertical_speedup_expression(k, k_tiny)
        values = {optimal.alpha: 0.8, optimal.alpha_tiny: 0.6, optimal.c: 0.0, optimal.c_tiny: 0.0, optimal.v: 1.0}
        assert float(expression.subs(values)) == pytest.approx(
            float(vertical_expected_tokens(0.8, 0.6, k, k_tiny)), rel=1e-12)


def test_synergy_threshold_against_brute_force():
    alpha, c, c_tiny = 0.8, 0.12, 0.004
    result = optimal.synergy_threshold(alpha, c, c_tiny, k_max=10, k_tiny_max=4)
    best_two = max(float(optimal.speedup_2level(alpha, c, kk)) for kk in range(1, 11))
    assert result.best_2level_speedup == pytest.approx(best_two)
    a0 = np.linspace(0, 1, 10001)[:, None, None]
    ks = np.arange(1, 11)[None, :, None]
    k0 = np.arange(1, 5)[None, None, :]
    beats = optimal.vertical_speedup(alpha, a0, c, c_tiny, ks, k0) >= best_two
    brute = float(a0[np.argmax(beats.any(axis=(1, 2))), 0, 0])
    assert result.alpha_tiny_min == pytest.approx(brute, abs=2e-4)
    # at the threshold the cascade ties the best 2-level speedup
    tied = optimal.vertical_speedup(alpha, result.alpha_tiny_min, c, c_tiny, result.k, result.k_tiny)
    assert float(tied) == pytest.approx(best_two, rel=1e-9)


def test_synergy_never_when_tiny_costs_too_much():
    result = optimal.synergy_threshold(0.8, 0.05, 0.2, k_max=8, k_tiny_max=4)
    assert result.alpha_tiny_min is None


def test_synergy_closed_form_k1_linear():
    expression = optimal.synergy_condition_expression(1, 1)
    s2 = sp.Symbol("S_2")
    values = {optimal.alpha: 0.7, optimal.c: 0.1, optimal.c_tiny: 0.01, optimal.v: 1.0, s2: 1.6}
    a0 = float(expression.subs(values))
    speedup = optimal.vertical_speedup(0.7, a0, 0.1, 0.01, 1, 1)
    assert float(speedup) == pytest.approx(1.6, rel=1e-12)
