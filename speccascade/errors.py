"""Errors for bad user input.

Every layer raises :class:`InputError` (a ``ValueError``) for input a user can fix; the CLI turns it into one
line on stderr and exit code 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """A problem with something the user supplied (a name, a value, a file); the message names it."""


class UnknownNameError(InputError):
    """A profile name that is not registered; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} '{name}'; known: {', '.join(known)}")
