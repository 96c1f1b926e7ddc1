"""``speccascade simulate``: JSON contract, table output, plots, and bad input as one line with exit code 2."""

import json

import pytest

from cli_runner import run


REQUIRED = {"mean_tokens_per_step", "stderr_tokens_per_step", "ms_per_token", "histogram", "steps"}


def run_json(capsys, *argv):
    code, out, err = run(capsys, "simulate", *argv, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert REQUIRED <= set(data)
    assert {"mean", "p50", "p95", "p99"} <= set(data["ms_per_token"])
    return data


def test_json_contract_abstract_speculative(capsys):
    data = run_json(capsys, "--alpha", "0.8", "--k", "4", "--c", "0.05", "--steps", "200000", "--seed", "3",
                    "--tokens", "64")
    assert data["strategy"] == "speculative" and data["steps"] >= 200_000
    assert abs(data["mean_tokens_per_step"] - data["closed_form_tokens_per_step"]) < 3 * data["stderr_tokens_per_step"]
    assert data["histogram"]["tokens"] == [1, 2, 3, 4, 5]
    assert sum(data["histogram"]["counts"]) == data["steps"]
    assert data["ms_per_token"]["p50"] <= data["ms_per_token"]["p95"] <= data["ms_per_token"]["p99"]
    assert data["tokens_per_request"] == 64 and data["requests"] > 1000


def test_same_flags_as_predict_hardware_cascade_and_markov(capsys):
    data = run_json(capsys, "--hardware", "tpu-v5e", "--chips", "2", "--target", "gemma-7b", "--draft",
                    "gemma-2b:int8", "--tiny", "tiny-10m", "--k", "4", "--k-tiny", "3", "--alpha", "0.9",
                    "--alpha-tiny", "0.85", "--process", "markov", "--rho", "0.3", "--steps", "200000")
    assert data["strategy"] == "vertical" and data["units"] == "ms"
    assert data["process"]["process"] == "markov" and data["process"]["inner"]["process"] == "markov"
    assert data["closed_form_tokens_per_step"] is None          # no closed form for a correlated cascade
    assert data["mean_tokens_per_step"] < data["predicted_tokens_per_step"]


def test_config_file_heads_and_plot(capsys, tmp_path):
    accuracy = tmp_path / "heads.json"
    accuracy.write_text(json.dumps({"cumulative": True, "heads": [[0.6, 0.75, 0.8], [0.4, 0.55], [0.3]]}))
    config = tmp_path / "medusa.toml"
    config.write_text('heads_accuracy = "heads.json"\ntree_nodes = 6\nverify_cost = 1.2\n')
    data = run_json(capsys, "--config", str(config), "--steps", "100000", "--plot", str(tmp_path / "out" / "hist"))
    assert data["strategy"] == "heads"
    assert sorted(data["plots"]) == [str(tmp_path / "out" / "hist.png"), str(tmp_path / "out" / "hist.svg")]
    assert (tmp_path / "out" / "hist.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (tmp_path / "out" / "hist.svg").read_text()


def test_empirical_process_from_file_and_table_output(capsys, tmp_path):
    record = tmp_path / "outcomes.jsonl"
    record.write_text("[1, 1, 0]\n[1, 1, 1, 1]\n[0]\n")
    code, out, err = run(capsys, "simulate", "--alpha", "0.8", "--k", "4", "--c", "0.05", "--process", "empirical",
                         "--empirical", str(record), "--steps", "50000")
    assert code == 0, err
    assert "tokens / step" in out and "empirical-outcomes" in out


@pytest.mark.parametrize("argv,message", [
    (["--process", "markov", "--rho", "-0.3", "--alpha", "0.2"], "rho -0.3 is outside [-0.25, 1]"),
    (["--process", "markov", "--rho", "-0.5", "--alpha", "0.8"], "rho -0.5 is outside [-0.25, 1]"),
    (["--process", "markov", "--rho", "1.5", "--alpha", "0.8"], "rho 1.5 is outside"),
    (["--rho", "0.3", "--alpha", "0.8"], "--rho needs --process markov"),
    (["--process", "empirical", "--alpha", "0.8"], "needs --empirical FILE"),
    (["--process", "empirical", "--empirical", "EMPTY", "--alpha", "0.8"], "empty file"),
    (["--process", "empirical", "--empirical", "BAD", "--alpha", "0.8"], "not valid JSON"),
    (["--process", "empirical", "--empirical", "missing.json", "--alpha", "0.8"], "file not found"),
    (["--process", "sticky", "--alpha", "0.8"], "unknown process 'sticky'"),
    (["--process", "positional", "--alpha", "0.8"], "needs --alphas"),
    (["--alpha", "0.8", "--threshold", "1.5"], "threshold must lie in"),
    (["--alpha", "0.8", "--steps", "0"], "steps must be >= 1"),
    (["--alpha", "1.2"], "alpha"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, tmp_path, argv, message):
    (tmp_path / "EMPTY").write_text("")
    (tmp_path / "BAD").write_text("[1, 0]\n{nope\n[1]\n")
    argv = [str(tmp_path / value) if value in ("EMPTY", "BAD", "missing.json") else value for value in argv]
    code, out, err = run(capsys, "simulate", "--k", "4", "--c", "0.05", *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
