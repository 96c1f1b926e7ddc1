"""File readers every layer shares: one TOML reader, one JSON reader, one pydantic error line.

Each turns a problem with a user's file (missing, a directory, malformed) into one :class:`InputError` line that
names the file; the CLI prints that line and exits with code 2.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pydantic import ValidationError

from .errors import InputError


def validation_message(error: ValidationError) -> str:
    """One line naming the first problem of a pydantic error (field path and message)."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"unknown field '{where}'"
    if kind == "missing":
        return f"missing field '{where}'"
    return f"field '{where}': {first['msg']}"


def read_toml(path: Path) -> dict:
    """Parse one TOML file; a missing or malformed file becomes one :class:`InputError` line naming it."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not valid TOML ({error})") from None


def read_json(path: Path):
    """Parse one JSON file; a missing, non-file or malformed file becomes one :class:`InputError` line naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
