"""Hostile input to the runtime commands (``runtime train|generate|bench|microbench|heads ...``).

The contract of docs/limits.md, and one more: every cheap check runs before anything expensive. Here the
model loaders are replaced by a sentinel that refuses with "models would load now", so a test proves both that a
bad value is refused with its own line and that it was refused before a model (or a 20-minute training) started;
a valid value meets the sentinel instead. Output folders: an existing trace, summary, trio or report is never
replaced without ``--force``, and the refusal comes before the run.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_runner import run
from hostile_fixtures import refused, snapshot

SENTINEL = "models would load now"
DEEP = int(os.environ.get("SPECCASCADE_HOSTILE_EXAMPLES", "0") or 0)
SETTINGS = settings(max_examples=DEEP or 15, deadline=None, derandomize=not DEEP, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """Own folder and speccascade home; every model loader replaced by the sentinel refusal."""
    from speccascade import cli_heads, cli_microbench, cli_runtime
    from speccascade.errors import InputError

    def sentinel(*args, **kwargs):
        raise InputError(SENTINEL)

    monkeypatch.setenv("SPECCASCADE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_runtime, "_role_models", sentinel)
    monkeypatch.setattr(cli_microbench, "role_specs", sentinel)
    monkeypatch.setattr(cli_heads, "_load", sentinel)
    import speccascade.runtime.trio as trio

    monkeypatch.setattr(trio, "train_trio", sentinel)
    return tmp_path


BAD_VALUES = [
    ("bench", "--temperature", "nan", "--temperature must be a finite number > 0"),
    ("bench", "--temperature", "inf", "--temperature must be a finite number > 0"),
    ("bench", "--temperature", "0", "--temperature must be a finite number > 0"),
    ("bench", "--top-p", "nan", "--top-p must be in (0, 1]"),
    ("bench", "--top-p", "1.5", "--top-p must be in (0, 1]"),
    ("bench", "--top-k", "-1", "--top-k must be in [0, 1,048,576]"),
    ("bench", "--repeats", "0", "--repeats must be in [1, 100,000]"),
    ("bench", "--repeats", "1000000", "--repeats must be in [1, 100,000]"),
    ("bench", "--new-tokens", "0", "--new-tokens must be in [1,"),
    ("bench", "--new-tokens", "99999999999", "--new-tokens must be in [1,"),
    ("bench", "--staged-repeats", "-1", "--staged-repeats must be in [0,"),
    ("bench", "--overhead-steps", "-3", "--overhead-steps must be in [0,"),
    ("bench", "--k", "0", "k"),
    ("bench", "--strategies", "nope", "unknown strategy"),
    ("bench", "--chip", "no-such-chip", "no-such-chip"),
    ("generate", "--max-new", "0", "--max-new must be in [1,"),
    ("generate", "--temperature", "-1", "--temperature must be a finite number > 0"),
    ("microbench", "--tokens", "0", "--tokens must be in [1, 4,096]"),
    ("microbench", "--tokens", "1,99999", "--tokens must be in [1, 4,096]"),
    ("microbench", "--contexts", "-1", "--contexts must be in [0,"),
    ("microbench", "--repeats", "0", "--repeats must be in [1,"),
    ("microbench", "--chain", "0", "--chain must be in [1, 1,000]"),
    ("microbench", "--chip", "no-such-chip", "no-such-chip"),
    ("heads bench", "--new-tokens", "0", "--new-tokens must be in [1,"),
    ("heads bench", "--prompts", "0", "--prompts must be in [1, 10,000]"),
    ("heads report", "--prompts", "-2", "--prompts must be in [1, 10,000]"),
]


def _argv(command: str, *extra: str) -> list[str]:
    base = {"generate": ["--prompt", "x", "--strategy", "speculative"],
            "microbench": ["gemma-2b", "--random-weights"]}.get(command, [])
    return ["runtime", *command.split(), *base, *extra]


@pytest.mark.parametrize("command,flag,value,needle", BAD_VALUES, ids=[f"{c}{f}={v}" for c, f, v, _ in BAD_VALUES])
def test_bad_runtime_values_are_refused_before_any_model_loads(capsys, workspace, command, flag, value, needle):
    err = refused(capsys, workspace, *_argv(command, flag, value), needle=needle)
    assert SENTINEL not in err


def test_valid_values_reach_the_model_loader(capsys, workspace):
    """The sentinel is what valid flags meet, so the refusals above are the checks', not the sentinel's."""
    for argv in (_argv("bench", "--repeats", "2"), _argv("generate", "--max-new", "3"),
                 _argv("microbench", "--tokens", "1,2"), _argv("heads bench", "--prompts", "2"),
                 _argv("train")):
        refused(capsys, workspace, *argv, needle=SENTINEL)


def test_bench_and_microbench_keep_existing_output_unless_force(capsys, workspace):
    out = workspace / "results"
    out.mkdir()
    (out / "trace.jsonl").write_text("my measured trace\n")
    (out / "summary.json").write_text("{}\n")
    (out / "microbench.json").write_text("{}\n")
    for argv in (_argv("bench", "--out", str(out)), _argv("microbench", "--out", str(out)),
                 _argv("heads bench", "--out", str(out), "--variants", "medusa")):
        refused(capsys, workspace, *argv, needle="already exists; refusing to overwrite it (use --force")
    # with --force the output check passes and the run goes on (to the sentinel); the files are still there
    refused(capsys, workspace, *_argv("bench", "--out", str(out), "--force"), needle=SENTINEL)
    assert (out / "trace.jsonl").read_text() == "my measured trace\n"


def test_output_paths_that_are_files_or_special_are_refused(capsys, workspace):
    (workspace / "afile").write_text("x")
    for argv, needle in ((_argv("bench", "--out", "afile"), "is a file"),
                         (_argv("bench", "--out", "afile/sub"), "under a file"),
                         (_argv("bench", "--out", ""), "empty output path"),
                         (_argv("bench", "--out", "/dev/null"), "special file"),
                         (_argv("microbench", "--out", "afile"), "is a file"),
                         (_argv("train", "--output", "afile"), "is a file"),
                         (_argv("heads report", "--output", ""), "empty path"),
                         (_argv("train", "--output", ""), "empty output path"),
                         (_argv("microbench", "--out", ""), "empty output path"),
                         (_argv("heads bench", "--out", ""), "empty output path")):
        refused(capsys, workspace, *argv, needle=needle)


def test_train_does_not_replace_an_existing_trio_unless_force(capsys, workspace):
    trio = workspace / "trio"
    trio.mkdir()
    (trio / "manifest.json").write_text('{"mine": true}')
    refused(capsys, workspace, *_argv("train", "--output", str(trio)), needle="already holds a trained trio")
    refused(capsys, workspace, *_argv("train", "--output", str(trio), "--force"), needle=SENTINEL)
    home_trio = workspace / "home" / "trio"  # the default --output
    home_trio.mkdir(parents=True)
    (home_trio / "manifest.json").write_text("{}")
    refused(capsys, workspace, *_argv("train"), needle="already holds a trained trio")


def test_heads_report_keeps_existing_report_and_checks_its_bench_file_first(capsys, workspace):
    (workspace / "report.md").write_text("my report")
    refused(capsys, workspace, *_argv("heads report", "--output", "report.md"), needle="report.md: already exists")
    for content, needle in (('{"variants": {}}', "no 'variants' object"), ("[1, 2]", "no 'variants' object"),
                            ('{"variants": {"nope": {}}}', "unknown heads variants"),
                            ('{"variants": {"medusa": {"sizes": 3}}, "prompts": 2}', "has no 'sizes' object"),
                            ('{"variants": {"medusa": {"sizes": {"4": {}}}}, "prompts": "x"}', "'prompts' must"),
                            ("{not json", "")):
        (workspace / "bench.json").write_text(content)
        err = refused(capsys, workspace, *_argv("heads report", "--output", "new/r.md", "--bench", "bench.json"),
                      needle=needle or None)
        assert SENTINEL not in err  # refused before the trio loads
    assert not (workspace / "new").exists()


HOSTILE_READS = [("bench --config", "fifo"), ("bench --config", "zero"), ("bench --config", "dir"),
                 ("bench --config", "utf8"), ("generate --config", "zero"), ("heads report --bench", "fifo_json"),
                 ("heads report --bench", "zero_json"), ("heads report --bench", "deep"),
                 ("heads report --bench", "bigint"), ("heads report --bench", "utf8_json"),
                 ("heads report --bench", "nan_json"), ("heads report --bench", "file")]


@pytest.mark.parametrize("where,kind", HOSTILE_READS, ids=[f"{w}-{k}" for w, k in HOSTILE_READS])
def test_hostile_files_given_to_runtime_commands(capsys, workspace, hostile, where, kind):
    """FIFOs (would hang), links to /dev/zero (would read forever), folders, invalid UTF-8, deep JSON, huge
    integers, NaN and plain text: one line each, before any model loads."""
    command, flag = where.rsplit(" ", 1)
    err = refused(capsys, workspace, *_argv(command, flag, str(hostile[kind])))
    assert SENTINEL not in err, err


RUNTIME_FLAGS = [("bench", "--temperature"), ("bench", "--top-p"), ("bench", "--top-k"), ("bench", "--repeats"),
                 ("bench", "--new-tokens"), ("bench", "--staged-repeats"), ("bench", "--overhead-steps"),
                 ("bench", "--k"), ("bench", "--k-tiny"), ("bench", "--filter-width"), ("bench", "--tree-nodes"),
                 ("generate", "--max-new"), ("generate", "--temperature"), ("generate", "--top-p"),
                 ("microbench", "--tokens"), ("microbench", "--contexts"), ("microbench", "--repeats"),
                 ("microbench", "--chain"), ("heads bench", "--new-tokens"), ("heads bench", "--prompts"),
                 ("heads bench", "--sizes")]
VALUES = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e309", "-1", "0", "", " ", "abc", "9" * 50,
                                    "9" * 5000, "\x1b[31m", "[/x]", "1,2", "65537", "4097", "1e-400", "true"]),
                   st.integers(min_value=-10**30, max_value=10**30).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=8))


@SETTINGS
@given(case=st.sampled_from(RUNTIME_FLAGS), value=VALUES)
def test_generated_runtime_values_get_one_line_and_never_a_run(capsys, workspace, case, value):
    """Any value: exit 2 and one line (its own refusal, or the sentinel when it is valid); never a traceback."""
    command, flag = case
    before = snapshot(workspace)
    code, out, err = run(capsys, *_argv(command, flag, value))
    shown = (command, flag, value, code, out[-200:], err[-400:])
    assert code == 2 and out == "", shown
    assert err.startswith("error: ") and err.count("\n") == 1, shown
    assert "Traceback" not in err and "internal error" not in err, shown
    assert snapshot(workspace) == before, shown
