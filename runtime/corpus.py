"""The training text: the Python standard library's own source files (on every machine, no download).

The corpus is the sorted list of ``*.py`` files under ``sysconfig.get_paths()["stdlib"]``, skipping
``site-packages`` and the test suites / bundled tools (``test``, ``tests``, ``idlelib``, ``lib2to3``, ``ensurepip``,
``__pycache__``), which are large and unlike ordinary code. Its identity is recorded as the list of relative paths
plus one sha256 over (path, NUL, content, NUL) for every file in order, so a checkpoint says exactly which text it
was trained on; another Python version gives another list and another hash (the checkpoint still loads; the
metadata tells the difference).

Split: every ``heldout_every``-th file (in sorted order, starting with the first) is held out for evaluation; the
rest is training text. Files are separated by the tokenizer's end-of-text token when tokenized.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from speccascade.errors import InputError

SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "ensurepip",
                          "__pycache__"})


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@dataclass(frozen=True)
class Corpus:
    """An ordered list of text files under ``root`` (paths relative, posix style)."""

    root: Path
    files: tuple[str, ...]

    def read_bytes(self, relative: str) -> bytes:
        return (self.root / relative).read_bytes()

    def texts(self, files: tuple[str, ...] | None = None) -> list[str]:
        """File contents as text (undecodable bytes replaced, so the byte-level tokenizer round-trips them)."""
        return [self.read_bytes(f).decode("utf-8", errors="replace") for f in (files or self.files)]

    @cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for relative in self.files:
            digest.update(relative.encode() + b"\0" + self.read_bytes(relative) + b"\0")
        return digest.hexdigest()

    def split(self, heldout_every: int = 20) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(train_files, heldout_files): file i is held out when i % heldout_every == 0."""
        if heldout_every < 2:
            raise InputError(f"heldout_every must be >= 2, got {heldout_every}")
        heldout = tuple(f for i, f in enumerate(self.files) if i % heldout_every == 0)
        train = tuple(f for i, f in enumerate(self.files) if i % heldout_every != 0)
        return train, heldout

    def metadata(self) -> dict:
        return {"root": str(self.root), "python": sys.version.split()[0], "files": list(self.files),
                "n_files": len(self.files), "sha256": self.sha256,
                "bytes": sum((self.root / f).stat().st_size for f in self.files)}


def stdlib_corpus(root: Path | None = None, max_files: int | None = None) -> Corpus:
    """The standard-library corpus (optionally only its first ``max_files`` files, for quick runs)."""
    root = Path(root) if root is not None else stdlib_root()
    if not root.is_dir():
        raise InputError(f"corpus root {root} is not a directory")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py")
                   if p.is_file() and not SKIPPED_DIRS.intersection(p.relative_to(root).parts[:-1]))
    if not files:
        raise InputError(f"no .py files found under {root}")
    if max_files is not None:
        files = files[:max_files]
    return Corpus(root=root, files=tuple(files))
