"""Trace schema: round trip, validation with line numbers, partial last lines, a killed benchmark, no JAX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speccascade.errors import InputError
from speccascade.runtime.traces import (
    SCHEMA_VERSION, CompileRecord, ForwardRecord, HardwareInfo, Header, ModelInfo, PairRecord, Spread, StepRecord,
    StrategySummary, Summary, TraceWriter, acceptance_from_steps, read_summary, read_trace, write_summary,
)

HARDWARE = HardwareInfo(backend="cpu", device_kind="cpu", device_count=1, host="test")
HEADER = Header(run_id="r1", created_utc="2026-01-01T00:00:00+00:00", hardware=HARDWARE,
                models=[ModelInfo(role="target", name="t", param_bytes=100, vocab_size=8, max_len=16)])


def step(index: int, accepted: int = 2) -> StepRecord:
    return StepRecord(strategy="speculative", mode="fused", repeat=0, step=index, context=4 + index,
                      tokens_emitted=accepted + 1, step_ms=1.5,
                      pairs={"draft->target": PairRecord(proposed=4, tested=accepted + 1, accepted=accepted,
                                                         beta_sum=accepted + 0.5, sequence="A" * accepted + "R")})


def write_trace(path: Path, steps: int = 5) -> None:
    with TraceWriter(path, HEADER) as writer:
        writer.write(CompileRecord(strategy="speculative", what="step", compile_s=1.0))
        for index in range(steps):
            writer.write(step(index))
        writer.write(ForwardRecord(model="t", role="target", tokens=2, context=8, ms=0.1, ms_min=0.09, ms_max=0.2,
                                   repeats=3, param_bytes=100))


def test_round_trip(tmp_path):
    path = tmp_path / "trace.jsonl"
    write_trace(path)
    trace = read_trace(path)
    assert trace.header == HEADER and trace.header.schema_version == SCHEMA_VERSION
    assert [s.step for s in trace.steps] == list(range(5)) and len(trace.forwards) == 1 and len(trace.compiles) == 1
    assert trace.dropped_partial_line is None
    acceptance = acceptance_from_steps(list(trace.steps))["draft->target"]
    assert acceptance.alpha == pytest.approx(10 / 15) and acceptance.beta == pytest.approx(12.5 / 15)


def test_malformed_line_names_its_number(tmp_path):
    path = tmp_path / "trace.jsonl"
    write_trace(path)
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('"tokens_emitted":3', '"tokens_emitted":0')
    path.write_text("".join(lines))
    with pytest.raises(InputError, match=r"trace.jsonl:4: malformed trace record: field 'step.tokens_emitted'"):
        read_trace(path)
    lines[3] = "{not json\n"
    path.write_text("".join(lines))
    with pytest.raises(InputError, match=r":4: malformed trace record"):
        read_trace(path)


def test_inconsistent_pair_counts_are_rejected():
    with pytest.raises(ValueError, match="accepted <= tested <= proposed"):
        PairRecord(proposed=2, tested=3, accepted=1, beta_sum=1.0)
    with pytest.raises(ValueError, match="sequence"):
        PairRecord(proposed=2, tested=1, accepted=0, beta_sum=0.0, sequence="x")


def test_header_rules(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text(step(0).model_dump_json() + "\n")
    with pytest.raises(InputError, match="first record must be the header"):
        read_trace(path)
    path.write_text(HEADER.model_copy(update={"schema_version": SCHEMA_VERSION + 1}).model_dump_json() + "\n")
    with pytest.raises(InputError, match="newer than this reader"):
        read_trace(path)
    path.write_text("")
    with pytest.raises(InputError, match="no header"):
        read_trace(path)
    with pytest.raises(InputError, match="not found"):
        read_trace(tmp_path / "missing.jsonl")


def test_truncated_last_line_keeps_every_complete_step(tmp_path):
    path = tmp_path / "trace.jsonl"
    write_trace(path, steps=6)
    text = path.read_text()
    cut = text.rindex('{"kind":"step"') + 37  # the run died while writing step 5
    path.write_text(text[:cut])
    trace = read_trace(path)
    assert [s.step for s in trace.steps] == [0, 1, 2, 3, 4]
    assert trace.dropped_partial_line == len(text[:cut].split("\n"))


KILLED_BENCH = """
import sys
sys.path.insert(0, {tests!r})
from runtime_fixtures import toy_trio
from speccascade.runtime.bench import BenchConfig, run_bench
tiny, draft, target = toy_trio(max_len=512)
run_bench({{"tiny": tiny, "draft": draft, "target": target}}, [1, 2, 3],
          BenchConfig(strategies=("speculative",), new_tokens=400, repeats=1000, staged_repeats=0, microbench=False),
          {trace!r}, progress=False)
"""


def test_a_killed_benchmark_leaves_a_valid_trace(tmp_path):
    path = tmp_path / "killed.jsonl"
    script = KILLED_BENCH.format(tests=str(Path(__file__).parent), trace=str(path))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if path.exists() and path.read_text().count('"kind":"step"') >= 30:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
    finally:
        process.kill()
        process.wait()
    trace = read_trace(path)
    assert len(trace.steps) >= 30
    assert [s.step for s in trace.steps[:30]] == list(range(30))
    assert trace.header.config["strategies"]["speculative"]["k"] == 4
    # the same file with the kill landing mid-record: still valid up to the last complete step
    text = path.read_text()
    path.write_text(text + text.splitlines(keepends=True)[-1][:25])
    assert len(read_trace(path).steps) == len(trace.steps) and read_trace(path).dropped_partial_line


def test_summary_round_trip(tmp_path):
    summary = Summary(run_id="r1", created_utc="now", trace_file="trace.jsonl", hardware=HARDWARE, models=[],
                      strategies={"speculative": StrategySummary(
                          strategy="speculative", config={"k": 4}, repeats=3, new_tokens=64,
                          ms_per_token=Spread.of([1.0, 2.0, 4.0]), tokens_per_s=500.0, compile_s=1.0,
                          tokens_per_step=2.5, acceptance=acceptance_from_steps([step(0)]))})
    write_summary(tmp_path / "summary.json", summary)
    assert read_summary(tmp_path / "summary.json") == summary
    assert summary.strategies["speculative"].ms_per_token.median == 2.0
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "summary"}))
    with pytest.raises(InputError, match="invalid summary"):
        read_summary(tmp_path / "bad.json")


def test_traces_module_does_not_import_jax():
    code = ("import sys, speccascade.runtime.traces as t; t.read_trace; "
            "print('jax' in sys.modules, 'flax' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
