"""The optimizer: the issue's abstract example, exhaustive search vs a per-config loop, constraints, reasons, CLI."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.search.optimize import Candidate, OptimizeRequest, optimize
from speccascade.costmodel.predict import predict

from cli_runner import run


def test_cli_issue_example(capsys):
    code, out, err = run(capsys, "optimize", "--alpha", "0.75", "--c", "0.02", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["best"]["k"] == 9
    assert data["best"]["speedup"] == pytest.approx(3.20, abs=0.005)
    assert data["closed_form"]["optimal_k"]["k_continuous"] == pytest.approx(9.044, abs=1e-3)
    assert "LambertW" in data["closed_form"]["optimal_k"]["formula"]
    assert data["closed_form"]["break_even"]["alpha_min"] == pytest.approx(0.02)
    assert [row["k"] for row in data["runner_ups"][:2]] == [10, 8]


def test_cli_table_mentions_lambert_w(capsys):
    code, out, _ = run(capsys, "optimize", "--alpha", "0.75", "--c", "0.02")
    assert code == 0
    assert "Lambert-W" in out and "K = 9" in out


@pytest.mark.parametrize("alpha,c", [(0.6, 0.05), (0.9, 0.01), (0.95, 0.002), (0.7, 0.3)])
def test_abstract_best_k_is_brute_force(alpha, c):
    result = optimize(OptimizeRequest(alpha=alpha, c=c, strategies=["speculative"]))
    ks = np.arange(1, 5000)
    speedups = (1 - alpha ** (ks + 1)) / ((1 - alpha) * (ks * c + 1))
    assert result.best.k == int(ks[np.argmax(speedups)])
    assert result.best.speedup == pytest.approx(float(speedups.max()), rel=1e-9)


def test_abstract_vertical_beats_two_level_above_synergy_threshold():
    request = OptimizeRequest(alpha=0.8, c=0.05, c_tiny=0.002, alpha_tiny=0.7, k_max=16)
    result = optimize(request)
    assert result.best.structure.strategy == "vertical"
    synergy = result.extras["closed_form"]["synergy"]
    assert 0 < synergy["alpha_tiny_min"] < 0.7
    below = optimize(request.model_copy(update={"alpha_tiny": synergy["alpha_tiny_min"] * 0.5}))
    assert below.best.structure.strategy == "speculative"


def test_hardware_search_equals_per_config_loop():
    """The vectorized search finds the same optimum as predict() called config by config."""
    request = OptimizeRequest(hardware="tpu-v5e", target="gemma-7b", drafts=[Candidate(name="gemma-2b:int8", alpha=0.8)],
                              tinies=[Candidate(name="tiny-10m", alpha=0.75)], strategies=["speculative", "vertical"],
                              k_max=6, k_tiny_max=3, chips=[2, 4])
    result = optimize(request)
    best_loop = (np.inf, None)
    for chips, k in itertools.product([2, 4], range(1, 7)):
        base = dict(hardware="tpu-v5e", chips=chips, target="gemma-7b", draft="gemma-2b:int8", alpha=0.8, k=k)
        spec = predict(PredictConfig(**base, strategy="speculative"), alternatives=False)
        best_loop = min(best_loop, (spec.ms_per_token, ("speculative", chips, k, None)), key=lambda x: x[0])
        for k_tiny in range(1, 4):
            vertical = predict(PredictConfig(**base, strategy="vertical", tiny="tiny-10m", alpha_tiny=0.75,
                                             k_tiny=k_tiny), alternatives=False)
            best_loop = min(best_loop, (vertical.ms_per_token, ("vertical", chips, k, k_tiny)), key=lambda x: x[0])
    best = result.best
    assert best.ms_per_token == pytest.approx(best_loop[0], rel=1e-9)
    assert (best.structure.strategy, best.structure.chips, best.k, best.k_tiny) == best_loop[1]


def test_memory_constraint_and_reasons():
    request = OptimizeRequest(hardware="tpu-v5e", target="gemma-7b", drafts=[Candidate(name="gemma-2b", alpha=0.8)],
                              quantizations=["int8"], tinies=[Candidate(name="tiny-10m", alpha=0.7)], chips=[1, 2],
                              filter_widths=[64], k_max=12, top=2)
    result = optimize(request)
    assert result.best.fits and result.best.structure.chips == 2  # Gemma-7B (17.1 GB) + KV needs 2 chips
    infeasible = result.infeasible()
    assert infeasible and all(group["reason"] == "memory" and group["chips"] == 1 for group in infeasible)
    assert "tensor parallelism over 2" in infeasible[0]["example"]
    reasons = {choice.structure.strategy: reason for choice, reason, _ in result.losers()}
    assert reasons.get("filtered") == "acceptance"          # 0.95 * 0.85 * 0.8 < 0.8
    assert reasons.get("autoregressive") == "no speculation"
    data = result.to_json()
    assert data["best"]["fits"] and {"reason", "why"} <= set(data["losers"][0])


def test_throughput_under_latency_limit():
    base = dict(hardware="tpu-v5e", target="gemma-7b", drafts=[Candidate(name="gemma-2b:int8", alpha=0.8)],
                chips=[2], batches=[1, 4, 16, 64], strategies=["autoregressive", "speculative"], k_max=8)
    free = optimize(OptimizeRequest(**base, objective="throughput", latency_limit_ms=1e6))
    limited = optimize(OptimizeRequest(**base, objective="throughput", latency_limit_ms=8.0))
    assert limited.best.ms_per_token <= 8.0
    assert free.best.structure.batch >= limited.best.structure.batch
    assert free.best.objective_value >= limited.best.objective_value


def test_tokens_per_chip_objective_counts_chips():
    request = OptimizeRequest(hardware="tpu-v5e", target="gemma-2b", drafts=[], strategies=["autoregressive"],
                              chips=[1, 2, 4], objective="tokens_per_s_per_chip")
    result = optimize(request)
    per_chip = result.best.to_json()["tokens_per_s_per_chip"]
    for choice in result.ranked:
        assert choice.to_json()["tokens_per_s_per_chip"] <= per_chip + 1e-9
    assert result.best.structure.chips == 1


@pytest.mark.parametrize("argv,needle", [
    (["optimize", "--target", "gemma-7b", "--alpha", "0.75"], "--c"),
    (["optimize", "--alpha", "1.5", "--c", "0.1"], "alpha"),
    (["optimize", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--draft", "nosuch-model=0.8"], "unknown model"),
    (["optimize", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--draft", "gemma-2b=high"], "NAME=ALPHA"),
    (["optimize", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--draft", "gemma-2b"], "no acceptance"),
    (["optimize", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--objective", "throughput"], "latency"),
    (["optimize", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--chips", "1,x"], "--chips"),
    (["optimize", "--hardware", "nosuch-chip", "--target", "gemma-7b"], "unknown hardware"),
    (["optimize", "--alpha", "0.8", "--c", "0.1", "--strategies", "medusa"], "does not search heads"),
    (["optimize", "--alpha", "0.8", "--c", "0.1", "--strategies", "nonesuch"], "unknown strategy 'nonesuch'"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err
    assert "Traceback" not in err + out


def test_write_config_round_trips_through_predict(capsys, tmp_path):
    """optimize --write-config writes the shown choices as --config files that predict the same figures."""
    code, out, err = run(capsys, "optimize", "--alpha", "0.8", "--c", "0.05", "--c-tiny", "0.005", "--alpha-tiny",
                         "0.7", "--k-max", "8", "--write-config", str(tmp_path / "cfg"), "--json")
    assert code == 0, err
    data = json.loads(out)
    written = data["written"]
    assert written[0].endswith("rank-1.toml") and len(written) == len([data["best"], *data["runner_ups"]])
    code, out, err = run(capsys, "predict", "--config", written[0], "--json")
    assert code == 0, err
    prediction = json.loads(out)
    assert prediction["strategy"] == data["best"]["strategy"]
    assert prediction["ms_per_token"] == pytest.approx(data["best"]["ms_per_token"], rel=1e-12)
    code, _, err = run(capsys, "optimize", "--alpha", "0.8", "--c", "0.05", "--write-config", str(tmp_path / "cfg"))
    assert code == 2 and "already exists" in err  # never over the user's files without --force
