"""Trace schema v2 (speccascade.traces): round trip, v1 conversion, mixed versions, validation with line numbers,
partial last lines, a killed benchmark, no JAX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speccascade.errors import InputError
from speccascade.hardware import load_chip, load_model
from speccascade.traces import (
    SCHEMA_VERSION, CompileRecord, ForwardRecord, HardwareInfo, Header, Knobs, ModelInfo, PairRecord, Spread,
    StepRecord, StrategySummary, Summary, TraceWriter, acceptance_from_steps, file_version, read_summary,
    read_trace, read_traces, upgrade_trace, write_summary,
)

HARDWARE = HardwareInfo(backend="cpu", device_kind="cpu", device_count=1, host="test")
TINY_PROFILE = load_model("tiny-10m")
HEADER = Header(run_id="r1", created_utc="2026-01-01T00:00:00+00:00", hardware=HARDWARE, chip="tpu-v5e",
                models=[ModelInfo(role="target", name="t", param_bytes=100, vocab_size=256000, max_len=16,
                                  profile=load_model("gemma-2b:int8")),
                        ModelInfo(role="tiny", name="tn", param_bytes=10, vocab_size=256000, max_len=16,
                                  profile=TINY_PROFILE)])


def step(index: int, accepted: int = 2, strategy: str = "speculative", knobs: Knobs = Knobs(k=4)) -> StepRecord:
    return StepRecord(strategy=strategy, knobs=knobs, mode="fused", repeat=0, step=index, context=4 + index,
                      tokens_emitted=accepted + 1, step_ms=1.5,
                      pairs={"draft->target": PairRecord(proposed=4, tested=accepted + 1, accepted=accepted,
                                                         beta_sum=accepted + 0.5, sequence="A" * accepted + "R")})


def write_trace(path: Path, steps: int = 5, header: Header = HEADER) -> None:
    with TraceWriter(path, header) as writer:
        writer.write(CompileRecord(strategy="speculative", what="step", compile_s=1.0))
        for index in range(steps):
            writer.write(step(index))
        writer.write(ForwardRecord(model="t", role="target", tokens=2, context=8, ms=0.1, ms_min=0.09, ms_max=0.2,
                                   repeats=3, param_bytes=100))


# A version-1 trace as the runtime wrote it before the registry (labels, knobs only in the header's config).
V1_HEADER = {"kind": "header", "schema_version": 1, "run_id": "old", "created_utc": "2025-06-01T00:00:00+00:00",
             "command": "speccascade runtime bench",
             "config": {"strategies": {
                 "speculative": {"strategy": "speculative", "k": 4, "models": {}},
                 "cascade": {"strategy": "cascade", "k_outer": 6, "k_inner": 3, "models": {}},
                 "filtered": {"strategy": "filtered", "k": 4, "top_m": 64, "draft_head": "64 columns"}}},
             "hardware": {"backend": "cpu", "device_kind": "cpu", "device_count": 1, "host": "x"},
             "models": [{"role": "target", "name": "target", "param_bytes": 76000000, "vocab_size": 4096,
                         "max_len": 512}]}


def v1_step(strategy: str, index: int, pairs: dict | None = None) -> dict:
    return {"kind": "step", "strategy": strategy, "mode": "fused", "repeat": 0, "step": index, "context": 10 + index,
            "tokens_emitted": 2, "step_ms": 1.0,
            "pairs": pairs or {"draft->target": {"proposed": 4, "tested": 2, "accepted": 1, "beta_sum": 1.2,
                                                 "sequence": "AR"}}}


def write_v1(path: Path, records: list[dict] | None = None) -> Path:
    records = records or [
        V1_HEADER,
        {"kind": "compile", "strategy": "cascade", "what": "step", "compile_s": 2.0},
        v1_step("speculative", 0), v1_step("filtered", 0),
        v1_step("cascade", 0, {"draft->target": {"proposed": 6, "tested": 6, "accepted": 5, "beta_sum": 5.0,
                                                 "sequence": "AAAAAR"},
                               "tiny->draft": {"proposed": 6, "tested": 4, "accepted": 2, "beta_sum": 2.5,
                                               "sequence": "AR|AR"}}),
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_v2_round_trip(tmp_path):
    path = tmp_path / "trace.jsonl"
    write_trace(path)
    trace = read_trace(path)
    assert trace.header == HEADER and trace.header.schema_version == SCHEMA_VERSION == 2
    assert trace.file_version == 2 and file_version(path) == 2 and trace.notes == []
    assert [s.step for s in trace.steps] == list(range(5)) and len(trace.forwards) == 1 and len(trace.compiles) == 1
    assert trace.dropped_partial_line is None
    assert trace.steps[0].strategy == "speculative" and trace.steps[0].knobs == Knobs(k=4)
    assert trace.steps[0].knob_values() == {"k": 4}
    assert '"knobs":{"k":4}' in path.read_text()  # unset knobs are not written
    acceptance = acceptance_from_steps(list(trace.steps))["draft->target"]
    assert acceptance.alpha == pytest.approx(10 / 15) and acceptance.beta == pytest.approx(12.5 / 15)
    # the header holds every cost-model input but the acceptance
    chip, models = trace.header.profiles(("target", "tiny"))
    assert chip == load_chip("tpu-v5e") and models["target"].dtype == "int8" and models["tiny"] == TINY_PROFILE
    assert trace.steps_of("sd") == trace.steps_of("speculative", "fused", knobs={"k": 4}) == list(trace.steps)


def test_v2_header_embeds_a_probed_chip_profile(tmp_path):
    probed = load_chip("tpu-v5e").model_copy(update={"name": "my-probed-v5e"})
    header = HEADER.model_copy(update={"chip": probed})
    path = tmp_path / "trace.jsonl"
    write_trace(path, steps=1, header=header)
    assert read_trace(path).header.chip_profile() == probed
    bare = read_trace(write_v1(tmp_path / "v1.jsonl")).header
    with pytest.raises(InputError, match="lacks a chip profile, the target model's profile"):
        bare.profiles()


def test_steps_carry_canonical_names_and_registry_knobs():
    assert step(0, strategy="cascade", knobs=Knobs(k=2, k_tiny=3)).strategy == "vertical"  # an alias
    with pytest.raises(ValueError, match="strategy 'speculative' has no knob 'k_tiny'"):
        step(0, knobs=Knobs(k=4, k_tiny=3))
    with pytest.raises(ValueError, match=r"k must lie in \[1, 256\]"):
        step(0, knobs=Knobs(k=0))
    with pytest.raises(ValueError, match="unknown strategy 'warp'"):
        step(0, strategy="warp")


def test_unknown_strategy_is_refused_in_one_line(tmp_path):
    path = tmp_path / "trace.jsonl"
    write_trace(path)
    text = path.read_text().replace('"strategy":"speculative","knobs"', '"strategy":"warp","knobs"', 1)
    path.write_text(text)
    with pytest.raises(InputError) as raised:
        read_trace(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:3: malformed trace record: field 'step.strategy': unknown strategy 'warp'")
    write_v1(path, [V1_HEADER, v1_step("warp", 0)])  # v1: a label the registry does not know
    with pytest.raises(InputError, match=r"trace.jsonl:2: malformed trace record: unknown strategy 'warp'") as raised:
        read_trace(path)
    assert "\n" not in str(raised.value)


def test_v1_file_is_converted_on_read(tmp_path):
    trace = read_trace(write_v1(tmp_path / "v1.jsonl"))
    assert trace.file_version == 1 and trace.header.schema_version == SCHEMA_VERSION
    assert trace.header.chip is None and trace.header.models[0].profile is None
    assert any("schema_version 1" in note and "no chip profile" in note for note in trace.notes)
    assert trace.strategies() == ["speculative", "filtered", "vertical-budget"]
    by_name = {s.strategy: s for s in trace.steps}
    assert by_name["speculative"].knobs == Knobs(k=4)
    assert by_name["filtered"].knobs == Knobs(k=4, filter_width=64)        # top_m -> filter_width
    assert by_name["vertical-budget"].knobs == Knobs(k=6, k_tiny=3)        # k_outer, k_inner -> k, k_tiny
    assert by_name["vertical-budget"].pairs["tiny->draft"].outcomes() == [1, 0, 1, 0]
    assert trace.compiles[0].strategy == "vertical-budget"
    assert trace.steps_of("cascade") == []  # today's alias 'cascade' is the fixed-review 'vertical'
    # a v1 label the header has no config for keeps unset knobs, and says so
    bare = read_trace(write_v1(tmp_path / "bare.jsonl", [{**V1_HEADER, "config": {}}, v1_step("spec", 0)]))
    assert bare.steps[0].strategy == "speculative" and bare.steps[0].knobs == Knobs()
    assert bare.steps[0].knob_values() == {"k": 4}
    assert any("knobs k not recorded" in note for note in bare.notes)


def test_upgrade_rewrites_v1_as_v2(tmp_path):
    old = write_v1(tmp_path / "v1.jsonl")
    new = upgrade_trace(old, tmp_path / "v2.jsonl")
    upgraded, original = read_trace(new), read_trace(old)
    assert upgraded.file_version == 2 and upgraded.steps == original.steps
    assert upgraded.compiles == original.compiles and upgraded.header == original.header
    assert json.loads(new.read_text().splitlines()[0])["schema_version"] == 2
    with pytest.raises(InputError, match="not over"):
        upgrade_trace(old, old)


def test_a_mix_of_versions_is_refused_in_one_line(tmp_path):
    old = write_v1(tmp_path / "v1.jsonl")
    new = tmp_path / "v2.jsonl"
    write_trace(new)
    with pytest.raises(InputError) as raised:
        read_traces([new, old])
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"traces mix schema versions ({old} is v1, {new} is v2)")
    assert "python -m speccascade.traces upgrade" in message
    assert [t.file_version for t in read_traces([old, old])] == [1, 1]
    assert len(read_traces([new, upgrade_trace(old, tmp_path / "up.jsonl")])) == 2


def test_the_simulator_reads_traces_through_this_module(tmp_path):
    from speccascade.simulate import load_empirical

    v1 = write_v1(tmp_path / "v1.jsonl")
    assert load_empirical(v1, pair="tiny->draft", strategy="cascade-budget").tokens == 4  # an alias
    with pytest.raises(InputError, match=r"of strategy 'cascade' \(= vertical\).*strategies in the trace: "
                                         r"speculative, filtered, vertical-budget"):
        load_empirical(v1, strategy="cascade")
    with pytest.raises(InputError, match="unknown strategy 'warp'"):
        load_empirical(v1, strategy="warp")
    v2 = tmp_path / "v2.jsonl"
    write_trace(v2)
    data = load_empirical(v2, strategy="sd")
    assert data.kind == "outcomes" and data.tokens == 15 and len(data.sequences) == 1
    v2.write_text(v2.read_text().replace('"tokens_emitted":3', '"tokens_emitted":0', 1))
    with pytest.raises(InputError, match=r"v2.jsonl:3: malformed trace record: field 'step.tokens_emitted'"):
        load_empirical(v2)


def test_module_command_line_upgrades_and_checks(tmp_path):
    old = write_v1(tmp_path / "v1.jsonl")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-m", "speccascade.traces", "upgrade", str(old), str(tmp_path / "n.jsonl")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "speccascade.traces", "check", str(old), str(tmp_path / "n.jsonl")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.startswith("error: traces mix schema versions")


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
    with pytest.raises(InputError, match=r":4: malformed trace record: not valid JSON"):
        read_trace(path)
    lines[3] = lines[2].replace('"knobs":{"k":4}', '"knobs":{"k":4,"top_m":8}')
    path.write_text("".join(lines))
    with pytest.raises(InputError, match=r":4: malformed trace record: unknown field 'step.knobs.top_m'"):
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
    path.write_text(HEADER.model_dump_json() + "\n" + HEADER.model_dump_json() + "\n")
    with pytest.raises(InputError, match=":2: a second header record"):
        read_trace(path)
    path.write_text("")
    with pytest.raises(InputError, match="no header"):
        read_trace(path)
    with pytest.raises(InputError, match="not found"):
        read_trace(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="written with schema_version 2, the header says 1"):
        TraceWriter(tmp_path / "x.jsonl", HEADER.model_copy(update={"schema_version": 1}))
    with pytest.raises(ValueError, match="profile vocab 256000 != vocab_size 8"):
        ModelInfo(role="tiny", name="t", param_bytes=1, vocab_size=8, max_len=8, profile=TINY_PROFILE)


def test_truncated_last_line_keeps_every_complete_step(tmp_path):
    path = tmp_path / "trace.jsonl"
    write_trace(path, steps=6)
    text = path.read_text()
    cut = text.rindex('{"kind":"step"') + 37  # the run died while writing step 5
    path.write_text(text[:cut])
    trace = read_trace(path)
    assert [s.step for s in trace.steps] == [0, 1, 2, 3, 4]
    assert trace.dropped_partial_line == len(text[:cut].split("\n"))
    v1 = write_v1(tmp_path / "v1.jsonl")
    v1.write_text(v1.read_text() + '{"kind": "step", "strat')  # a v1 run killed mid-record
    assert len(read_trace(v1).steps) == 3 and read_trace(v1).dropped_partial_line == 6


KILLED_BENCH = """
import sys
sys.path.insert(0, {tests!r})
from runtime_fixtures import toy_trio
from speccascade.runtime.bench import BenchConfig, run_bench
tiny, draft, target = toy_trio(max_len=512)
run_bench({{"tiny": tiny, "draft": draft, "target": target}}, [1, 2, 3],
          BenchConfig(strategies=("speculative",), new_tokens=400, repeats=1000, staged_repeats=0, microbench=False,
                      chip="tpu-v5e"),
          {trace!r}, progress=False)
"""


def test_a_killed_benchmark_leaves_a_valid_trace(tmp_path):
    pytest.importorskip("jax")
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
    assert trace.file_version == 2 and trace.header.chip == "tpu-v5e"
    assert {s.strategy for s in trace.steps} == {"speculative"} and trace.steps[0].knobs == Knobs(k=4)
    # the toy models are plain CausalLMs without profiles: the header says so
    assert any("has no ModelProfile" in note for note in trace.notes)
    # the same file with the kill landing mid-record: still valid up to the last complete step
    text = path.read_text()
    path.write_text(text + text.splitlines(keepends=True)[-1][:25])
    assert len(read_trace(path).steps) == len(trace.steps) and read_trace(path).dropped_partial_line


def test_bench_header_names_or_embeds_the_chip(tmp_path, monkeypatch):
    pytest.importorskip("jax")
    from speccascade.hardware.probe import cpu_model_name, write_profile
    from speccascade.runtime.bench import chip_for_header

    monkeypatch.setenv("SPECCASCADE_HOME", str(tmp_path))
    assert chip_for_header("tpu-v5e", HARDWARE) == ("tpu-v5e", [])  # shipped: the name
    copy = tmp_path / "mine.toml"
    write_profile(load_chip("tpu-v5e").model_copy(update={"name": "mine"}), copy)
    assert chip_for_header(str(copy), HARDWARE)[0].name == "mine"  # elsewhere: embedded
    chip, notes = chip_for_header(None, HARDWARE)
    assert chip is None and "run `speccascade hardware probe` first" in notes[0]
    here = load_chip("tpu-v5e").model_copy(update={"name": "local",
                                                    "description": f"{cpu_model_name()[1]}, probed (cpu, 2 cores)"})
    write_profile(here, tmp_path / "chips" / "local.toml")
    chip, notes = chip_for_header(None, HARDWARE)
    assert chip == here and "probed profile" in notes[0]
    write_profile(here.model_copy(update={"description": "Another CPU, probed (cpu, 8 cores)"}),
                  tmp_path / "chips" / "local.toml")
    assert chip_for_header(None, HARDWARE)[0] is None  # probed on another machine


def test_summary_round_trip_and_v1_summary(tmp_path):
    summary = Summary(run_id="r1", created_utc="now", trace_file="trace.jsonl", hardware=HARDWARE, models=[],
                      chip="tpu-v5e",
                      strategies={"speculative": StrategySummary(
                          strategy="speculative", knobs=Knobs(k=4), config={"k": 4}, repeats=3, new_tokens=64,
                          ms_per_token=Spread.of([1.0, 2.0, 4.0]), tokens_per_s=500.0, compile_s=1.0,
                          mean_tokens_per_step=2.5, acceptance=acceptance_from_steps([step(0)]))})
    write_summary(tmp_path / "summary.json", summary)
    assert read_summary(tmp_path / "summary.json") == summary
    assert summary.strategies["speculative"].ms_per_token.median == 2.0
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "summary"}))
    with pytest.raises(InputError, match="invalid summary"):
        read_summary(tmp_path / "bad.json")
    old = json.loads(summary.model_dump_json())
    old["schema_version"] = 1
    del old["chip"], old["notes"]
    cascade = {**old["strategies"]["speculative"], "strategy": "cascade",
               "config": {"strategy": "cascade", "k_outer": 6, "k_inner": 3}}
    del cascade["knobs"]
    old["strategies"] = {"cascade": cascade}
    (tmp_path / "v1.json").write_text(json.dumps(old))
    converted = read_summary(tmp_path / "v1.json")
    assert list(converted.strategies) == ["vertical-budget"] and converted.chip is None
    assert converted.strategies["vertical-budget"].knobs == Knobs(k=6, k_tiny=3) and converted.notes


def test_traces_module_does_not_import_jax():
    code = "import speccascade.traces, sys; assert 'jax' not in sys.modules; assert 'flax' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == 0, done.stderr
