"""The predict/explain CLI contract: the issue's commands work; bad input is one line and exit code 2."""

import json

import pytest

from cli_runner import run


REQUIRED = {"strategy", "ms_per_token", "tokens_per_s", "speedup", "expected_tokens_per_step", "stages", "fits",
            "placement", "bound_ms_per_token", "warnings"}


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert REQUIRED <= set(data)
    return data


def test_abstract_speculative(capsys):
    data = run_json(capsys, "predict", "--alpha", "0.75", "--k", "7", "--c", "0.02")
    assert data["strategy"] == "speculative"
    assert data["speedup"] == pytest.approx((1 - 0.75**8) / 0.25 / (7 * 0.02 + 1))


def test_hardware_speculative_on_v5e(capsys):
    data = run_json(capsys, "predict", "--hardware", "tpu-v5e", "--chips", "2", "--target", "gemma-7b",
                    "--draft", "gemma-2b:int8", "--k", "4", "--alpha", "0.8")
    assert data["strategy"] == "speculative" and data["fits"]
    # the registry's step shape: the Draft's first forward feeds the lag (2 tokens), then K - 1 of one token
    assert [(stage["model"], stage["forwards"], stage["tokens_per_forward"]) for stage in data["stages"]] == [
        ("gemma-2b:int8", 1, 2), ("gemma-2b:int8", 3, 1), ("gemma-7b", 1, 5)]
    assert 1.0 < data["speedup"] < 5.0
    assert data["ms_per_token"] >= data["bound_ms_per_token"]


def test_three_stage_cascade_on_v5e(capsys):
    data = run_json(capsys, "predict", "--hardware", "tpu-v5e", "--chips", "2", "--target", "gemma-7b",
                    "--draft", "gemma-2b:int8", "--tiny", "tiny-10m", "--k", "4", "--k-tiny", "3", "--alpha", "0.9",
                    "--alpha-tiny", "0.85")
    assert data["strategy"] == "vertical"
    assert set(data["placement"]) == {"target", "draft", "tiny"}
    assert {alt["strategy"] for alt in data["alternatives"]} >= {"autoregressive", "speculative"}


def test_gemma_7b_does_not_fit_one_v5e_chip(capsys):
    data = run_json(capsys, "predict", "--hardware", "tpu-v5e", "--chips", "1", "--target", "gemma-7b")
    assert data["fits"] is False
    assert any("tensor parallelism over 2" in warning for warning in data["warnings"])


def test_heads_with_verify_cost_and_with_hardware(capsys, tmp_path):
    accuracy = tmp_path / "acc.json"
    accuracy.write_text(json.dumps({"cumulative": True, "heads": [[0.6, 0.7, 0.75], [0.35, 0.45], [0.2, 0.3]]}))
    data = run_json(capsys, "predict", "--heads-accuracy", str(accuracy), "--tree-nodes", "10", "--verify-cost", "1.1")
    assert data["strategy"] == "heads" and data["tree"]["nodes"] == 10
    assert data["speedup"] == pytest.approx(data["expected_tokens_per_step"] / 1.1)
    data = run_json(capsys, "predict", "--heads-accuracy", str(accuracy), "--tree-nodes", "10",
                    "--hardware", "a100-80g", "--target", "vicuna-7b")
    assert data["mode"] == "hardware" and data["stages"][0]["name"] == "heads"


def test_config_file_and_flags_override(capsys, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('hardware = "tpu-v5e"\nchips = 2\ntarget = "gemma-7b"\ndraft = "gemma-2b:int8"\n'
                      'k = 4\nalpha = 0.8\n')
    data = run_json(capsys, "predict", "--config", str(config))
    assert data["strategy"] == "speculative"
    flagged = run_json(capsys, "predict", "--config", str(config), "--k", "6")
    assert sum(stage["forwards"] for stage in flagged["stages"] if stage["model"] == "gemma-2b:int8") == 6


def test_default_is_the_seed_headline_table(capsys):
    code, out, _ = run(capsys, "predict")
    assert code == 0
    for word in ("autoregressive", "speculative", "vertical", "gemma-7b"):
        assert word in out


@pytest.mark.parametrize("argv,needle", [
    (["--hardware", "nope", "--target", "gemma-7b"], "unknown hardware 'nope'; known:"),
    (["--hardware", "tpu-v5e", "--target", "gemma-7b", "--draft", "gemma-99b"], "unknown model 'gemma-99b'"),
    (["--alpha", "1.5", "--c", "0.1"], "--alpha"),
    (["--alpha", "0.5", "--k", "0", "--c", "0.1"], "--k"),
    (["--batch", "-3"], "--batch"),
    (["--c", "-0.1", "--alpha", "0.5"], "--c"),
    (["--hardware", "tpu-v5e", "--target", "gemma-7b:int3"], "unknown quantization"),
    (["--heads-accuracy", "/no/such/file.json"], "file not found"),
    (["--c", "0.1"], "needs --alpha"),
    (["--alphas", "0.5,x", "--c", "0.1"], "--alphas"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, "predict", *argv)
    assert code == 2
    assert needle in err and err.count("\n") == 1 and out == "" and "Traceback" not in err


@pytest.mark.parametrize("content,needle", [
    ('hardware = "tpu-v5e"\ntarget = "gemma-7b"\nalpah = 0.8\n', "unknown field 'alpah'"),
    ('hardware = "tpu-v5e"\ntarget = \n', "not valid TOML"),
    ('hardware = "tpu-v5e"\n', "needs a target"),
    ('k = "four"\nc = 0.1\nalpha = 0.5\n', "'k'"),
])
def test_bad_config_files(capsys, tmp_path, content, needle):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    code, out, err = run(capsys, "predict", "--config", str(config))
    assert code == 2 and needle in err and err.count("\n") == 1 and out == ""


@pytest.mark.parametrize("strategy", ["autoregressive", "speculative", "vertical", "filtered", "horizontal", "heads",
                                      "forward"])
def test_explain_prints_equations(capsys, strategy):
    code, out, _ = run(capsys, "explain", strategy)
    assert code == 0 and "source" in out
    code, latex, _ = run(capsys, "explain", strategy, "--latex")
    assert code == 0 and "\\" in latex


def test_explain_unknown_strategy(capsys):
    code, out, err = run(capsys, "explain", "warp")
    assert code == 2 and "unknown strategy 'warp'" in err and err.count("\n") == 1 and out == ""
