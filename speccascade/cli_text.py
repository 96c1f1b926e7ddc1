"""What the CLI prints: untrusted text made safe for the terminal and rich, and strict JSON.

* :func:`one_line` shows control characters (escape bytes, newlines, bells) escaped, never raw, so a name or a
  message read from a file cannot move the cursor, retitle the terminal or forge extra output lines.
* :func:`safe` is :func:`one_line` plus :func:`rich.markup.escape`: text that came from the user or a file
  (profile, claim and model names, paths, messages) goes through it before it is put into a rich markup string,
  a table cell or a title, so ``[/oops]`` prints as itself instead of crashing rich or styling the output.
  Intentional markup stays around the escaped parts (``f"[bold]{safe(name)}[/bold]"``).
* :func:`dumps` is ``json.dumps`` for ``--json`` output: strict JSON (``allow_nan=False``), with non-finite
  floats (NaN, +-inf: a quantity that does not exist, e.g. tokens/s in the abstract mode) written as ``null`` and
  numpy scalars and arrays unwrapped.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich.markup import escape


def one_line(text: Any) -> str:
    """``text`` as one printable line: control characters (escapes, newlines) shown escaped, never sent raw."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(text))


def safe(text: Any) -> str:
    """Untrusted text for a rich markup string or table cell: one printable line with markup escaped."""
    return escape(one_line(text))


def safe_lines(text: Any) -> str:
    """Like :func:`safe`, but keeps newlines (multi-line cells such as step shapes); other control characters
    are shown escaped."""
    return "\n".join(safe(line) for line in str(text).split("\n"))


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, numpy scalars/arrays as Python values, tuples as
    lists (recursively), ready for strict JSON."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(key): finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [finite(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return finite(value.tolist())
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def dumps(value: Any, *, indent: int | None = 2, default=None) -> str:
    """Strict JSON (no NaN/Infinity): non-finite numbers become null (see :func:`finite`)."""
    return json.dumps(finite(value), indent=indent, allow_nan=False, default=default)
