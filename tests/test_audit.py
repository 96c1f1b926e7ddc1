"""The claim audit: the seed paper's known inconsistencies are found, a consistent claim has no error, bad input
is one line with exit code 2, and the exported JSON Schema is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speccascade.costmodel.audit import audit, findings_json
from speccascade.costmodel.audit.claims import Claim, claim_json_schema, load_claim
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import predict

from cli_runner import run

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "docs" / "examples" / "seed-000-claims.json"


@pytest.fixture(scope="module")
def seed_findings():
    return audit(load_claim(SEED))


def by_id(findings, id_, severity=None):
    hits = [f for f in findings if f.id == id_ and (severity is None or f.severity == severity)]
    assert hits, f"no {severity or ''} finding {id_}: {[(f.id, f.severity) for f in findings]}"
    return hits


def test_seed_gamma_product_mismatch(seed_findings):
    finding = by_id(seed_findings, "acceptance-product", "error")[0]
    assert finding.numbers["stages_product"] == pytest.approx(0.95 * 0.85 * 0.90)
    assert finding.numbers["stated_total"] == 0.85
    assert "0.727" in finding.message
    # with the stage product the reported 4.18x is above any K's ceiling 1 / (1 - 0.727) = 3.66x
    ceiling = by_id(seed_findings, "speedup-ceiling-stage-product", "error")[0]
    assert ceiling.numbers["ceiling"] == pytest.approx(1 / (1 - 0.95 * 0.85 * 0.90))


def test_seed_speedup_over_speculation_ratio(seed_findings):
    finding = by_id(seed_findings, "ratio-speedup-over-speculative", "error")[0]
    assert finding.numbers["stated"] == 1.8
    assert finding.numbers["derived"] == pytest.approx(147.2 / 66.8)
    assert "2.20" in finding.message
    # consistent ratios pass as info
    assert by_id(seed_findings, "ratio-speedup", "info")
    assert by_id(seed_findings, "ratio-tokens-per-s", "info")


def test_seed_tiny_size_vs_bytes_per_param_and_vmem(seed_findings):
    size = by_id(seed_findings, "size-vs-bytes-per-param", "error")[0]
    assert size.numbers["role"] == "tiny"
    assert size.numbers["computed_gb"] == pytest.approx(0.020)
    assert size.numbers["implied_bytes_per_param"] == pytest.approx(4.0)
    vmem = [f for f in by_id(seed_findings, "memory-level-fit", "error") if f.numbers["role"] == "tiny"][0]
    assert vmem.numbers["level"] == "VMEM" and vmem.numbers["stated_capacity_gb"] == 0.016
    assert vmem.numbers["model_gb"] > 0.016          # ~20 MB real does not fit the stated 16 MB
    assert "does fit the documented" in vmem.message  # but fits the documented 128 MiB


def test_seed_speed_reachability(seed_findings):
    bound = by_id(seed_findings, "speed-bound")[0]
    # one step streams Gemma-7B's ~17.1 GB at 819 GB/s (~20.9 ms) and yields at most 1 / (1 - 0.85) tokens
    assert bound.numbers["target_step_ms_at_least"] == pytest.approx(8.538e9 * 2 / 819e9 * 1e3, rel=0.01)
    assert bound.numbers["max_tokens_per_step"] == pytest.approx(1 / 0.15)
    modelled = by_id(seed_findings, "modelled-speed", "warning")[0]
    assert modelled.numbers["modelled_best_tokens_per_s"] < 147.2


def test_seed_target_does_not_fit_one_chip_and_core_count(seed_findings):
    fit = by_id(seed_findings, "target-fit", "error")[0]
    assert fit.numbers["chips_needed"] >= 2
    cores = by_id(seed_findings, "hardware-cores", "error")[0]
    assert cores.numbers["stated_cores"] == 256 and cores.numbers["profile_cores"] == 16
    assert by_id(seed_findings, "quantization-factor", "error")[0].numbers["derived_factor"] == 2.0
    assert by_id(seed_findings, "hardware-capacity", "warning")  # VMEM 16 MB stated vs 128 MiB documented


def consistent_claim() -> dict:
    config = PredictConfig(hardware="tpu-v5e", chips=2, target="gemma-7b", draft="gemma-2b:int8",
                           strategy="speculative", k=4, alpha=0.8, context=1024)
    prediction = predict(config)
    tokens_per_s = 0.9 * prediction.tokens_per_s
    baseline = 0.9 * 1e3 / prediction.baseline_ms_per_token
    return {
        "name": "consistent: speculative decoding at 90% of the model", "hardware": "tpu-v5e", "chips": 2,
        "strategy": "speculative", "target": "gemma-7b", "draft": "gemma-2b:int8", "k": 4, "context": 1024,
        "acceptance": {"total": 0.8, "stages": [0.8]},
        "stated_sizes_gb": {"gemma-7b": 17.1, "gemma-2b": 2.5},
        "placement": {"target": "HBM", "draft": "HBM"},
        "quantization_reduction": {"draft": 2.0},
        "stated_hardware": {"chips": 2, "cores_total": 2, "memory_capacity_gb": {"HBM": 16},
                            "memory_bandwidth_gb_s": {"HBM": 819}},
        "reported": {"tokens_per_s": tokens_per_s, "ms_per_token": 1e3 / tokens_per_s,
                     "baseline_tokens_per_s": baseline, "speedup": tokens_per_s / baseline,
                     "memory_gb": 11.5},
    }


def test_consistent_claim_has_no_error_or_warning():
    findings = audit(Claim.model_validate(consistent_claim()))
    assert findings
    assert [f for f in findings if f.severity != "info"] == []


def test_cli_json_and_table(capsys, tmp_path):
    code, out, err = run(capsys, "audit", str(SEED), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["counts"]["error"] >= 6
    for item in data["findings"]:
        assert set(item) == {"id", "severity", "message", "numbers"}
        assert item["severity"] in ("error", "warning", "info")
    code, out, err = run(capsys, "audit", str(SEED))
    assert code == 0 and "acceptance-product" in out and "errors" in out
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(consistent_claim()))
    code, out, _ = run(capsys, "audit", str(path), "--json")
    assert code == 0 and json.loads(out)["counts"]["error"] == 0


@pytest.mark.parametrize("mutate,needle", [
    (None, "file not found"),
    ("{not json", "not valid JSON"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"target": "nosuch-model"}, "unknown model"),
    ({"hardware": "nosuch-chip"}, "unknown hardware"),
    ({"acceptance": {"total": 1.3}}, "acceptance.total"),
    ({"placement": {"target": "L7"}}, "memory level 'L7'"),
    ({"stated_sizes_gb": {"llama-2-7b": 13.0}}, "neither a role"),
    ({"stated_sizes_gb": {"target": -1}}, "must be > 0"),
    ({"tensor_parallel": 4}, "exceeds chips"),
    ([1, 2], "JSON object"),
])
def test_bad_claims_exit_2(capsys, tmp_path, mutate, needle):
    path = tmp_path / "claim.json"
    if isinstance(mutate, str):
        path.write_text(mutate)
    elif isinstance(mutate, list):
        path.write_text(json.dumps(mutate))
    elif mutate is not None:
        path.write_text(json.dumps(consistent_claim() | mutate))
    code, out, err = run(capsys, "audit", str(path))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err
    assert "Traceback" not in out + err


def test_exported_schema_is_current():
    exported = json.loads((ROOT / "docs" / "claim.schema.json").read_text())
    assert exported == claim_json_schema()
    assert {"name", "hardware", "target"} <= set(exported["required"])


def test_findings_json_counts():
    findings = audit(load_claim(SEED))
    data = findings_json(findings)
    assert sum(data["counts"].values()) == len(data["findings"])


def test_docs_consistent_example_has_no_error():
    findings = audit(load_claim(ROOT / "docs" / "examples" / "consistent-claim.json"))
    assert [f.id for f in findings if f.severity == "error"] == []


def test_inline_chip_and_model_profiles():
    from speccascade.hardware import load_chip, load_model

    claim = consistent_claim()
    claim["hardware"] = load_chip("tpu-v5e").model_dump() | {"name": "my-chip"}
    claim["target"] = load_model("gemma-7b").model_dump() | {"name": "my-7b"}
    claim["stated_sizes_gb"] = {"target": 17.1, "draft": 2.5}
    findings = audit(Claim.model_validate(claim))
    assert [f.id for f in findings if f.severity != "info"] == []
    assert any(f.id == "speed-bound" for f in findings)
