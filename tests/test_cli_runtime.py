"""``speccascade runtime generate`` and ``bench`` end to end, on toy models behind a byte-level tokenizer."""

from __future__ import annotations

import json

import pytest

import speccascade.runtime.trio as trio_module
from speccascade.runtime.tokenizer import ByteBPETokenizer
from speccascade.traces import read_summary, read_trace

from runtime_fixtures import toy_trio
from cli_runner import run


@pytest.fixture(scope="module")
def fake_trio():
    tokenizer = ByteBPETokenizer([])  # 256 bytes + <|endoftext|>
    tiny, draft, target = toy_trio(vocab=tokenizer.vocab_size, max_len=256, seed=3)
    return trio_module.Trio(target=target, draft=draft, tiny=tiny, tokenizer=tokenizer,
                            metadata={})


@pytest.fixture
def patched(monkeypatch, fake_trio):
    monkeypatch.setattr(trio_module, "load_default_trio", lambda *args, **kwargs: fake_trio)
    return fake_trio


def test_generate_json_is_lossless_across_strategies(patched, capsys):
    outputs = {}
    for strategy in ("autoregressive", "speculative", "cascade", "vertical-budget", "filtered"):
        code, out, err = run(capsys, "runtime", "generate", "--strategy", strategy, "--prompt", "def f(x):",
                             "--max-new", "12", "--greedy", "--json", "--filter-width", "16", "--k", "2")
        assert code == 0, err
        result = json.loads(out)
        assert set(result) == {"text", "tokens", "acceptance"} and len(result["tokens"]) == 12
        assert result["text"] == patched.tokenizer.decode(result["tokens"])
        outputs[strategy] = result["tokens"]
    assert len({tuple(tokens) for tokens in outputs.values()}) == 1
    assert "draft->target" in result["acceptance"]


def test_generate_rejects_bad_input(patched, capsys):
    """Each error: exit code 2, exactly one line on stderr, nothing on stdout."""
    spec = ("--strategy", "speculative", "--prompt", "x")
    for argv, needle in [
        (("--strategy", "nonesuch", "--prompt", "x"), "error: unknown strategy 'nonesuch'"),
        (("--strategy", "horizontal", "--prompt", "x"), "error: the runtime does not run strategy 'horizontal'"),
        ((*spec, "--k", "0"), "k must lie in [1, 256]"),
        ((*spec, "--draft-weights", "int4"), "--draft-weights"),
        ((*spec, "--target-weights", "fp8"), "error: --target-weights must be one of bf16, fp32"),
        ((*spec, "--temperature", "0"), "temperature"),
        ((*spec, "--max-new", "900"), "context"),
    ]:
        code, out, err = run(capsys, "runtime", "generate", *argv)
        assert code == 2 and out == "" and err.count("\n") == 1, (argv, code, out, err)
        assert (err.startswith(needle) if needle.startswith("error: ") else needle in err), (argv, err)


def test_bench_writes_a_trace_and_a_summary(patched, capsys, tmp_path):
    code, out, err = run(capsys, "runtime", "bench", "--strategies", "autoregressive,speculative,spec:k=2", "--new-tokens", "8",
                         "--repeats", "2", "--staged-repeats", "1", "--no-microbench", "--overhead-steps", "2",
                         "--out", str(tmp_path), "--json")
    assert code == 0, err
    summary = read_summary(tmp_path / "summary.json")
    assert json.loads(out)["run_id"] == summary.run_id
    assert set(summary.strategies) == {"autoregressive", "speculative", "speculative:k=2"}  # two variants side by side
    assert summary.strategies["speculative:k=2"].knobs.k == 2 and summary.strategies["speculative"].knobs.k == 4
    assert summary.strategies["autoregressive"].speedup == pytest.approx(1.0)
    assert len(summary.strategies["speculative"].ms_per_token.values) == 2
    assert set(summary.strategies["speculative"].stage_ms_per_step) == {"draft", "target"}
    trace = read_trace(tmp_path / "trace.jsonl")
    assert {step.mode for step in trace.steps_of("speculative")} == {"fused", "staged"}
    assert sum(step.tokens_emitted for step in trace.steps_of("autoregressive", "fused")) == 16
    assert {record.what for record in trace.compiles} >= {"step"}
    assert summary.strategies["speculative"].host_overhead_fraction < 1
