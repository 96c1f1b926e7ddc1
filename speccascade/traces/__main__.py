"""``python -m speccascade.traces upgrade OLD NEW`` (rewrite as v2) or ``check FILE...`` (validate)."""

from __future__ import annotations

import sys
from typing import Sequence

from speccascade.errors import InputError

from .files import read_traces, upgrade_trace
from .records import SCHEMA_VERSION

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m speccascade.traces upgrade OLD NEW`` (rewrite as v2) or ``check FILE...`` (validate)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) == 3 and args[0] == "upgrade":
            written = upgrade_trace(args[1], args[2])
            print(f"{written}: schema_version {SCHEMA_VERSION}")
            return 0
        if len(args) >= 2 and args[0] == "check":
            for trace in read_traces(args[1:]):
                print(f"{trace.path}: schema_version {trace.file_version}, {len(trace.steps)} steps, "
                      f"strategies {', '.join(trace.strategies()) or 'none'}")
            return 0
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("usage: python -m speccascade.traces upgrade OLD.jsonl NEW.jsonl | check FILE.jsonl...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
