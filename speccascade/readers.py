"""The input layer: every file the tool reads goes through here (profiles, configs, claims, accuracies, reported
files, acceptance files, traces, manifests).

A file must be a *regular* file after links are resolved (a FIFO would hang, ``/dev/zero`` would read until memory is
gone, a directory is not a file), no larger than its kind's limit (checked from ``stat`` and again while reading, so a
file that lies about its size is stopped too), valid UTF-8, and, for JSON/TOML, nested at most ``MAX_DEPTH`` deep,
with integers of at most ``MAX_INTEGER_DIGITS`` digits and no NaN/Infinity constants (strict JSON; TOML's own
``inf``/``nan`` are refused by the schemas, which take finite numbers only). Every problem is
one :class:`InputError` line naming the file; the CLI prints it and exits with code 2. The limits are module
constants (``LIMITS``), documented in docs/limits.md, and ``SPECCASCADE_MAX_FILE_MB`` raises every size limit.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from .errors import InputError

MiB = 1 << 20
# largest file of each kind, in bytes (SPECCASCADE_MAX_FILE_MB overrides them all)
LIMITS = {"toml": 4 * MiB, "json": 64 * MiB, "trace": 4096 * MiB, "text": 64 * MiB}
MAX_LINE_BYTES = 16 * MiB        # one JSON Lines record
MAX_DEPTH = 64                   # nesting of JSON arrays/objects and TOML tables/arrays
MAX_INTEGER_DIGITS = 30          # no physical quantity here needs more


def limit_for(kind: str) -> int:
    override = os.environ.get("SPECCASCADE_MAX_FILE_MB")
    if override:
        try:
            return int(float(override) * MiB)
        except ValueError:
            raise InputError(f"SPECCASCADE_MAX_FILE_MB must be a number of MiB, got {override!r}") from None
    return LIMITS[kind]


def validation_message(error: ValidationError) -> str:
    """One line naming the first problem of a pydantic error (field path and message)."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not first["loc"]:  # a model-level check: its message says what is wrong
        return message
    where = ".".join(str(part) for part in first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"unknown field '{where}'"
    if kind == "missing":
        return f"missing field '{where}'"
    return f"field '{where}': {message}"


def regular_file(path: str | Path, kind: str = "text") -> tuple[Path, int]:
    """``path`` checked to be an existing regular file (links resolved) within ``kind``'s size limit; returns
    the path and the limit."""
    path = Path(path)
    if str(path) == "":
        raise InputError("empty file name")
    try:
        info = path.stat()  # follows links: a link to /dev/zero is a character device here
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except NotADirectoryError:
        raise InputError(f"{path}: a part of this path is a file, not a folder") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as error:  # a loop of links, a name too long, ...
        raise InputError(f"{path}: cannot read ({error.strerror or error.__class__.__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        what = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode)
                or stat.S_ISBLK(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        raise InputError(f"{path}: is {what}, not a regular file")
    limit = limit_for(kind)
    if info.st_size > limit:
        raise InputError(f"{path}: {info.st_size / MiB:.1f} MiB is over the {limit / MiB:g} MiB limit for a {kind} "
                         "file (set SPECCASCADE_MAX_FILE_MB to raise it)")
    return path, limit


def read_bytes(path: str | Path, kind: str = "text") -> bytes:
    path, limit = regular_file(path, kind)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error.__class__.__name__})") from None
    if len(data) > limit:
        raise InputError(f"{path}: larger than the {limit / MiB:g} MiB limit for a {kind} file")
    return data


def decode_utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{where}: not valid UTF-8 text (byte {error.start})") from None


def read_text(path: str | Path, kind: str = "text") -> str:
    """The file's text, checked as the module docstring says."""
    return decode_utf8(read_bytes(path, kind), str(path))


def iter_lines(path: str | Path, kind: str = "trace") -> Iterator[tuple[int, str, bool]]:
    """(line number, text, ends with a newline) of a JSON Lines file, read line by line (a trace may be large);
    each line at most ``MAX_LINE_BYTES`` and valid UTF-8."""
    path, _ = regular_file(path, kind)
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error.__class__.__name__})") from None
    with handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise InputError(f"{path}:{number}: line longer than {MAX_LINE_BYTES // MiB} MiB")
            yield number, decode_utf8(raw, f"{path}:{number}").rstrip("\r\n"), raw.endswith(b"\n")


def _too_deep(value, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_too_deep(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return any(_too_deep(item, depth + 1) for item in value)
    return False


def _strict_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (at most {MAX_INTEGER_DIGITS})")
    return int(text)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (strict JSON)")


def loads_strict(text: str):
    """``json.loads`` with this module's integer-size and no-NaN rules; raises ``ValueError`` (JSONDecodeError
    included) or ``RecursionError`` like ``json.loads``, for callers that handle a partial record themselves."""
    return json.loads(text, parse_int=_strict_int, parse_constant=_no_constant)


def check_nesting(value, where: str):
    """``value`` (parsed JSON/TOML) nested at most ``MAX_DEPTH`` deep; returns it."""
    if _too_deep(value):
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    return value


def parse_json(text: str, where: str):
    """Strict JSON: depth, integer size and no NaN/Infinity (one line naming ``where`` otherwise)."""
    try:
        value = loads_strict(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:
        raise InputError(f"{where}: not valid JSON ({error})") from None
    if _too_deep(value):
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    return value


def read_toml(path: str | Path) -> dict:
    """Parse one TOML file; any problem becomes one :class:`InputError` line naming it."""
    text = read_text(path, "toml")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not valid TOML ({error})") from None
    except RecursionError:
        raise InputError(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    if _too_deep(data):
        raise InputError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    _check_integers(data, str(path))
    return data


def _check_integers(value, where: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and len(str(abs(value))) > MAX_INTEGER_DIGITS:
        raise InputError(f"{where}: an integer of {len(str(abs(value)))} digits (at most {MAX_INTEGER_DIGITS})")
    if isinstance(value, dict):
        for item in value.values():
            _check_integers(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_integers(item, where)


def read_json(path: str | Path):
    """Parse one JSON file (strict JSON); any problem becomes one :class:`InputError` line naming it."""
    return parse_json(read_text(path, "json"), str(path))
