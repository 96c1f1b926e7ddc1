"""The claim file's JSON Schema, exported: ``python -m speccascade.costmodel.audit.claim_schema [FILE [--force]]``.

Its own module (not imported by the audit package) so that ``python -m`` runs it without runpy's warning about a
module imported twice. The schema is :func:`speccascade.costmodel.audit.claims.claim_json_schema`.
"""

from __future__ import annotations

import json
import sys

from speccascade.errors import InputError

from .claims import claim_json_schema


def main(argv: list[str] | None = None) -> int:
    """``python -m speccascade.costmodel.audit.claim_schema [FILE [--force]]``: print the JSON Schema, or write it to
    FILE (atomically; an existing FILE is kept unless ``--force``). A bad path is one line and exit code 2."""
    from speccascade.cli_text import one_line
    from speccascade.writers import write_text

    args = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in args
    args = [arg for arg in args if arg != "--force"]
    text = json.dumps(claim_json_schema(), indent=2) + "\n"
    if len(args) > 1 or any(arg.startswith("-") for arg in args):
        print("usage: python -m speccascade.costmodel.audit.claim_schema [FILE [--force]]", file=sys.stderr)
        return 2
    if not args:
        sys.stdout.write(text)
        return 0
    try:
        write_text(args[0], text, force=force)
    except InputError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
