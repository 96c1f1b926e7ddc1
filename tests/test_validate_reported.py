"""speccascade validate --reported: published measurements against the cost model, the tokens-per-step inversion,
the shared verification-cost fit with leave-one-out, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_runner import run
from speccascade.calibrate.reported import load_reported
from speccascade.calibrate.reported_fit import fit_factor, leave_one_out
from speccascade.calibrate.reported_predict import compare, invert_tokens_per_step, predict_parts
from speccascade.costmodel.acceptance import expected_tokens, vertical_expected_tokens
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
SEED = EXAMPLES / "seed-000-reported.json"
MEDUSA = EXAMPLES / "medusa-vicuna7b-reported.json"


@pytest.fixture(autouse=True)
def empty_user_home(tmp_path, monkeypatch):
    """Profiles a user probed on this machine must not shadow the shipped ones."""
    monkeypatch.setenv("SPECCASCADE_HOME", str(tmp_path / "home"))


def write(tmp_path: Path, records: list[dict], name: str = "reported.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"description": "test", "records": records}))
    return path


def abstract_record(name: str, k: int, alpha: float, c: float, speedup: float, **extra) -> dict:
    return {"name": name, "source": "synthetic", "strategy": "speculative", "k": k, "alpha": alpha, "c": c,
            "reported": {"speedup": speedup}, **extra}


# --- the example files through the CLI ----------------------------------------------------------------------
@pytest.mark.parametrize("path, row", [(SEED, "Table 1: 3-stage Cascade"), (MEDUSA, "Medusa-1, Vicuna-7B")])
def test_cli_prints_the_table_for_both_example_files(capsys, path, row):
    code, out, err = run(capsys, "validate", "--reported", str(path))
    assert code == 0 and err == ""
    assert row in out and "median |rel. error|" in out and "not modelled" in out


def test_json_shape_and_relative_errors(capsys):
    code, out, _ = run(capsys, "validate", "--reported", str(SEED), "--json")
    assert code == 0
    document = json.loads(out)
    assert set(document) == {"file", "records", "summary"}
    assert set(document["summary"]) >= {"median_rel_error", "max_rel_error", "n"}
    records = document["records"]
    assert len(records) == 20
    predicted = [r for r in records if r["predicted"] is not None]
    assert document["summary"]["n"] == len(predicted) == 14 and document["summary"]["unmodelled"] == 6
    for record in records:
        assert {"name", "source", "metric", "predicted", "reported", "rel_error", "reported_values"} <= set(record)
    for record in predicted:
        assert record["rel_error"] == pytest.approx(record["predicted"] / record["reported"] - 1)
        assert record["reported"] == record["reported_values"][record["metric"]]
    errors = np.abs([r["rel_error"] for r in predicted])
    assert document["summary"]["median_rel_error"] == pytest.approx(float(np.median(errors)))
    assert document["summary"]["max_rel_error"] == pytest.approx(float(errors.max()))
    autoregressive = next(r for r in records if r["name"] == "Table 1: Autoregressive")
    assert autoregressive["metric"] == "ms_per_token" and autoregressive["reported"] == 28.4


def test_a_hardware_record_predicts_what_predict_does():
    """The decomposition (other + verify) / E is predict()'s ms/token; speedup its speedup."""
    reported = load_reported(SEED)
    record = next(r for r in reported.records if r.name == "Table 3: Draft Only")
    parts = predict_parts(record, reported)
    prediction = predict(PredictConfig(strategy="speculative", hardware="tpu-v5e", target="gemma-7b",
                                       draft="gemma-2b:int8", alpha=0.75, k=4), alternatives=False)
    assert parts.value("ms_per_token") == pytest.approx(prediction.ms_per_token)
    assert parts.value("speedup") == pytest.approx(prediction.speedup)
    assert parts.verify > 0 and parts.other > 0 and parts.fits == prediction.fits


def test_abstract_record_is_leviathans_closed_form(tmp_path):
    """c given: S = (1 - a^(K+1)) / ((1 - a) (K c + 1)) (Leviathan et al. 2023)."""
    path = write(tmp_path, [abstract_record("a", 5, 0.8, 0.1, 2.0)])
    (comparison,) = compare(load_reported(path))
    assert comparison.predicted() == pytest.approx((1 - 0.8**6) / (0.2 * 1.5))


# --- tokens per step -> alpha -------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 4, 7])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.8, 0.95, 1.0])
def test_tokens_per_step_inversion_round_trips(k, alpha):
    config = PredictConfig(strategy="speculative", c=0.1, k=k)
    tokens = float(expected_tokens(alpha, k))
    assert invert_tokens_per_step("speculative", config, tokens) == pytest.approx(alpha, abs=1e-9)
    assert invert_tokens_per_step("filtered", PredictConfig(strategy="filtered", c=0.1, c_tiny=0.01, k=k),
                                  tokens) == pytest.approx(alpha, abs=1e-9)  # gamma_total, same closed form


def test_vertical_inversion_uses_its_own_closed_form():
    config = PredictConfig(strategy="vertical", c=0.1, c_tiny=0.01, k=3, k_tiny=2, alpha_tiny=0.7)
    tokens = float(vertical_expected_tokens(0.83, 0.7, 3, 2))
    assert invert_tokens_per_step("vertical", config, tokens) == pytest.approx(0.83, abs=1e-9)
    with pytest.raises(InputError, match="outside"):
        invert_tokens_per_step("speculative", PredictConfig(strategy="speculative", c=0.1, k=4), 5.5)  # > K + 1


def test_a_tokens_per_step_record_predicts_as_its_alpha(tmp_path):
    tokens = float(expected_tokens(0.7, 4))
    path = write(tmp_path, [abstract_record("alpha", 4, 0.7, 0.05, 2.0),
                            {**abstract_record("tokens", 4, 0.7, 0.05, 2.0, tokens_per_step=tokens), "alpha": None}])
    by_alpha, by_tokens = compare(load_reported(path))
    assert by_tokens.parts.acceptance["alpha"] == pytest.approx(0.7)
    assert by_tokens.predicted() == pytest.approx(by_alpha.predicted())


# --- --fit and leave-one-out --------------------------------------------------------------------------------
def synthetic_table(tmp_path: Path, factor: float, noise: list[float]) -> Path:
    """Speedups measured as if verification cost ``factor`` target steps: S = E / (K c + factor), times noise."""
    records = []
    for index, ((k, alpha, c), scale) in enumerate(zip([(2, 0.6, 0.05), (4, 0.7, 0.1), (6, 0.8, 0.02),
                                                        (3, 0.9, 0.2), (8, 0.75, 0.05)], noise)):
        speedup = float(expected_tokens(alpha, k)) / (k * c + factor) * scale
        records.append(abstract_record(f"row {index}", k, alpha, c, speedup))
    return write(tmp_path, records)


def test_fit_recovers_a_known_verification_factor(tmp_path):
    comparisons = compare(load_reported(synthetic_table(tmp_path, 1.5, [1.0] * 5)))
    fitted = fit_factor(comparisons)
    assert fitted.value == pytest.approx(1.5, rel=1e-6) and not fitted.at_bound
    loo = leave_one_out(comparisons)
    assert loo.values == pytest.approx([1.5] * 5, rel=1e-6) and loo.max_rel_error < 1e-6
    assert all(c.rel_error() > 0.1 for c in comparisons)  # uncorrected, the model over-predicts the speedup


def test_leave_one_out_never_sees_the_held_out_record(tmp_path):
    """An outlier pulls the full fit; held out, its own v is fitted on the others only (so it stays near 1.5)."""
    comparisons = compare(load_reported(synthetic_table(tmp_path, 1.5, [1.0, 1.0, 1.0, 1.0, 0.6])))
    loo = leave_one_out(comparisons)
    full = fit_factor(comparisons).value
    assert full > 1.6
    assert loo.values[-1] == pytest.approx(1.5, rel=1e-6)
    assert abs(loo.rel_errors[-1]) > abs(comparisons[-1].rel_error(full))  # out of sample is worse for the outlier
    assert loo.median_rel_error > 0


def test_fit_is_bounded_below_by_the_roofline(tmp_path):
    """Measurements faster than the model cannot be explained by cheaper verification: v stays at 1."""
    fitted = fit_factor(compare(load_reported(synthetic_table(tmp_path, 1.0, [1.3] * 5))))
    assert fitted.value == pytest.approx(1.0) and fitted.at_bound and fitted.stderr is None


def test_cli_fit_json_and_table(capsys, tmp_path):
    path = synthetic_table(tmp_path, 1.5, [1.0, 1.02, 0.98, 1.0, 1.01])
    code, out, _ = run(capsys, "validate", "--reported", str(path), "--fit", "--json")
    assert code == 0
    document = json.loads(out)
    fit = document["fit"]
    assert fit["correction"] == "verify_factor" and fit["value"] == pytest.approx(1.5, rel=0.05)
    assert set(fit["leave_one_out"]) == {"median_rel_error", "max_rel_error"}
    assert fit["leave_one_out"]["median_rel_error"] >= fit["in_sample"]["median_rel_error"] - 1e-12
    assert all({"loo_predicted", "loo_rel_error", "loo_verify_factor"} <= set(r) for r in document["records"])
    code, out, _ = run(capsys, "validate", "--reported", str(path), "--fit")
    assert code == 0 and "leave-one-out" in out and "LOO error" in out


def test_medusa_fit_finds_a_verification_overhead(capsys):
    code, out, _ = run(capsys, "validate", "--reported", str(MEDUSA), "--fit", "--json")
    assert code == 0
    fit = json.loads(out)["fit"]
    assert 1.0 < fit["value"] < 2.0 and not fit["at_bound"]


# --- bad input: exit 2, one line on stderr, nothing on stdout -----------------------------------------------
def record(**changes) -> dict:
    base = {"name": "row", "source": "test", "hardware": "a100-80g", "strategy": "speculative",
            "target": "llama-2-7b", "draft": "llama-2-7b:int4", "k": 4, "alpha": 0.7, "reported": {"speedup": 2.0}}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


@pytest.mark.parametrize("records, fragment", [
    ([record(strategy="eagle")], "unknown strategy 'eagle'"),
    ([record(reported=None)], "missing field 'reported'"),
    ([record(hardware=None)], "needs hardware and target"),
    ([record(alpha=None)], "exactly one of alpha, tokens_per_step"),
    ([record(tokens_per_step=2.0)], "exactly one of alpha, tokens_per_step"),
    ([record(alpha=None, tokens_per_step=9.0)], "outside"),
    ([record(reported={})], "reported needs at least one"),
    ([record(compare="ms_per_token")], "reports no ms_per_token"),
    ([record(colour="red")], "unknown field 'colour'"),
    ([record(strategy="heads", draft=None, alpha=None)], "heads needs heads_accuracy"),
    ([record(strategy="heads", draft=None, alpha=None, heads_accuracy="missing.json")], "missing.json"),
    ([record(strategy="vertical", tiny="tiny-10m")], "alpha_tiny"),
    ([record(hardware=None, c=0.1, reported={"ms_per_token": 3.0})], "speedup only"),
    ([record(target="gpt-99")], "unknown model 'gpt-99'"),
    ([], "records"),
])
def test_bad_records_are_one_line_exit_2(capsys, tmp_path, records, fragment):
    code, out, err = run(capsys, "validate", "--reported", str(write(tmp_path, records)))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert "Traceback" not in err


def test_bad_files_and_flags_are_one_line_exit_2(capsys, tmp_path):
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"records": [')
    one = write(tmp_path, [record()], "one.json")
    cases = [(["validate", "--reported", str(malformed)], "not valid JSON"),
             (["validate", "--reported", str(tmp_path / "absent.json")], "file not found"),
             (["validate"], "needs trace files"),
             (["validate", "run.jsonl"], "give --fit-on or --holdout"),
             (["validate", "run.jsonl", "--reported", str(one)], "not both"),
             (["validate", "--reported", str(one), "--metric", "latency"], "--metric"),
             (["validate", "--reported", str(one), "--metric", "tokens_per_s"], "reports no tokens_per_s"),
             (["validate", "--reported", str(one), "--fit"], "at least 2")]
    for argv, fragment in cases:
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "", argv
        assert err.count("\n") == 1 and fragment in err, (argv, err)


def test_errors_name_the_record(capsys, tmp_path):
    path = write(tmp_path, [record(name="fine"), record(name="Table 2: broken", strategy="eagle")])
    code, _, err = run(capsys, "validate", "--reported", str(path))
    assert code == 2 and "record 2 ('Table 2: broken')" in err and str(path) in err


def test_validate_reported_does_not_import_jax():
    import subprocess
    import sys

    code = ("import sys\nimport speccascade.cli\ntry:\n"
            f"    speccascade.cli.main(['validate', '--reported', {str(MEDUSA)!r}, '--fit', '--json'])\n"
            "except SystemExit as exit_:\n    assert not exit_.code\n"
            "assert 'jax' not in sys.modules, 'jax was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
