"""The simulator against the cost model's closed forms: every strategy over a grid of alpha and K (fixed seeds),
the standard error's 1/sqrt(steps) law and its calibration, reproducibility."""

import itertools
import math

import numpy as np
import pytest

from speccascade.costmodel.config import HeadsAccuracy, PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.simulate import simulate

ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)
KS = (1, 2, 4, 8, 16)
STEPS = 120_000


def heads_config(alpha: float, k: int) -> PredictConfig:
    """min(k, 5) heads, 3 ranks each: a[h][r] = alpha^(h+1) (1 - alpha)^r (each head's ranks sum to <= 1)."""
    heads = [[alpha ** (h + 1) * (1 - alpha) ** r for r in range(3)] for h in range(min(k, 5))]
    nodes = min(4 * k, sum(3 ** (d + 1) for d in range(len(heads))))
    return PredictConfig(heads_accuracy=HeadsAccuracy(cumulative=False, heads=heads), tree_nodes=nodes,
                         verify_cost=1.0)


def grid_config(strategy: str, alpha: float, k: int) -> PredictConfig:
    if strategy == "speculative":
        return PredictConfig(alpha=alpha, k=k, c=0.05)
    if strategy == "filtered":
        return PredictConfig(strategy="filtered", alpha=alpha, k=k, c=0.05, c_tiny=0.01, gamma_tiny=0.97,
                             gamma_draft_given_tiny=0.9)
    if strategy == "horizontal":
        alphas = [min(1.0, alpha * (1.02 - 0.02 * i)) for i in range(k)]   # position-dependent around alpha
        return PredictConfig(alphas=alphas, c=0.05, c_tiny=0.01)
    if strategy == "vertical":
        return PredictConfig(alpha=alpha, alpha_tiny=alpha, k=max(1, k // 2), k_tiny=2, c=0.05, c_tiny=0.01)
    if strategy == "heads":
        return heads_config(alpha, k)
    return PredictConfig(alpha=alpha, k=k, c=0.05, strategy="autoregressive")


STRATEGIES = ("speculative", "filtered", "horizontal", "vertical", "heads")
GRID = list(itertools.product(STRATEGIES, ALPHAS, KS))


def _z_scores() -> dict:
    scores = {}
    for index, (strategy, alpha, k) in enumerate(GRID):
        result = simulate(grid_config(strategy, alpha, k), steps=STEPS, seed=1000 + index, progress=False)
        scores[(strategy, alpha, k)] = result
    return scores


@pytest.fixture(scope="module")
def grid_results():
    return _z_scores()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_simulated_mean_within_three_standard_errors_of_closed_form(grid_results, strategy):
    for (name, alpha, k), result in grid_results.items():
        if name != strategy:
            continue
        closed = result.closed_form_tokens_per_step
        # the closed form is the cost model's own number for this configuration
        assert closed == pytest.approx(result.predicted_tokens_per_step, rel=1e-9)
        if result.stderr_tokens_per_step == 0.0:      # every step alike (a miss is ~1e-6 likely): use the exact sd
            tokens = np.asarray(result.histogram["tokens"])
            pmf = np.asarray(result.histogram["closed_form_pmf"])
            exact_sd = math.sqrt(max(float(pmf @ tokens**2) - closed**2, 0.0) / result.steps)
            assert abs(result.mean_tokens_per_step - closed) <= 3 * exact_sd + 1e-12, (strategy, alpha, k)
            continue
        assert abs(result.z_score) < 3.0, (strategy, alpha, k, result.mean_tokens_per_step, closed)


def test_z_scores_over_the_grid_look_standard_normal(grid_results):
    """No bias hidden under the 3-sigma band: over the 150 grid points the z-scores have mean ~ 0 and sd ~ 1."""
    scores = np.array([result.z_score for result in grid_results.values() if result.stderr_tokens_per_step > 0])
    assert scores.size > 100
    assert abs(scores.mean()) < 4.0 / math.sqrt(scores.size)
    assert 0.8 < scores.std() < 1.2


def test_histogram_matches_exact_distribution(grid_results):
    """Every bin of the simulated histogram is within 4 binomial standard errors of the exact probability."""
    for result in grid_results.values():
        counts = np.asarray(result.histogram["counts"], dtype=float)
        exact = np.asarray(result.histogram["closed_form_pmf"])
        assert exact.sum() == pytest.approx(1.0, abs=1e-9)
        tokens = np.asarray(result.histogram["tokens"])
        assert float(exact @ tokens) == pytest.approx(result.closed_form_tokens_per_step, rel=1e-9)  # pmf mean
        expected = exact * result.steps
        spread = np.sqrt(np.maximum(expected * (1 - exact), 1.0))
        assert np.all(np.abs(counts - expected) < 4 * spread + 1)


def test_autoregressive_is_one_token_per_step():
    result = simulate(grid_config("autoregressive", 0.5, 4), steps=10_000, seed=0)
    assert result.mean_tokens_per_step == 1.0 and result.stderr_tokens_per_step == 0.0
    assert result.ms_per_token.mean == pytest.approx(predict(grid_config("autoregressive", 0.5, 4)).ms_per_token)


def test_standard_error_falls_as_one_over_sqrt_steps():
    config = PredictConfig(alpha=0.8, k=6, c=0.05)
    errors = {steps: simulate(config, steps=steps, seed=3).stderr_tokens_per_step
              for steps in (40_000, 640_000, 10_240_000)}
    assert errors[40_000] / errors[640_000] == pytest.approx(4.0, rel=0.15)
    assert errors[640_000] / errors[10_240_000] == pytest.approx(4.0, rel=0.15)


def test_standard_error_is_calibrated_across_seeds():
    """The reported stderr matches the actual spread of means over independent seeds (i.i.d. and Markov)."""
    from speccascade.simulate import Markov

    config = PredictConfig(alpha=0.7, k=5, c=0.05)
    for process in (None, Markov(0.7, 0.6)):
        results = [simulate(config, process=process, steps=30_000, seed=seed) for seed in range(40)]
        spread = np.std([r.mean_tokens_per_step for r in results], ddof=1)
        reported = np.mean([r.stderr_tokens_per_step for r in results])
        assert spread / reported == pytest.approx(1.0, abs=0.3)


def test_reproducible_from_the_seed_and_independent_of_threads():
    config = PredictConfig(alpha=0.75, alpha_tiny=0.8, k=3, k_tiny=2, c=0.05, c_tiny=0.01)
    first = simulate(config, steps=300_000, seed=11, threads=1)
    second = simulate(config, steps=300_000, seed=11, threads=2)
    other = simulate(config, steps=300_000, seed=12, threads=2)
    assert first.histogram == second.histogram
    assert first.request_latency_ms == second.request_latency_ms
    assert other.histogram != first.histogram


def test_many_small_chunks_give_the_same_law(monkeypatch):
    from speccascade.simulate import engine

    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 1 << 14)
    config = PredictConfig(alpha=0.6, k=4, c=0.05)
    result = simulate(config, steps=400_000, seed=5)
    assert abs(result.z_score) < 3.0
    assert result.requests > 1000


def test_progress_bar_runs(capsys):
    result = simulate(PredictConfig(alpha=0.8, k=4, c=0.05), steps=200_000, seed=0, progress=True)
    assert result.steps >= 200_000
