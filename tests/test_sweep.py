"""Sweeps: axis parsing, the table against predict(), the written files (CSV, JSON, Parquet) and plots (PNG, SVG)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from speccascade.costmodel.config import HEADLINE, PredictConfig
from speccascade.costmodel.search.plots import pareto_front
from speccascade.costmodel.predict import predict
from speccascade.costmodel.search.sweep import SweepSpec, parse_axis, run_sweep
from speccascade.errors import InputError

from cli_runner import run

PLOTS = ("heatmap_k_ktiny", "speedup_vs_alpha", "roofline", "pareto_memory_ms", "scaling_batch_context")


def test_parse_axis():
    assert parse_axis("k=1:5") == ("k", [1, 2, 3, 4, 5])
    assert parse_axis("alpha=0.5:0.7:0.1") == ("alpha", [0.5, 0.6, 0.7])
    assert parse_axis("batch=1,8,64") == ("batch", [1, 8, 64])
    assert parse_axis("k-tiny=2") == ("k_tiny", [2])
    assert parse_axis("strategy=speculative,vertical") == ("strategy", ["speculative", "vertical"])
    for bad in ("k", "k=", "colour=1", "k=1.5", "alpha=a:b", "k=5:1", "alpha=0:1:0"):
        with pytest.raises(InputError):
            parse_axis(bad)


def test_table_rows_match_predict():
    spec = SweepSpec(HEADLINE, dict([parse_axis("alpha=0.7,0.9"), parse_axis("k=2:4"), parse_axis("k_tiny=1,3"),
                                     parse_axis("batch=1,4"), parse_axis("strategy=speculative,vertical")]))
    table = run_sweep(spec)
    assert len(table) == spec.size() == 2 * 3 * 2 * 2 * 2
    assert {"ms_per_token", "tokens_per_s", "speedup", "fits", "memory_gb", "memory_total_gb"} <= set(table.columns)
    for row in (0, 7, len(table) - 1):
        values = {name: table.columns[name][row] for name in ("strategy", "alpha", "k", "k_tiny", "batch")}
        config = HEADLINE.model_copy(update={"alpha": float(values["alpha"]), "k": int(values["k"]),
                                             "k_tiny": int(values["k_tiny"]), "batch": int(values["batch"])})
        expected = predict(config, values["strategy"], alternatives=False)
        assert table.columns["ms_per_token"][row] == pytest.approx(expected.ms_per_token, rel=1e-9)
        assert bool(table.columns["fits"][row]) == expected.fits


def test_quantization_axis_changes_the_draft():
    spec = SweepSpec(HEADLINE, dict([parse_axis("quantization=bf16,int4"), parse_axis("k=3")]), ("speculative",))
    table = run_sweep(spec)
    memory = dict(zip(table.columns["quantization"], table.columns["memory_gb"]))
    assert memory["bf16"] > memory["int4"]


def test_written_tables_and_plots(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, stdout, err = run(capsys, "sweep", "--hardware", "tpu-v5e", "--chips", "2", "--target", "gemma-7b",
                            "--draft", "gemma-2b:int8", "--tiny", "tiny-10m", "--alpha", "0.8", "--alpha-tiny", "0.8",
                            "--grid", "alpha=0.6:0.9:0.1", "--grid", "k=1:6", "--grid", "k_tiny=1:3",
                            "--strategies", "speculative,vertical,filtered", "--out", str(out), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    rows = 4 * 6 * 3 * 3
    assert summary["rows"] == rows
    with (out / "sweep.csv").open() as handle:
        lines = list(csv.reader(handle))
    assert len(lines) == rows + 1 and "speedup" in lines[0]
    data = json.loads((out / "sweep.json").read_text())
    assert data["rows"] == rows and len(data["columns"]["speedup"]) == rows
    try:
        import pyarrow.parquet as pq
    except ImportError:  # Parquet is written only where pyarrow is installed (the "tables" extra)
        assert not (out / "sweep.parquet").exists()
    else:
        assert pq.read_table(out / "sweep.parquet").num_rows == rows
    for name in PLOTS:
        png, svg = out / f"{name}.png", out / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        text = svg.read_text()
        assert "<svg" in text
    # axes are labelled with units
    assert "FLOP/byte" in (out / "roofline.svg").read_text()
    assert "tokens/s" in (out / "scaling_batch_context.svg").read_text()


def test_abstract_sweep_skips_hardware_plots(tmp_path, capsys):
    code, stdout, err = run(capsys, "sweep", "--alpha", "0.8", "--c", "0.05", "--c-tiny", "0.005", "--alpha-tiny",
                            "0.7", "--grid", "k=1:8", "--grid", "k_tiny=1:4", "--strategies", "speculative,vertical",
                            "--out", str(tmp_path), "--formats", "csv", "--json")
    assert code == 0, err
    plots = json.loads(stdout)["plots"]
    assert plots["roofline"].startswith("skipped") and plots["pareto"].startswith("skipped")
    assert isinstance(plots["heatmap_k_ktiny"], list) and isinstance(plots["speedup_vs_alpha"], list)
    assert (tmp_path / "sweep.csv").exists() and not (tmp_path / "sweep.json").exists()


@pytest.mark.parametrize("argv,needle", [
    (["--grid", "colour=1"], "unknown axis"),
    (["--grid", "k=1:x"], "not a number"),
    (["--grid", "alpha=0.5,1.5"], "alpha"),
    (["--grid", "hardware=nosuch-chip"], "unknown hardware"),
    (["--formats", "xlsx"], "unknown table format"),
])
def test_bad_sweep_input_exit_2(capsys, tmp_path, argv, needle):
    code, out, err = run(capsys, "sweep", "--alpha", "0.8", "--c", "0.05", *argv, "--out", str(tmp_path),
                         "--no-plots", "--json")
    if argv[1].startswith("hardware"):
        code, out, err = run(capsys, "sweep", *argv, "--out", str(tmp_path), "--no-plots", "--json")
    assert code == 2, out
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err


def test_pareto_front_brute_force():
    rng = np.random.default_rng(1)
    memory, ms = rng.random(300), rng.random(300)
    front = set(pareto_front(memory, ms).tolist())
    for i in range(300):
        dominated = np.any((memory <= memory[i]) & (ms <= ms[i]) & ((memory < memory[i]) | (ms < ms[i])))
        assert (i in front) == (not dominated)


def test_progress_callback_counts_rows():
    spec = SweepSpec(PredictConfig(alpha=0.8, c=0.05), dict([parse_axis("k=1:10"), parse_axis("alpha=0.5:0.9:0.1")]))
    seen = []
    table = run_sweep(spec, progress=seen.append)
    assert sum(seen) == len(table) == 50
