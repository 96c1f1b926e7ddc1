"""Property-based hostile input (hypothesis): generated bad values, files and paths fed to every command.

Each example runs the CLI in-process (tests/cli_runner.py) in a fresh folder and asserts the contract of
docs/limits.md: exit code 0 or 2 (never 1, an internal error), at most one ``error:`` line on stderr and nothing on
stdout when it exits 2, no traceback, no "internal error", strict JSON where --json succeeds, and no file changed
outside the example's own output folder (``out/``): the user's files, the inputs and the speccascade home stay as
they were. Work sizes are capped (``--max-rows``, ``--max-configurations``, small ``--steps``) so that a valid
example finishes quickly; a command running past ``HANG_S`` fails the test as a hang.
"""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_runner import run
from hostile_fixtures import snapshot, strict_json

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
CHIP_TOML = ROOT / "hardware" / "chips" / "tpu-v5e.toml"
MODEL_TOML = ROOT / "hardware" / "models" / "gemma-2b.toml"
HANG_S = 60
ABSTRACT = ["--alpha", "0.8", "--k", "4", "--c", "0.05"]
HARDWARE = ["--hardware", "tpu-v5e", "--target", "gemma-7b", "--draft", "gemma-2b:int8", "--alpha", "0.8"]

# CI runs a fixed, quick set of examples; SPECCASCADE_HOSTILE_EXAMPLES=N runs N random ones per test (a deeper hunt)
DEEP = int(os.environ.get("SPECCASCADE_HOSTILE_EXAMPLES", "0") or 0)
SETTINGS = settings(max_examples=DEEP or 18, deadline=None, derandomize=not DEEP, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# --- generated values -----------------------------------------------------------------------------------
SPECIAL_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309", "-1", "0", "-0", "1e-400", "",
                   " ", "abc", "0x10", "1_0", "true", "None", "[1]", "1,2", "\x1b[31m", "[/x]", "9" * 50,
                   "-" + "9" * 50, "9" * 5000, "1e308", "4.9e-324", "65537", "1048577", "16777217", "257"]
BAD_NUMBERS = st.one_of(st.sampled_from(SPECIAL_NUMBERS),
                        st.integers(min_value=-10**40, max_value=10**40).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.text(max_size=10))
NAMES = st.one_of(st.sampled_from(["[/oops]", "[bold]x", "\x1b[31mred\x1b]0;t\x07", "a\nb", "../../etc/passwd",
                                   "x.toml", "/dev/zero", "gemma-7b:[red]", "tpu-v5e\x00", "", " "]),
                  st.text(max_size=16))


def _within(value: str, low: int, high: int) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and low <= number <= high


# --- running one example ----------------------------------------------------------------------------------
class Hang(BaseException):
    """Raised by the alarm: not an Exception, so the CLI's guard cannot turn it into an error line."""


def _alarm(signum, frame):
    raise Hang(f"a command ran longer than {HANG_S} s")


class Example:
    """A fresh folder for one example (the cwd while it runs); its ``out/`` is the only place allowed to change.
    Inputs the example writes are made before :meth:`ready`, which snapshots everything else under the root."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = Path(tempfile.mkdtemp(dir=root))
        (self.folder / "out").mkdir()
        self.before = None

    def ready(self) -> None:
        self.before = snapshot(self.root, skip=self.folder / "out")

    def __enter__(self) -> "Example":
        CURRENT.append(self)
        self.previous = os.getcwd()
        os.chdir(self.folder)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        CURRENT.remove(self)
        os.chdir(self.previous)
        if kind is None:
            after = snapshot(self.root, skip=self.folder / "out")
            changed = {key for key in set(self.before) | set(after) if self.before.get(key) != after.get(key)}
            assert not changed, f"files outside out/ changed: {sorted(changed)[:5]}"


def example_folder(root: Path) -> Example:
    return Example(root)


CURRENT: list[Example] = []


def check(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the CLI once under the contract; returns (code, out, err)."""
    for example in CURRENT[-1:]:
        if example.before is None:
            example.ready()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        code, out, err = run(capsys, *argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    shown = (argv, code, out[-300:], err[-600:])
    assert code in (0, 2), shown
    assert "Traceback" not in err and "internal error" not in err, shown
    if code == 2:
        assert out == "", shown
        assert err.startswith("error: ") and err.count("\n") == 1, shown
    elif "--json" in argv and out.strip():
        strict_json(out)
    return code, out, err


# --- the library of inputs (made once; protected like user files) -------------------------------------------
@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Valid inputs to mutate, hostile special files, a user's files and a speccascade home with broken
    profiles; everything under one root that every example checks is unchanged."""
    root = tmp_path_factory.mktemp("hostile")
    lib = root / "lib"
    lib.mkdir()
    home = root / "home"
    (home / "chips").mkdir(parents=True)
    (home / "models").mkdir()
    (home / "chips" / "broken.toml").write_text("name = [\n")
    (home / "chips" / "nan-chip.toml").write_text(CHIP_TOML.read_text().replace("bf16 = ", "bf16 = nan #", 1))
    os.mkfifo(home / "models" / "pipe.toml")
    user = root / "user"
    user.mkdir()
    (user / "notes.txt").write_text("my notes\n")
    (user / "sweep.csv").write_text("my table\n")
    os.mkfifo(lib / "fifo")
    (lib / "zero").symlink_to("/dev/zero")
    (lib / "folder").mkdir()
    valid = {"chip": CHIP_TOML.read_text(), "model": MODEL_TOML.read_text(),
             "claim": (EXAMPLES / "consistent-claim.json").read_text(),
             "heads": (EXAMPLES / "medusa_vicuna7b_acc.json").read_text(),
             "reported": (EXAMPLES / "seed-000-reported.json").read_text(),
             "config": 'hardware = "tpu-v5e"\ntarget = "gemma-7b"\ndraft = "gemma-2b:int8"\nalpha = 0.8\nk = 4\n'}
    from test_calibrate_forward import write_trace

    trace = write_trace(lib / "trace.jsonl")
    valid["trace"] = trace.read_text()
    from test_calibrate_acceptance import speculative_steps, write_trace as write_steps

    from speccascade.calibrate.acceptance import fit_acceptance
    from speccascade.simulate.processes import IID

    steps = write_steps(lib / "steps.jsonl", speculative_steps(IID(0.8), 4, 3, 60, 1))
    valid["acceptance"] = fit_acceptance([steps], bootstrap=100).write(lib / "acceptance.json").read_text()
    return Library(root=root, lib=lib, home=home, user=user, valid=valid)


class Library(dict):
    """The shared inputs (a dict with a short repr: hypothesis prints its arguments when an example fails)."""

    def __init__(self, **items):
        super().__init__(items)

    def __repr__(self) -> str:
        return "library"


@pytest.fixture(autouse=True)
def environment(library, monkeypatch):
    monkeypatch.setenv("SPECCASCADE_HOME", str(library["home"]))
    monkeypatch.delenv("SPECCASCADE_MAX_FILE_MB", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")


# --- generated files --------------------------------------------------------------------------------------
BAD_LEAVES = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -1, 0, -1e308, 1e308, True, False, None, "",
                     "[/x]", "\x1b[31m", 10**40, 2**63, -(2**63), [], {}, [[[[]]]], "nan", 1e-320]),
    st.integers(min_value=-10**35, max_value=10**35), st.floats(), st.text(max_size=8))


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    yield path


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replace(value[head], rest, new)
    return copy


def _mutated_json(data, text: str) -> bytes:
    document = json.loads(text)
    leaves = list(_leaves(document))
    path = data.draw(st.sampled_from(leaves[:400]), label="where")
    new = data.draw(BAD_LEAVES, label="value")
    return json.dumps(_replace(document, path, new)).encode()


def _mutated_toml(data, text: str) -> bytes:
    document = tomllib.loads(text)
    leaves = [path for path in _leaves(document) if path]
    path = data.draw(st.sampled_from(leaves), label="where")
    new = data.draw(BAD_LEAVES.filter(lambda v: v is not None and v != [] and v != {}), label="value")
    try:
        return tomli_w.dumps(_replace(document, path, new)).encode()
    except (TypeError, ValueError):
        return (text + f"\n{path[-1]} = {new!r}\n").encode()


def _mutated_lines(data, text: str) -> bytes:
    lines = text.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    choice = data.draw(st.sampled_from(["mutate", "truncate", "garbage", "deep", "duplicate-header"]), label="how")
    if choice == "mutate":
        lines[index] = _mutated_json(data, lines[index]).decode()
    elif choice == "truncate":
        lines[index] = lines[index][: data.draw(st.integers(0, len(lines[index])), label="cut")]
    elif choice == "garbage":
        lines[index] = data.draw(st.text(max_size=30), label="garbage")
    elif choice == "deep":
        lines[index] = "[" * 5000 + "]" * 5000
    else:
        lines.insert(index, lines[0])
    return ("\n".join(lines) + "\n").encode()


def draw_file(data, library, folder: Path, kind: str, suffix: str) -> str:
    """A path to a hostile or mutated file of ``kind`` (chip, model, claim, heads, reported, config, trace,
    acceptance)."""
    lib = library["lib"]
    how = data.draw(st.sampled_from(["fifo", "zero", "folder", "missing", "deep", "bigint", "utf8", "nan",
                                     "empty", "random", "mutated", "mutated", "mutated", "under-file"]),
                    label="file kind")
    special = {"fifo": lib / "fifo", "zero": lib / "zero", "folder": lib / "folder",
               "missing": folder / f"missing{suffix}", "under-file": library["user"] / "notes.txt" / f"x{suffix}"}
    if how in special:
        if how in ("fifo", "zero", "folder"):  # named with the kind's suffix (a profile name must end in .toml)
            link = folder / f"{how}-{len(list(folder.iterdir()))}{suffix}"
            link.symlink_to(special[how])
            return str(link)
        return str(special[how])
    path = folder / f"input-{len(list(folder.iterdir()))}{suffix}"
    valid = library["valid"].get(kind)
    if how == "deep":
        content = ("[" * data.draw(st.integers(65, 100_000), label="depth") + "]" * 100_000).encode()
    elif how == "bigint":
        content = ('{"k": ' + "9" * data.draw(st.integers(31, 6000), label="digits") + "}").encode()
    elif how == "utf8":
        content = data.draw(st.binary(min_size=1, max_size=64), label="bytes") + b"\xff\xfe"
    elif how == "nan":
        content = b'{"cumulative": true, "heads": [[NaN]], "alpha": Infinity}'
    elif how == "empty":
        content = b""
    elif how == "random" or valid is None:
        content = data.draw(st.text(max_size=200), label="text").encode()
    elif kind in ("chip", "model", "config"):
        content = _mutated_toml(data, valid)
    elif kind == "trace":
        content = _mutated_lines(data, valid)
    else:
        content = _mutated_json(data, valid)
    path.write_bytes(content)
    return str(path)


FILE_SLOTS = {
    "predict --hardware": ("chip", ".toml", lambda f: ["predict", "--hardware", f, "--target", "gemma-7b", "--json"]),
    "predict --target": ("model", ".toml", lambda f: ["predict", "--hardware", "tpu-v5e", "--target", f]),
    "predict --config": ("config", ".toml", lambda f: ["predict", "--config", f, "--json"]),
    "predict --heads-accuracy": ("heads", ".json", lambda f: ["predict", "--heads-accuracy", f, "--hardware",
                                                             "a100-80g", "--target", "vicuna-7b"]),
    "predict --acceptance": ("acceptance", ".json", lambda f: ["predict", "--acceptance", f, "--json"]),
    "simulate --config": ("config", ".toml", lambda f: ["simulate", "--config", f, "--steps", "2000", "--json"]),
    "simulate --empirical": ("trace", ".jsonl", lambda f: [
        "simulate", *ABSTRACT, "--process", "empirical", "--empirical", f, "--steps", "2000"]),
    "optimize --acceptance": ("acceptance", ".json", lambda f: ["optimize", "--acceptance", f, "--c", "0.1",
                                                               "--alpha", "0.7", "--json"]),
    "sweep --config": ("config", ".toml", lambda f: ["sweep", "--config", f, "--grid", "k=1:3", "--out", "out/s",
                                                     "--no-plots", "--max-rows", "5000", "--json"]),
    "audit": ("claim", ".json", lambda f: ["audit", f]),
    "validate --reported": ("reported", ".json", lambda f: ["validate", "--reported", f]),
    "validate TRACE": ("trace", ".jsonl", lambda f: ["validate", f, "--json"]),
    "calibrate": ("trace", ".jsonl", lambda f: ["calibrate", f, "--out", "out/cal", "--name", "x",
                                                "--no-acceptance", "--json"]),
    "hardware show": ("chip", ".toml", lambda f: ["hardware", "show", f]),
}


@SETTINGS
@given(data=st.data(), slot=st.sampled_from(sorted(FILE_SLOTS)))
def test_bad_files_to_every_reader(capsys, library, data, slot):
    kind, suffix, argv = FILE_SLOTS[slot]
    with example_folder(library["root"]) as example:
        folder = example.folder
        check(capsys, *argv(draw_file(data, library, folder, kind, suffix)))


# --- numbers ----------------------------------------------------------------------------------------------
PREDICT_FLAGS = ["--alpha", "--alpha-tiny", "--k", "--k-tiny", "--chips", "--batch", "--context", "--c", "--c-tiny",
                 "--filter-width", "--gamma-tiny", "--gamma-total", "--k-draft", "--alphas", "--tree-nodes",
                 "--verify-cost"]


@SETTINGS
@given(flag=st.sampled_from(PREDICT_FLAGS), value=BAD_NUMBERS, hardware=st.booleans(), as_json=st.booleans())
def test_bad_numbers_to_predict(capsys, library, flag, value, hardware, as_json):
    base = HARDWARE if hardware else ["--alpha", "0.8", "--c", "0.05"]
    if flag == "--tree-nodes":
        base = ["--heads-accuracy", str(EXAMPLES / "medusa_vicuna7b_acc.json"), "--hardware", "a100-80g", "--target",
                "vicuna-7b"]
    with example_folder(library["root"]):
        check(capsys, "predict", *base, flag, value, *(["--json"] if as_json else []))


SIMULATE_FLAGS = ["--steps", "--tokens", "--seed", "--threshold", "--rho", "--alpha", "--k", "--c", "--alphas",
                  "--k-tiny", "--alpha-tiny", "--c-tiny"]


@SETTINGS
@given(flag=st.sampled_from(SIMULATE_FLAGS), value=BAD_NUMBERS)
def test_bad_numbers_to_simulate(capsys, library, flag, value):
    if flag == "--steps" and _within(value, 20_001, 10**10):
        value = "-" + value  # a valid but long simulation is not what this checks
    base = [*ABSTRACT, "--alpha-tiny", "0.7", "--c-tiny", "0.01"] + (["--process", "markov"] if flag == "--rho" else [])
    steps = [] if flag == "--steps" else ["--steps", "2000"]
    with example_folder(library["root"]):
        check(capsys, "simulate", *base, *steps, flag, value, "--json")


OPTIMIZE_FLAGS = ["--alpha", "--alpha-tiny", "--c", "--c-tiny", "--k-max", "--k-tiny-max", "--chips", "--batch",
                  "--filter-widths", "--context", "--top", "--latency-limit", "--max-configurations"]


@SETTINGS
@given(flag=st.sampled_from(OPTIMIZE_FLAGS), value=BAD_NUMBERS, hardware=st.booleans())
def test_bad_numbers_to_optimize(capsys, library, flag, value, hardware):
    if hardware:
        base = ["--hardware", "tpu-v5e", "--target", "gemma-7b", "--draft", "gemma-2b=0.8", "--quantize", "",
                "--strategies", "speculative", "--chips", "2", "--k-max", "8"]
        base = [part for part in base if not (flag in ("--chips", "--k-max") and part in (flag,))]
        if flag in ("--chips", "--k-max"):
            index = base.index("--strategies") + 2
            base = base[:index]
    else:
        base = ["--alpha", "0.7", "--c", "0.1", "--c-tiny", "0.01", "--alpha-tiny", "0.7"]
    extra = ["--objective", "throughput"] if flag == "--latency-limit" else []
    cap = [] if flag == "--max-configurations" else ["--max-configurations", "50000"]
    with example_folder(library["root"]):
        check(capsys, "optimize", *base, *extra, *cap, flag, value, "--json")


AXES = ["alpha", "alpha_tiny", "k", "k_tiny", "chips", "batch", "context", "c", "c_tiny", "filter_width", "strategy",
        "hardware", "quantization", "gamma_tiny", "colour", ""]


@st.composite
def grid_specs(draw):
    axis = draw(st.sampled_from(AXES))
    shape = draw(st.sampled_from(["range", "range-step", "list", "text"]))
    if shape == "range":
        spec = f"{draw(BAD_NUMBERS)}:{draw(BAD_NUMBERS)}"
    elif shape == "range-step":
        spec = f"{draw(BAD_NUMBERS)}:{draw(BAD_NUMBERS)}:{draw(BAD_NUMBERS)}"
    elif shape == "list":
        spec = ",".join(draw(st.lists(BAD_NUMBERS, min_size=0, max_size=4)))
    else:
        spec = draw(NAMES)
    return f"{axis}={spec}" if draw(st.booleans()) else axis + spec


@SETTINGS
@given(grids=st.lists(grid_specs(), min_size=1, max_size=3), formats=st.one_of(st.none(), st.sampled_from(
    ["csv", "json", "csv,xml", "", ",", "parquet,csv", "[/x]"])), hardware=st.booleans())
def test_bad_grids_to_sweep(capsys, library, grids, formats, hardware):
    base = HARDWARE if hardware else ABSTRACT
    argv = ["sweep", *base, *(part for grid in grids for part in ("--grid", grid)), "--out", "out/sweep",
            "--no-plots", "--max-rows", "5000", "--json"] + (["--formats", formats] if formats is not None else [])
    with example_folder(library["root"]):
        check(capsys, *argv)


# --- output paths -----------------------------------------------------------------------------------------
REFUSED_PATHS = ["", "/dev/null", "{user}/notes.txt", "{user}/notes.txt/sub", "{lib}/fifo", "{lib}/zero",
                 "{user}/sweep.csv"]
PATHS = st.one_of(st.sampled_from(REFUSED_PATHS + ["out", "out/new", "out/[/x]", "out/\x1b[31m",
                                                   "out/a/b/c", "out/x.png", "."]),
                  st.text(min_size=1, max_size=12).map(lambda text: "out/" + text.replace("\x00", "")))


@SETTINGS
@given(data=st.data(), command=st.sampled_from(["sweep", "simulate", "optimize", "calibrate", "probe"]))
def test_bad_output_paths(capsys, library, data, command):
    if command == "probe":  # a valid path would start a measurement: only paths that must be refused
        raw = data.draw(st.sampled_from(REFUSED_PATHS + ["{user}"]), label="path")
    else:
        raw = data.draw(PATHS, label="path")
    if command == "simulate" and raw in ("{user}/notes.txt", "{user}/sweep.csv"):
        raw = "{lib}/fifo"  # --plot notes.txt writes notes.txt.png beside it: allowed, but not in the user's folder
    path = raw.replace("{user}", str(library["user"])).replace("{lib}", str(library["lib"]))
    with example_folder(library["root"]) as example:
        folder = example.folder
        if path == "." or path == "out":  # the example folder itself: only out/ may change
            path = "out"
        argv = {
            "sweep": ["sweep", *ABSTRACT, "--grid", "k=1:2", "--out", path, "--no-plots", "--formats", "csv",
                      "--json"],
            "simulate": ["simulate", *ABSTRACT, "--steps", "2000", "--plot", path, "--json"],
            "optimize": ["optimize", "--alpha", "0.7", "--c", "0.1", "--top", "2", "--write-config", path, "--json"],
            "calibrate": ["calibrate", str(library["lib"] / "trace.jsonl"), "--out", path, "--name", "x",
                          "--no-acceptance", "--json"],
            "probe": ["hardware", "probe", "--quick", "--output", path],
        }[command]
        code, _, _ = check(capsys, *argv)
        if command == "probe":
            assert code == 2
        if path in ("", "/dev/null") or path.startswith(str(library["user"])) or path.startswith(str(library["lib"])):
            assert code == 2
        assert not list(folder.glob("*.png")) and not list(folder.glob("*.svg"))


@SETTINGS
@given(data=st.data(), count=st.integers(1, 3), as_json=st.booleans())
def test_hardware_list_with_bad_profiles_in_the_home(capsys, library, monkeypatch, data, count, as_json):
    with example_folder(library["root"]) as example:
        home = example.folder / "out" / "home"
        for index in range(count):
            kind = data.draw(st.sampled_from(["chip", "model"]), label="kind")
            source = draw_file(data, library, example.folder, kind, ".toml")
            target = home / ("chips" if kind == "chip" else "models") / f"p{index}.toml"
            target.parent.mkdir(parents=True, exist_ok=True)
            if Path(source).is_file() and not Path(source).is_symlink():
                Path(source).rename(target)
            else:
                target.symlink_to(os.path.abspath(source))
        monkeypatch.setenv("SPECCASCADE_HOME", str(home))
        code, out, _ = check(capsys, "hardware", "list", *(["--json"] if as_json else []))
        assert code == 0  # a broken profile is listed as broken, never an error of the whole listing
        if as_json:
            listing = strict_json(out)
            assert {chip["name"] for chip in listing["chips"]} >= {"tpu-v5e", "h200"}


@SETTINGS
@given(extra=st.lists(st.one_of(st.sampled_from(["--json", "--markdown", "--help", "--nope"]), NAMES), max_size=2))
def test_strategies_with_odd_arguments(capsys, library, extra):
    with example_folder(library["root"]):
        check(capsys, "strategies", *extra)


# --- names and untrusted text -----------------------------------------------------------------------------
@SETTINGS
@given(name=NAMES, where=st.sampled_from(["--hardware", "--target", "--draft", "--strategy", "explain", "show",
                                         "claim", "--grid-strategy"]))
def test_names_with_markup_and_control_characters(capsys, library, name, where):
    with example_folder(library["root"]) as example:
        folder = example.folder
        if where == "explain":
            argv = ["explain", name]
        elif where == "show":
            argv = ["hardware", "show", name]
        elif where == "claim":
            claim = json.loads((EXAMPLES / "consistent-claim.json").read_text()) | {"name": name}
            (folder / "claim.json").write_text(json.dumps(claim))
            argv = ["audit", str(folder / "claim.json")]
        elif where == "--grid-strategy":
            argv = ["sweep", *ABSTRACT, "--grid", f"strategy={name}", "--out", "out/s", "--no-plots", "--json"]
        else:
            values = {"--hardware": "tpu-v5e", "--target": "gemma-7b", "--draft": "gemma-2b:int8"}
            values[where] = name
            argv = ["predict", *(part for flag, value in values.items() for part in (flag, value)), "--alpha", "0.8"]
            if where == "--strategy":
                argv = ["predict", "--strategy", name, *HARDWARE]
        code, out, err = check(capsys, *argv)
        for text in (out, err):
            assert "\x1b" not in text and "\x07" not in text
