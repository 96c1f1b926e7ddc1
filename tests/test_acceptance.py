"""Closed forms of expected tokens per step: Leviathan et al. Table 1, limits, the vertical PGF, the Medusa tree."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from speccascade.costmodel.acceptance import (expected_tokens, horizontal_expected_tokens,
                                              review_yield_distribution, vertical_expected_tokens)
from speccascade.costmodel.config import HeadsAccuracy, PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.costmodel.tree import build_tree, marginal_from_cumulative
from speccascade.errors import InputError

# Leviathan et al. 2023, Table 1 (c = 0: the speedup equals the expected tokens per step).
LEVIATHAN_TABLE_1 = [(0.6, 2, 1.96), (0.7, 3, 2.53), (0.8, 2, 2.44), (0.8, 5, 3.69), (0.9, 2, 2.71), (0.9, 10, 6.86)]


@pytest.mark.parametrize("alpha,k,speedup", LEVIATHAN_TABLE_1)
def test_leviathan_table_1(alpha, k, speedup):
    prediction = predict(PredictConfig(alpha=alpha, k=k, c=0.0))
    assert prediction.speedup == pytest.approx(speedup, abs=0.005)
    assert float(expected_tokens(alpha, k)) == pytest.approx(speedup, abs=0.005)


def test_alpha_one_limit_has_no_division_by_zero():
    assert float(expected_tokens(1.0, 7)) == 8.0
    assert float(expected_tokens(1.0 - 1e-12, 7)) == pytest.approx(8.0)
    assert float(vertical_expected_tokens(1.0, 1.0, 3, 2)) == pytest.approx(10.0)
    assert float(vertical_expected_tokens(1.0, 0.5, 3, 2)) == pytest.approx(1 + 3 * 1.75)


@pytest.mark.parametrize("alpha,k", [(0.3, 1), (0.75, 4), (0.95, 9)])
def test_horizontal_with_equal_alphas_and_costs_is_speculative(alpha, k):
    speculative = predict(PredictConfig(alpha=alpha, k=k, c=0.05), "speculative")
    horizontal = predict(PredictConfig(alphas=[alpha] * k, k=k, k_draft=k, c=0.05), "horizontal")
    assert horizontal.speedup == pytest.approx(speculative.speedup, rel=1e-12)
    assert float(horizontal_expected_tokens([alpha] * k)) == pytest.approx(float(expected_tokens(alpha, k)))
    # a tiny drafting the later positions at the same cost changes nothing either
    mixed = predict(PredictConfig(alphas=[alpha] * k, k=k, k_draft=0, c=0.05, c_tiny=0.05), "horizontal")
    assert mixed.speedup == pytest.approx(speculative.speedup, rel=1e-12)


def test_vertical_with_perfect_or_useless_tiny():
    # alpha_tiny = 0: every review yields exactly one draft token: plain speculative decoding with K drafts
    assert float(vertical_expected_tokens(0.8, 0.0, 5, 3)) == pytest.approx(float(expected_tokens(0.8, 5)))
    # alpha_tiny = 1: every review yields k_tiny + 1 tokens: K (k_tiny + 1) drafts
    assert float(vertical_expected_tokens(0.8, 1.0, 3, 2)) == pytest.approx(float(expected_tokens(0.8, 9)))


@pytest.mark.parametrize("alpha,alpha_tiny,k,k_tiny", [(0.8, 0.9, 3, 2), (0.5, 0.6, 2, 4), (0.95, 0.3, 4, 1)])
def test_vertical_pgf_matches_monte_carlo(alpha, alpha_tiny, k, k_tiny):
    rng = np.random.default_rng(7)
    steps = 200_000
    yields = rng.choice(k_tiny + 2, size=(steps, k), p=review_yield_distribution(alpha_tiny, k_tiny)).sum(axis=1)
    accepted = np.minimum(rng.geometric(1 - alpha, size=steps) - 1, yields) + 1
    closed = float(vertical_expected_tokens(alpha, alpha_tiny, k, k_tiny))
    assert abs(accepted.mean() - closed) < 4 * accepted.std() / np.sqrt(steps)


def test_tree_is_optimal_against_brute_force():
    accuracies = [[0.3, 0.5, 0.1], [0.2, 0.6], [0.5]]
    nodes = [(float(np.prod([accuracies[d][r] for d, r in enumerate(path)])), path)
             for depth in (1, 2, 3) for path in itertools.product(*[range(len(a)) for a in accuracies[:depth]])]
    for size in range(1, 7):
        best = max(sum(value for value, _ in subset) for subset in itertools.combinations(nodes, size)
                   if all(len(path) == 1 or path[:-1] in {p for _, p in subset} for _, path in subset))
        assert build_tree(accuracies, size).expected_tokens == pytest.approx(1 + best)


def test_medusa_reference_accuracies():
    data = json.loads(Path(__file__).resolve().parents[1].joinpath("docs/examples/medusa_vicuna7b_acc.json").read_text())
    heads = marginal_from_cumulative(data["heads"])
    tree = build_tree(heads, 63)
    assert tree.nodes == 63 and 1 + heads[0][0] < tree.expected_tokens < 1 + len(heads)
    assert tree.paths[0] == (0,)
    assert np.all(np.diff(tree.expected_tokens_by_size()) >= 0)


def test_bad_accuracy_files_are_input_errors(tmp_path):
    bad = tmp_path / "acc.json"
    bad.write_text(json.dumps({"cumulative": True, "heads": [[0.5, 0.4]]}))
    with pytest.raises(InputError, match="must not decrease"):
        HeadsAccuracy.from_file(bad)
    bad.write_text(json.dumps({"cumulative": False, "heads": [[0.7, 0.6]]}))
    with pytest.raises(InputError, match="sum to"):
        HeadsAccuracy.from_file(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        HeadsAccuracy.from_file(bad)
    with pytest.raises(InputError, match="only"):
        build_tree([[0.5]], 3)
