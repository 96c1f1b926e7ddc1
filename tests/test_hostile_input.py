"""Hostile and malformed input: one regression test per example of the hardening issue (docs/limits.md).

Every refusal is exit code 2, exactly one ``error:`` line on stderr, nothing on stdout, no traceback, no
"internal error", and no file in the test's folder changed; absurd but well-formed values either run or are refused
with the bound named. FIFOs, links to /dev/zero, deep JSON, long integers and invalid UTF-8 are real files here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import run
from hostile_fixtures import refused, snapshot, strict_json, succeeded  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
CLAIM = EXAMPLES / "consistent-claim.json"
HEADS = EXAMPLES / "medusa_vicuna7b_acc.json"
CHIP_TOML = ROOT / "hardware" / "chips" / "tpu-v5e.toml"
ABSTRACT = ("--alpha", "0.8", "--k", "4", "--c", "0.05")


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """Run in a folder of our own with an isolated speccascade home (no user profile leaks in or out)."""
    monkeypatch.setenv("SPECCASCADE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPECCASCADE_MAX_FILE_MB", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- files: what they are ----------------------------------------------------------------------------------
def test_link_to_dev_zero_as_hardware_is_refused_without_reading(capsys, workspace, hostile):
    refused(capsys, workspace, "predict", "--hardware", str(hostile["zero"]), "--target", "gemma-7b",
            needle="is a device, not a regular file")


@pytest.mark.parametrize("kind,needle", [("fifo", "is a FIFO"), ("dir", "is a directory"),
                                         ("utf8", "not valid UTF-8"), ("zero", "is a device")])
def test_profile_and_config_files_that_are_not_text_files(capsys, workspace, hostile, kind, needle):
    refused(capsys, workspace, "predict", "--hardware", str(hostile[kind]), "--target", "gemma-7b", needle=needle)
    refused(capsys, workspace, "predict", "--config", str(hostile[kind]), needle=needle)
    refused(capsys, workspace, "hardware", "show", str(hostile[kind]), needle=needle)


@pytest.mark.parametrize("kind,needle", [("fifo_json", "is a FIFO"), ("zero_json", "is a device"),
                                         ("deep", "nested deeper than 64"), ("bigint", "5000 digits"),
                                         ("utf8_json", "not valid UTF-8"), ("nan_json", "strict JSON")])
def test_json_files_of_every_kind(capsys, workspace, hostile, kind, needle):
    path = str(hostile[kind])
    refused(capsys, workspace, "predict", "--heads-accuracy", path, "--hardware", "a100-80g", "--target",
            "vicuna-7b", needle=needle)
    refused(capsys, workspace, "audit", path, needle=needle)
    refused(capsys, workspace, "validate", "--reported", path, needle=needle)
    refused(capsys, workspace, "predict", "--acceptance", path, needle=needle)
    refused(capsys, workspace, "simulate", *ABSTRACT, "--process", "empirical", "--empirical", path)
    refused(capsys, workspace, "calibrate", path, "--out", "cal")


def test_paths_named_inside_other_files(capsys, workspace, hostile):
    claim = json.loads(CLAIM.read_text())
    for kind in ("zero", "fifo", "dir"):
        claim["hardware"] = str(hostile[kind])
        path = workspace / f"claim-{kind}.json"
        path.write_text(json.dumps(claim))
        refused(capsys, workspace, "audit", str(path), needle=str(hostile[kind]))
    config = workspace / "config.toml"
    config.write_text(f'heads_accuracy = "{hostile["deep"].name}"\nhardware = "a100-80g"\ntarget = "vicuna-7b"\n')
    refused(capsys, workspace, "predict", "--config", str(config), needle="nested deeper than 64")
    config.write_text(f'acceptance = "{hostile["fifo_json"].name}"\n')
    refused(capsys, workspace, "predict", "--config", str(config), needle="is a FIFO")
    config.write_text(f'hardware = "{hostile["zero"]}"\ntarget = "gemma-7b"\n')
    refused(capsys, workspace, "predict", "--config", str(config), needle="is a device")
    reported = json.loads((EXAMPLES / "medusa-vicuna7b-reported.json").read_text())
    for record in reported["records"]:
        if "heads_accuracy" in record and isinstance(record["heads_accuracy"], str):
            record["heads_accuracy"] = str(hostile["bigint"])
    path = workspace / "reported.json"
    path.write_text(json.dumps(reported))
    refused(capsys, workspace, "validate", "--reported", str(path), needle="5000 digits")


def test_file_size_limit_and_its_override(capsys, workspace, monkeypatch):
    big = workspace / "big.toml"
    big.write_text(CHIP_TOML.read_text() + "#" * (5 << 20) + "\n")
    refused(capsys, workspace, "predict", "--hardware", str(big), "--target", "gemma-7b",
            needle="SPECCASCADE_MAX_FILE_MB")
    monkeypatch.setenv("SPECCASCADE_MAX_FILE_MB", "8")
    succeeded(capsys, "predict", "--hardware", str(big), "--target", "gemma-7b", "--json")


def test_bad_profile_in_home_does_not_break_hardware_list(capsys, workspace):
    chips = workspace / "home" / "chips"
    chips.mkdir(parents=True)
    (chips / "broken.toml").write_text("name = [\n")
    (chips / "nan-chip.toml").write_text(CHIP_TOML.read_text().replace("bf16 = ", "bf16 = nan #", 1))
    os.mkfifo(chips / "pipe.toml")
    (chips / "[red]x\x1b.toml").write_text("vendor = 1\n")
    out, err = succeeded(capsys, "hardware", "list", "--json")
    listing = strict_json(out)
    broken = {item["name"]: item["problem"] for item in listing["broken"]}
    assert set(broken) == {"broken", "nan-chip", "pipe", "[red]x\x1b"}
    assert "finite number" in broken["nan-chip"] and "FIFO" in broken["pipe"]
    assert "tpu-v5e" in {chip["name"] for chip in listing["chips"]}
    out, _ = succeeded(capsys, "hardware", "list")
    assert "broken chip profile [red]x\\x1b" in out and "\x1b" not in out
    succeeded(capsys, "predict", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--json")
    refused(capsys, workspace, "predict", "--hardware", "nan-chip", "--target", "gemma-7b", needle="finite number")


# --- numbers -----------------------------------------------------------------------------------------------
def test_infinite_c_is_refused_and_json_is_strict(capsys, workspace):
    refused(capsys, workspace, "predict", "--alpha", "0.75", "--k", "7", "--c", "inf", "--json", needle="--c")
    refused(capsys, workspace, "predict", "--alpha", "0.75", "--k", "7", "--c", "nan", "--json", needle="--c")
    refused(capsys, workspace, "predict", "--alpha", "0.75", "--k", "7", "--c", "1e308", "--json",
            needle="less than or equal to 1000000")
    for argv in (("predict", "--alpha", "0.75", "--k", "7", "--c", "1e6", "--json"),
                 ("simulate", *ABSTRACT, "--steps", "2000", "--json"),
                 ("optimize", "--alpha", "0.7", "--c", "0.1", "--json"),
                 ("hardware", "list", "--json"), ("strategies", "--json"), ("audit", str(CLAIM), "--json")):
        out, err = succeeded(capsys, *argv)
        strict_json(out)
        assert "Infinity" not in out and "NaN" not in out


def test_strict_json_writer_turns_non_finite_values_into_null():
    import numpy as np

    from speccascade.cli_text import dumps

    text = dumps({"a": float("inf"), "b": [float("nan"), np.float64(-np.inf), np.int64(3)], "c": (1.5,)})
    assert strict_json(text) == {"a": None, "b": [None, None, 3], "c": [1.5]}


def test_chip_with_nan_flops_is_refused(capsys, workspace):
    chip = workspace / "nan.toml"
    chip.write_text(CHIP_TOML.read_text().replace("bf16 = ", "bf16 = nan #", 1))
    refused(capsys, workspace, "predict", "--hardware", str(chip), "--target", "gemma-7b",
            needle="peak_flops.bf16': Input should be a finite number")
    chip.write_text(CHIP_TOML.read_text().replace("cores_per_chip = 1", "cores_per_chip = true", 1))
    refused(capsys, workspace, "hardware", "show", str(chip), needle="cores_per_chip must be a number, got true")


@pytest.mark.parametrize("flag,value,needle", [
    ("--chips", "1" + "0" * 30, "less than or equal to 65536"), ("--batch", "10000000", "1048576"),
    ("--context", "100000000", "16777216"), ("--k", "100000", "256"), ("--tree-nodes", "100000000", "4096")])
def test_physical_bounds(capsys, workspace, flag, value, needle):
    refused(capsys, workspace, "predict", "--hardware", "tpu-v5e", "--target", "gemma-7b", flag, value,
            needle=needle)


def test_bounds_in_claims_and_booleans_for_numbers(capsys, workspace):
    claim = json.loads(CLAIM.read_text())
    for field, value, needle in (("chips", 10**30, "31 digits (at most 30)"), ("chips", 10**20, "65536"),
                                 ("batch", 10**7, "1048576"), ("k", True, "must be a number, got true"),
                                 ("context", 2**30, "16777216")):
        path = workspace / f"claim-{field}.json"
        path.write_text(json.dumps(claim | {field: value}))
        refused(capsys, workspace, "audit", str(path), needle=needle)
    config = workspace / "k.toml"
    config.write_text("k = true\n")
    refused(capsys, workspace, "predict", "--config", str(config), needle="k must be a number, got true")
    config.write_text("alpha = nan\nc = 0.1\n")
    refused(capsys, workspace, "predict", "--config", str(config), needle="finite number")


def test_grid_bounds_and_sizes_are_checked_before_allocating(capsys, workspace):
    refused(capsys, workspace, "sweep", "--grid", "alpha=0:inf", "--out", "o", needle="not a finite number")
    refused(capsys, workspace, "sweep", "--grid", "alpha=0:1:0.0001", "--grid", "k=1:256", "--grid",
            "c=0:1:0.0025", *ABSTRACT, "--out", "o", needle="more than the limit of 20,000,000")
    refused(capsys, workspace, "sweep", "--grid", "alpha=0:1:1e-12", *ABSTRACT, "--out", "o",
            needle="more than 100,000 on one axis")
    refused(capsys, workspace, "sweep", "--grid", "alpha=1:0", *ABSTRACT, "--out", "o",
            needle="need start <= stop")
    refused(capsys, workspace, "sweep", "--grid", "k=1:11", *ABSTRACT, "--out", "o", "--max-rows", "10",
            needle="--max-rows")
    succeeded(capsys, "sweep", "--grid", "k=1:11", *ABSTRACT, "--out", "o", "--max-rows", "11", "--no-plots",
              "--json")


def test_simulation_sizes_are_bounded(capsys, workspace):
    refused(capsys, workspace, "simulate", *ABSTRACT, "--steps", "1000000000000", needle="MAX_SIMULATED_STEPS")
    refused(capsys, workspace, "simulate", *ABSTRACT, "--tokens", "1" + "0" * 30, needle="MAX_REQUEST_TOKENS")
    refused(capsys, workspace, "simulate", "--heads-accuracy", str(HEADS), "--hardware", "a100-80g", "--target",
            "vicuna-7b", "--tree-nodes", "100000000", needle="4096")
    refused(capsys, workspace, "optimize", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--alpha", "0.8",
            "--alpha-tiny", "0.8", "--k-max", "256", "--k-tiny-max", "64", "--chips", "1,2,4,8,16,32,64,128",
            "--batch", "1,2,4,8,16,32,64,128,256", needle="--max-configurations")


def test_tree_builders_refuse_oversized_trees():
    from speccascade.costmodel.tree import build_tree
    from speccascade.errors import InputError
    from speccascade.simulate.tree import TreeAcceptance

    with pytest.raises(InputError, match="4096"):
        build_tree([[0.5, 0.3]] * 5, 100_000_000)
    with pytest.raises(InputError, match="4096"):
        TreeAcceptance.build([[0.5, 0.3]] * 5, 100_000_000)
    wide = [[0.5] + [0.5 / 200_000] * 200_000] * 3  # a million-rank head costs only the ranks the tree uses
    sampler = TreeAcceptance.build(wide, 8)
    assert max(len(row) for row in sampler._cumulative) <= 8


# --- output ------------------------------------------------------------------------------------------------
def test_sweep_keeps_existing_files_unless_force(capsys, workspace):
    out = workspace / "results"
    out.mkdir()
    (out / "sweep.csv").write_text("mine\n")
    (out / "sweep.json").write_text("{}\n")
    refused(capsys, workspace, "sweep", *ABSTRACT, "--out", str(out), "--no-plots", needle="--force")
    (out / "sweep.csv").unlink()
    (out / "sweep.json").unlink()
    (out / "pareto.png").write_text("my picture\n")
    refused(capsys, workspace, "sweep", *ABSTRACT, "--grid", "k=1:3", "--out", str(out), needle="pareto.png")
    assert sorted(path.name for path in out.iterdir()) == ["pareto.png"]
    succeeded(capsys, "sweep", *ABSTRACT, "--out", str(out), "--no-plots", "--formats", "csv", "--json")
    (out / "sweep.csv").write_text("mine\n")
    succeeded(capsys, "sweep", *ABSTRACT, "--out", str(out), "--no-plots", "--formats", "csv", "--force")
    assert (out / "sweep.csv").read_text() != "mine\n"


@pytest.mark.parametrize("out,needle", [("", "empty output path"), ("/dev/null", "special file"),
                                        ("notes.txt/sub", "under a file"), ("notes.txt", "is a file")])
def test_sweep_output_paths(capsys, workspace, out, needle):
    (workspace / "notes.txt").write_text("my notes\n")
    refused(capsys, workspace, "sweep", *ABSTRACT, "--out", out, "--no-plots", needle=needle)


def test_failed_sweep_leaves_no_half_written_folder(capsys, workspace, monkeypatch):
    refused(capsys, workspace, "sweep", *ABSTRACT, "--formats", "csv,xml", "--out", "fresh", "--no-plots",
            needle="unknown table format 'xml'")
    assert not (workspace / "fresh").exists()

    from speccascade.costmodel.search import plots
    from speccascade.errors import InputError

    def failing(*args, **kwargs):
        raise InputError("plotting failed")
    monkeypatch.setattr(plots, "plot_all", failing)
    refused(capsys, workspace, "sweep", *ABSTRACT, "--out", "fresh/deeper", needle="plotting failed")
    assert not (workspace / "fresh").exists()


def test_simulate_plot_keeps_existing_files_unless_force(capsys, workspace):
    (workspace / "hist.png").write_text("mine\n")
    refused(capsys, workspace, "simulate", *ABSTRACT, "--steps", "1000", "--plot", "hist", needle="hist.png")
    assert not (workspace / "hist.svg").exists()
    out, _ = succeeded(capsys, "simulate", *ABSTRACT, "--steps", "1000", "--plot", "hist", "--force", "--json")
    assert (workspace / "hist.png").read_bytes()[:4] == b"\x89PNG" and (workspace / "hist.svg").is_file()
    (workspace / "folder").mkdir()
    for plot, needle in (("", "empty file name"), ("/dev/null", "special file"), ("hist.png/x", "under a file"),
                         ("folder", "is a folder"), ("folder/", "is a folder")):
        refused(capsys, workspace, "simulate", *ABSTRACT, "--steps", "1000", "--plot", plot, needle=needle)


def test_other_writers_follow_the_policy(capsys, workspace):
    (workspace / "notes.txt").write_text("my notes\n")
    existing = workspace / "probe.toml"
    existing.write_text("mine\n")
    # probe: the output is checked before anything is measured (no jax needed to be refused)
    refused(capsys, workspace, "hardware", "probe", "--quick", "--output", str(existing), needle="--force")
    refused(capsys, workspace, "hardware", "probe", "--quick", "--output", "", needle="empty file name")
    refused(capsys, workspace, "hardware", "probe", "--quick", "--output", "/dev/null", needle="special file")
    refused(capsys, workspace, "hardware", "probe", "--quick", "--output", "notes.txt/p.toml", needle="under a file")
    refused(capsys, workspace, "hardware", "probe", "--quick", "--name", "../evil", needle="profile name")
    chips = workspace / "home" / "chips"
    chips.mkdir(parents=True)
    (chips / "local.toml").write_text(CHIP_TOML.read_text())  # not a probe's profile: kept
    refused(capsys, workspace, "hardware", "probe", "--quick", needle="not written by a probe")
    # optimize --write-config
    (workspace / "configs").mkdir()
    (workspace / "configs" / "rank-1.toml").write_text("mine\n")
    refused(capsys, workspace, "optimize", "--alpha", "0.7", "--c", "0.1", "--write-config", "configs",
            needle="--force")
    refused(capsys, workspace, "optimize", "--alpha", "0.7", "--c", "0.1", "--write-config", "", needle="empty")


def test_claim_schema_export_keeps_existing_files_unless_force(capsys, workspace):
    from speccascade.costmodel.audit.claim_schema import main as export

    target = workspace / "schema.json"
    target.write_text("mine\n")
    assert export([str(target)]) == 2 and target.read_text() == "mine\n"
    err = capsys.readouterr().err
    assert "--force" in err and err.count("\n") == 1
    for path, needle in (("", "empty"), ("/dev/null", "special file"), ("schema.json/x", "under a file")):
        assert export([path]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    result = subprocess.run([sys.executable, "-m", "speccascade.costmodel.audit.claim_schema",
                             str(target), "--force"], capture_output=True, text=True, cwd=workspace, timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr  # no runpy warning either
    assert json.loads(target.read_text())["title"] == "speccascade claim"


def test_calibrate_out_keeps_existing_files_unless_force(capsys, workspace):
    from test_calibrate_forward import write_trace

    trace = write_trace(workspace / "trace.jsonl")
    out = workspace / "cal"
    out.mkdir()
    (out / "calibration.json").write_text("mine\n")
    refused(capsys, workspace, "calibrate", str(trace), "--out", str(out), "--name", "box", "--no-acceptance",
            needle="--force")
    refused(capsys, workspace, "calibrate", str(trace), "--out", "", "--name", "box", needle="empty")
    succeeded(capsys, "calibrate", str(trace), "--out", str(out), "--name", "box", "--no-acceptance", "--force",
              "--json")
    assert json.loads((out / "calibration.json").read_text())["name"] == "box"


# --- untrusted text ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["[/oops]", "[bold]loud", "\x1b[31mred\x1b]0;title\x07", "two\nlines [/]"])
def test_claim_names_are_shown_as_text(capsys, workspace, name):
    path = workspace / "claim.json"
    path.write_text(json.dumps(json.loads(CLAIM.read_text()) | {"name": name}))
    out, err = succeeded(capsys, "audit", str(path))
    assert "\x1b" not in out and "\x07" not in out
    shown = name.replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\n", "\\n")
    assert shown in out.replace("\n", "") or shown[:8] in out
    out, _ = succeeded(capsys, "audit", str(path), "--json")
    assert strict_json(out)["claim"] == name


def test_markup_in_paths_and_names_in_errors_and_tables(capsys, workspace):
    weird = workspace / "[red]chip\x1b.toml"
    weird.write_text(CHIP_TOML.read_text())
    out, _ = succeeded(capsys, "predict", "--hardware", str(weird), "--target", "gemma-7b")
    assert "[red]chip\\x1b.toml" in out.replace("\n", "").replace(" ", "") or "[red]chip" in out
    assert "\x1b" not in out
    err = refused(capsys, workspace, "predict", "--hardware", str(workspace / "[/x]\x1b.toml"), "--target",
                  "gemma-7b", needle="file not found")
    assert "\x1b" not in err and "\\x1b" in err


# --- missing optional parts --------------------------------------------------------------------------------
BLOCKED_RUN = """
import contextlib, io, json, sys
blocked = tuple(sys.argv[1].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from speccascade.cli import main
results = []
for argv in json.loads(sys.argv[2]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exit_:
            code = exit_.code
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def run_blocked(blocked: str, *commands: list[str], cwd: Path) -> list[dict]:
    """Run CLI commands in one fresh interpreter where importing the ``blocked`` packages fails as if they were
    not installed; (code, out, err) of each."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", BLOCKED_RUN, blocked, json.dumps(commands)], capture_output=True,
                            text=True, cwd=cwd, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_without_jax_runtime_and_probe_name_the_extra(workspace):
    generate, probe, predict = run_blocked(
        "jax,jaxlib,flax,optax",
        ["runtime", "generate", "--strategy", "cascade", "--k", "2", "--prompt", "def main(", "--max-new", "4",
         "--greedy"],
        ["hardware", "probe", "--quick", "--output", "probe.toml"],
        ["predict", "--json"], cwd=workspace)
    for result in (generate, probe):
        assert result["code"] == 2, result
        assert result["out"] == "" and result["err"].count("\n") == 1, result
        assert 'pip install "speccascade[runtime]"' in result["err"] and "Traceback" not in result["err"]
    assert not (workspace / "probe.toml").exists()
    assert predict["code"] == 0 and json.loads(predict["out"])["strategy"]  # the rest of the tool needs no jax


def test_without_pyarrow_parquet_names_the_extra(workspace):
    parquet, default = run_blocked("pyarrow", ["sweep", *ABSTRACT, "--formats", "parquet", "--out", "pq",
                                               "--no-plots"],
                                   ["sweep", *ABSTRACT, "--out", "pq2", "--no-plots", "--json"], cwd=workspace)
    assert parquet["code"] == 2 and parquet["err"].count("\n") == 1, parquet
    assert 'pip install "speccascade[tables]"' in parquet["err"]
    assert not (workspace / "pq").exists()
    assert default["code"] == 0, default
    assert set(json.loads(default["out"])["tables"]) == {"csv", "json"}


# --- contradictions and the empirical reader ---------------------------------------------------------------
def test_c_with_hardware_is_refused(capsys, workspace):
    refused(capsys, workspace, "predict", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--c", "0.1",
            needle="give one or the other")
    refused(capsys, workspace, "optimize", "--hardware", "tpu-v5e", "--target", "gemma-7b", "--c", "0.1",
            needle="give one or the other")


def _trace_lines(step: dict | None = None, header: dict | None = None) -> list[str]:
    from speccascade.traces import HardwareInfo, Header

    head = json.loads(Header(run_id="r", created_utc="2026-01-01T00:00:00+00:00",
                             hardware=HardwareInfo(backend="cpu", device_kind="cpu", device_count=1,
                                                   host="test")).model_dump_json())
    lines = [json.dumps(head | (header or {}))]
    if step is not None:
        base = {"kind": "step", "strategy": "speculative", "knobs": {"k": 4}, "mode": "fused", "repeat": 0,
                "step": 0, "context": 10, "tokens_emitted": 3, "step_ms": 1.0,
                "pairs": {"draft->target": {"proposed": 4, "tested": 3, "accepted": 2, "beta_sum": 2.0,
                                            "sequence": "AAR"}}}
        lines.append(json.dumps(base | step))
    return lines


@pytest.mark.parametrize("step,header,needle", [
    ({"pairs": {"draft->target": {"proposed": -1, "tested": 0, "accepted": 0, "beta_sum": 0.0}}}, None,
     "greater than or equal to 0"),
    ({"pairs": {"draft->target": {"proposed": 2, "tested": 3, "accepted": 3, "beta_sum": 1.0, "sequence": "AAA"}}},
     None, "accepted <= tested <= proposed"),
    ({}, {"schema_version": 99}, "newer than this reader"),
    ({"kind": "mystery"}, None, "malformed trace record"),
])
def test_empirical_traces_are_checked_by_the_trace_reader(capsys, workspace, step, header, needle):
    path = workspace / "trace.jsonl"
    path.write_text("\n".join(_trace_lines(step, header)) + "\n")
    refused(capsys, workspace, "simulate", *ABSTRACT, "--process", "empirical", "--empirical", str(path),
            needle=needle)


def test_one_line_trace_is_read_as_a_trace(capsys, workspace):
    path = workspace / "header-only.jsonl"
    path.write_text(_trace_lines()[0])  # a valid one-line trace (no newline): JSON-parseable as a whole
    err = refused(capsys, workspace, "simulate", *ABSTRACT, "--process", "empirical", "--empirical", str(path),
                  needle="runtime trace has no accept/reject sequences")
    assert "expected a key 'outcomes'" not in err
    path.write_text("\n".join(_trace_lines({})) + "\n")
    out, _ = succeeded(capsys, "simulate", *ABSTRACT, "--process", "empirical", "--empirical", str(path),
                       "--steps", "1000", "--json")
    assert strict_json(out)["process"]["process"] == "empirical-outcomes"


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(capsys, workspace, monkeypatch):
    from speccascade.costmodel import explain

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")
    monkeypatch.setattr(explain, "explain_text", broken)
    monkeypatch.setattr("speccascade.cli_predict.explain_text", broken)
    code, out, err = run(capsys, "explain", "speculative")
    assert code == 1 and out == "" and err.count("\n") == 1 and "internal error: ZeroDivisionError: boom" in err
    with pytest.raises(ZeroDivisionError):
        run(capsys, "--debug", "explain", "speculative")
