"""The output layer: every file the tool writes goes through here.

Policy (docs/limits.md): output goes only where asked; a user's existing file is never replaced unless ``force``;
each file is written atomically (a temporary file in the same folder, then ``os.replace``), so a reader never sees
half a file; a failed command removes what it had written (:class:`OutputSet`); special files (devices, FIFOs),
paths under a file and an empty path are refused with one line. Append-only streams (traces) use
:func:`check_new_file` before they open. The CLI runs every command inside one :class:`Transaction`: when a
command fails after it wrote some files (a later step's error, a refused name, an interrupt), every file it wrote
through this module and every folder it created are removed, so no half-written output folder is left.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from .errors import InputError


class Transaction:
    """Everything written through this module while it is active; removed again when the block fails.

        with Transaction():
            table.write(out)       # kept only if
            plot_all(spec, out)    # this succeeds too

    Nested transactions hand what they wrote to the enclosing one when they succeed."""

    _active: list["Transaction"] = []

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.folders: list[Path] = []

    @classmethod
    def current(cls) -> "Transaction | None":
        return cls._active[-1] if cls._active else None

    def __enter__(self) -> "Transaction":
        Transaction._active.append(self)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        Transaction._active.remove(self)
        failed = kind is not None and not (issubclass(kind, SystemExit) and error.code in (0, None))
        if failed:
            self.rollback()
        elif Transaction._active:
            Transaction._active[-1].files.extend(self.files)
            Transaction._active[-1].folders.extend(self.folders)

    def rollback(self) -> None:
        for path in reversed(self.files):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
        for folder in reversed(self.folders):  # deepest first; only folders left empty
            try:
                folder.rmdir()
            except OSError:
                pass
        self.files.clear()
        self.folders.clear()


def _made(path: Path) -> None:
    """Create folder ``path`` (and missing parents), recording the new ones in the active transaction."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    path.mkdir(parents=True, exist_ok=True)
    transaction = Transaction.current()
    if transaction is not None:
        transaction.folders.extend(reversed(missing))


def _describe(path: Path) -> str | None:
    """What is at ``path`` if it is not a regular file or a directory (None otherwise or when nothing is there)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return "under a file"
    except OSError as error:
        return f"unusable ({error.strerror or error.__class__.__name__})"
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        return None
    return "a special file (device, FIFO or socket)"


def _usable(path: str | Path | None, empty: str, here: str) -> Path:
    """``path`` as a Path, refused when empty (message ``empty``) or special / under a file (``PATH: cannot write
    {here}: it is ...``)."""
    if path is None or str(path).strip() == "":
        raise InputError(empty)
    path = Path(path)
    problem = _describe(path)
    if problem:
        raise InputError(f"{path}: cannot write {here}: it is {problem}")
    return path


def output_dir(path: str | Path, *, create: bool = True) -> Path:
    """A folder to write into: an existing folder or one that can be made; never '', a file, or a special file."""
    path = _usable(path, "empty output path: name a folder (for example --out results)", "output here")
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file, not a folder (output goes into a folder here)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{path}: {parent} is a file, not a folder")
            break
    if create:
        try:
            _made(path)
        except OSError as error:
            raise InputError(f"{path}: cannot create the folder ({error.strerror or error.__class__.__name__})") from None
    return path


def check_new_file(path: str | Path, *, force: bool = False) -> Path:
    """``path`` may be written: not special, not under a file, its folder exists or can be made, and no existing
    file is there unless ``force``."""
    path = _usable(path, "empty output file name", "here")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    if path.exists() and not force:
        raise InputError(f"{path}: already exists; refusing to overwrite it (use --force, or another path)")
    output_dir(path.parent if str(path.parent) else ".")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None], *, force: bool = False) -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path`` in one step; nothing is left on failure."""
    path = check_new_file(path, force=force)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    transaction = Transaction.current()
    if transaction is not None:
        transaction.files.append(path)
    return path


def write_text(path: str | Path, text: str, *, force: bool = False) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), force=force)


class OutputSet:
    """The files one command writes: every name is checked before any is written (so a refusal leaves nothing
    behind), each is written atomically, and if the command fails the ones already written are removed.

        with OutputSet([out / "sweep.csv", out / "sweep.json"], force=force) as outputs:
            outputs.write(out / "sweep.csv", write_csv)
    """

    def __init__(self, paths, *, force: bool = False):
        self.force = force
        self.paths = [check_new_file(path, force=force) for path in paths]
        self.written: list[Path] = []

    def write(self, path: str | Path, write: Callable[[Path], None]) -> Path:
        path = Path(path)
        if path not in self.paths:
            raise ValueError(f"{path} was not declared to this OutputSet")  # a programming error
        self.written.append(atomic_write(path, write, force=self.force))
        return path

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            for path in self.written:
                path.unlink(missing_ok=True)
