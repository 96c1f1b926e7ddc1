"""Trace files: :class:`TraceWriter` appends records (one flushed line each); :func:`read_trace` reads and validates
them (v1 converted on read, a partial last line of a killed run dropped and reported); :func:`upgrade_trace`
rewrites a v1 file as v2. Files are read through the shared input layer (:mod:`speccascade.readers`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, ValidationError

from speccascade.errors import InputError
from speccascade.readers import loads_strict, read_text, validation_message

from .records import (_RECORD, READABLE_VERSIONS, SCHEMA_VERSION, UPGRADE_HINT, CompileRecord, ForwardRecord,
                      Header, StepRecord, _canonical)
from .v1 import convert_v1_record

class TraceWriter:
    """Appends records to a JSON Lines trace, one flushed line each (``fsync=True`` also syncs to disk)."""

    def __init__(self, path: str | Path, header: Header, fsync: bool = False, *, force: bool = True):
        """``force=False`` keeps an existing file (one InputError line; the CLI's output policy, see
        speccascade/writers.py); special files, paths under a file and an empty name are always refused."""
        if header.schema_version != SCHEMA_VERSION:
            raise InputError(f"a trace is written with schema_version {SCHEMA_VERSION}, "
                             f"the header says {header.schema_version}")
        from speccascade.writers import check_new_file

        self.path = check_new_file(path, force=force)
        self._file = self.path.open("w", encoding="utf-8")
        self._fsync = fsync
        self.write(header)

    def write(self, record: BaseModel) -> None:
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Trace:
    path: Path
    header: Header                     # always in the v2 form (a v1 header converted, see ``file_version``)
    steps: tuple[StepRecord, ...]
    forwards: tuple[ForwardRecord, ...]
    compiles: tuple[CompileRecord, ...]
    dropped_partial_line: int | None   # line number of a partial last line that was dropped (a killed run)
    file_version: int = SCHEMA_VERSION  # the schema_version the file was written with

    @property
    def notes(self) -> list[str]:
        return list(self.header.notes)

    def strategies(self) -> list[str]:
        """Canonical names of the strategies with steps, in order of first appearance."""
        return list(dict.fromkeys(step.strategy for step in self.steps))

    def steps_of(self, strategy: str, mode: str | None = None, knobs: dict[str, int] | None = None
                 ) -> list[StepRecord]:
        """Steps of ``strategy`` (a name or alias), optionally of one mode and with the given knob values."""
        name = _canonical(strategy)
        return [step for step in self.steps if step.strategy == name and (mode is None or step.mode == mode)
                and (knobs is None or all(step.knobs.given().get(key) == value for key, value in knobs.items()))]


def _problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return validation_message(error).replace("Value error, ", "")
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error.msg})"
    return str(error)


def _read_text(path: Path) -> str:
    """The trace's text through the shared input layer (regular file, size limit, UTF-8)."""
    try:
        return read_text(path, "trace")
    except InputError as error:
        if not Path(path).exists():
            raise InputError(f"trace file not found: {path}") from None
        raise error from None


def _version_of(value: Any, path: Path, number: int) -> int:
    version = value.get("schema_version", 1) if isinstance(value, dict) else None
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"{path}:{number}: schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise InputError(f"{path}:{number}: schema_version {version} is newer than this reader "
                         f"({SCHEMA_VERSION}); upgrade speccascade")
    if version not in READABLE_VERSIONS:
        raise InputError(f"{path}:{number}: unknown schema_version {version} (this reader reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))})")
    return version


def file_version(path: str | Path) -> int:
    """The schema_version of a trace's header line (checked like :func:`read_trace` checks it)."""
    path = Path(path)
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = loads_strict(line)
        except (ValueError, RecursionError) as error:
            raise InputError(f"{path}:{number}: malformed trace record: {_problem(error)}") from None
        if not isinstance(value, dict) or value.get("kind") != "header":
            kind = value.get("kind") if isinstance(value, dict) else type(value).__name__
            raise InputError(f"{path}:{number}: the first record must be the header, got '{kind}'")
        return _version_of(value, path, number)
    raise InputError(f"{path}: no header record (empty or truncated trace)")


def _read(path: Path) -> tuple[Header, list[BaseModel], int | None, int]:
    """(header in v2 form, the other records in file order, dropped partial line, the file's version)."""
    lines = _read_text(path).split("\n")
    complete_end = len(lines) - 1  # the piece after the last newline is partial (or empty)
    header, records, dropped, version = None, [], None, SCHEMA_VERSION
    notes: list[str] = []
    cache: dict = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = loads_strict(line)
            if header is None and isinstance(value, dict) and value.get("kind") == "header":
                version = _version_of(value, path, number)
            if version == 1:
                value = convert_v1_record(value, header.config if header is not None else None, notes, cache)
            record = _RECORD.validate_python(value)
        except (ValueError, RecursionError, ValidationError) as error:  # JSONDecodeError is a ValueError
            if number - 1 == complete_end and isinstance(error, (json.JSONDecodeError, ValidationError)):
                dropped = number
                break
            raise InputError(f"{path}:{number}: malformed trace record: {_problem(error)}") from None
        except InputError as error:  # a v1 strategy label the registry does not know
            raise InputError(f"{path}:{number}: malformed trace record: {error}") from None
        if isinstance(record, Header):
            if header is not None:
                raise InputError(f"{path}:{number}: a second header record")
            header = record
        elif header is None:
            raise InputError(f"{path}:{number}: the first record must be the header, got '{record.kind}'")
        else:
            records.append(record)
    if header is None:
        raise InputError(f"{path}: no header record (empty or truncated trace)")
    if notes:
        header = header.model_copy(update={"notes": [*header.notes, *notes]})
    return header, records, dropped, version


def read_trace(path: str | Path) -> Trace:
    """Read and validate a trace (version 1 converted on read). A malformed line raises :class:`InputError`
    naming its line number, except a partial last line without its newline (a run killed mid-write), which is
    dropped and reported in ``dropped_partial_line``."""
    path = Path(path)
    header, records, dropped, version = _read(path)
    return Trace(path, header, tuple(r for r in records if isinstance(r, StepRecord)),
                 tuple(r for r in records if isinstance(r, ForwardRecord)),
                 tuple(r for r in records if isinstance(r, CompileRecord)), dropped, version)


def read_traces(paths: Sequence[str | Path]) -> list[Trace]:
    """Read several traces of one schema version; a mix of versions is refused in one line (before any file is
    parsed past its header)."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise InputError("no trace files given")
    versions = {path: file_version(path) for path in paths}
    if len(set(versions.values())) > 1:
        old = next(path for path, version in versions.items() if version != SCHEMA_VERSION)
        new = next(path for path, version in versions.items() if version == SCHEMA_VERSION)
        raise InputError(f"traces mix schema versions ({old} is v{versions[old]}, {new} is v{versions[new]}); "
                         f"read them in separate calls or upgrade the old ones first: {UPGRADE_HINT}")
    return [read_trace(path) for path in paths]


def upgrade_trace(source: str | Path, destination: str | Path) -> Path:
    """Rewrite a trace (v1 or v2) as a version-2 file in its record order; the conversion notes go into its
    header. A partial last line of the source is left out."""
    source, destination = Path(source), Path(destination)
    if source.resolve() == destination.resolve():
        raise InputError(f"{destination}: write the upgraded trace to a new file, not over {source}")
    header, records, _, _ = _read(source)
    with TraceWriter(destination, header) as writer:
        for record in records:
            writer.write(record)
    return destination
