"""``python3 -m speccascade ...`` runs the CLI (works where pip's script directory is not on PATH)."""

import sys

from speccascade.cli import main

main(sys.argv[1:])
