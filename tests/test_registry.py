"""The strategy registry: names and aliases everywhere, knob checks, generated docs, jax-free import boundaries."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from speccascade import strategies as registry
from speccascade.strategy_names import parse_strategy_spec
from speccascade.errors import InputError
from speccascade.strategies_doc import markdown, replace_block

from cli_runner import run

ROOT = Path(__file__).resolve().parent.parent


def test_aliases_resolve_and_unknown_names_list_the_known_ones():
    assert registry.canonical("cascade") == "vertical"
    assert registry.canonical("Cascade_Budget") == "vertical-budget"
    assert registry.canonical("medusa") == "heads"
    with pytest.raises(InputError, match=r"unknown strategy 'nope'; known \(aliases\): autoregressive"):
        registry.canonical("nope")
    spellings = [name for spec in registry.REGISTRY.values() for name in (spec.name, *spec.aliases)]
    assert len(spellings) == len(set(spellings))  # no alias names two strategies


def test_knobs_are_checked_with_one_line():
    spec = registry.get("vertical")
    assert spec.check_knobs({"k": 2}) == {"k": 2, "k_tiny": 3}
    for bad, message in (({"k": 0}, r"k must lie in \[1, 64\]"), ({"k_tiny": 2.5}, "must be an integer"),
                         ({"k": True}, "must be an integer")):
        with pytest.raises(InputError, match=message):
            spec.check_knobs(bad)


def test_step_shapes_have_the_documented_verify_lengths():
    assert registry.get("speculative").step_shape({"k": 5}).verify_tokens() == 6
    assert registry.get("vertical").step_shape({"k": 3, "k_tiny": 2}).verify_tokens() == 10
    assert registry.get("vertical-budget").step_shape({"k": 3, "k_tiny": 2}).verify_tokens() == 4
    assert registry.get("heads").step_shape({"tree_nodes": 10}).verify_tokens() == 11
    with pytest.raises(ValueError, match="random number of reviews"):
        registry.get("vertical-budget").step_shape().forwards()
    # horizontal with every position drafted by the Draft runs no Tiny forward
    forwards = registry.get("horizontal").step_shape({"k": 3, "k_draft": 3}).forwards()
    assert {f.role for f in forwards} == {"draft", "target"}


def test_docs_page_is_generated_from_the_registry():
    page = (ROOT / "docs" / "strategies.md").read_text()
    assert replace_block(page) == page, "run: python3 -m speccascade strategies --markdown (see docs/strategies.md)"
    assert markdown() in page


def test_the_alias_works_in_every_command(capsys, tmp_path):
    code, out, err = run(capsys, "predict", "--strategy", "cascade", "--c", "0.1", "--c-tiny", "0.01", "--alpha", "0.8",
                         "--alpha-tiny", "0.7", "--json")
    assert code == 0, err
    assert json.loads(out)["strategy"] == "vertical"
    code, out, err = run(capsys, "simulate", "--strategy", "cascade-budget", "--c", "0.1", "--c-tiny", "0.01",
                         "--alpha", "0.8", "--alpha-tiny", "0.7", "--steps", "20000", "--json")
    assert code == 0, err
    assert json.loads(out)["strategy"] == "vertical-budget"
    code, out, err = run(capsys, "optimize", "--alpha", "0.8", "--c", "0.1", "--c-tiny", "0.01", "--alpha-tiny", "0.7",
                         "--strategies", "ar,cascade", "--k-max", "6", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert {choice["strategy"] for choice in [data["best"], *data["runner_ups"]]} <= {"autoregressive", "vertical"}
    code, out, err = run(capsys, "sweep", "--c", "0.1", "--c-tiny", "0.01", "--alpha", "0.8", "--alpha-tiny", "0.7",
                         "--grid", "strategy=cascade,spec", "--grid", "k=1:3", "--out", str(tmp_path / "s"),
                         "--formats", "csv", "--no-plots")
    assert code == 0, err
    with open(tmp_path / "s" / "sweep.csv", newline="") as handle:
        assert {row["strategy"] for row in csv.DictReader(handle)} == {"vertical", "speculative"}
    claim = json.loads((ROOT / "docs" / "examples" / "seed-000-claims.json").read_text())
    claim["strategy"] = "cascade"
    (tmp_path / "claim.json").write_text(json.dumps(claim))
    code, out, err = run(capsys, "audit", str(tmp_path / "claim.json"), "--json")
    assert code in (0, 1), err  # findings may be errors (exit 1); the name is accepted


def test_optimize_with_no_flags_answers_the_headline(capsys):
    code, out, err = run(capsys, "optimize", "--json", "--k-max", "8", "--k-tiny-max", "3")
    assert code == 0, err
    data = json.loads(out)
    assert data["best"]["strategy"] in registry.names() and data["configurations_searched"] > 100


def test_default_search_tries_drafts_quantizations_tiny_and_chips():
    from speccascade.costmodel.search.optimize import OptimizeRequest, structures

    found = structures(OptimizeRequest(hardware="tpu-v5e", target="gemma-7b", alpha=0.8))
    drafts = {s.draft for s in found if s.draft}
    assert drafts == {"gemma-2b", "gemma-2b:int8", "gemma-2b:int4"}
    assert {s.chips for s in found} == {1, 2, 4, 8}
    assert {s.tiny for s in found} == {None, "tiny-10m"}  # the Tiny stage or not
    assert {"speculative", "filtered", "autoregressive"} <= {s.strategy for s in found}


@pytest.mark.parametrize("statement", [
    "import speccascade",
    "import speccascade.strategies, speccascade.strategies_doc",
    "import speccascade.costmodel, speccascade.costmodel.predict, speccascade.costmodel.search.optimize",
    "import speccascade.costmodel.search.sweep, speccascade.costmodel.audit",
    "import speccascade.simulate, speccascade.simulate.build",
    "import speccascade.traces",
    "import speccascade.cli; speccascade.cli.main(['--help'])",
    "import speccascade.cli; speccascade.cli.main(['strategies', '--json'])",
])
def test_jax_free_layers_do_not_import_jax(statement):
    code = (f"import sys\ntry:\n    {statement}\nexcept SystemExit:\n    pass\n"
            "assert 'jax' not in sys.modules, 'jax was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def _module_imports(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (top-level and function-level, relative or absolute)."""
    import ast

    paths = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        paths[".".join([package, *parts]).removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {target for target in targets if target in paths and target != name}
    return graph


def test_costmodel_has_no_import_cycles():
    """costmodel/ and its sub-packages (search, audit) import one way: no cycle, not even through a lazy import."""
    graph = _module_imports(ROOT / "costmodel", "speccascade.costmodel")
    assert {"speccascade.costmodel.search.optimize", "speccascade.costmodel.audit.run"} <= set(graph)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            assert state.get(target) != 1, f"import cycle: {' -> '.join(path + [node, target])}"
            if target not in state:
                visit(target, path + [node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
    core = {name for name in graph if name.count(".") == 2  # speccascade.costmodel.X: the model core
            and not name.endswith((".search", ".audit"))}
    for name in core:
        assert not any(".search" in t or ".audit" in t for t in graph[name]), f"{name} imports search or audit"


def test_strategy_specs_with_their_own_knobs():
    assert parse_strategy_spec("cascade:k=2:k_tiny=1") == ("vertical", {"k": 2, "k_tiny": 1})
    assert parse_strategy_spec("speculative") == ("speculative", {})
    for bad, message in (("speculative:k_tiny=2", "a knob of speculative"), ("vertical:k=x", "must be an integer"),
                         ("vertical:k=0", r"k must lie in \[1, 64\]"), ("nope:k=1", "unknown strategy")):
        with pytest.raises(InputError, match=message):
            parse_strategy_spec(bad)
