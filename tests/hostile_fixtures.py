"""Shared by the hostile-input tests: folder snapshots, the one-line refusal contract, strict JSON.

``refused`` asserts the contract of docs/limits.md for one in-process CLI run (tests/cli_runner.py): exit code 2,
nothing on stdout, exactly one ``error:`` line on stderr, no traceback, no "internal error", and no file under
the given folder changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cli_runner import run


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file and folder under ``folder`` (except ``skip`` and what is under it): path -> content hash, or
    the kind of entry (folder, link target, special file)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        key = str(path.relative_to(folder))
        if path.is_symlink():
            state[key] = "link -> " + os.readlink(path)
        elif path.is_dir():
            state[key] = "dir"
        elif path.is_file():
            state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[key] = "special"
    return state


def refused(capsys, folder: Path, *argv: str, needle: str | None = None) -> str:
    """Run ``argv``; assert the one-line refusal contract and that nothing under ``folder`` changed."""
    before = snapshot(folder)
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    assert out == "", out
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    if needle is not None:
        assert needle in err, err
    assert snapshot(folder) == before
    return err


def succeeded(capsys, *argv: str) -> tuple[str, str]:
    code, out, err = run(capsys, *argv)
    assert code == 0, (code, out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    return out, err


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity."""
    def constant(name):
        raise AssertionError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=constant)
