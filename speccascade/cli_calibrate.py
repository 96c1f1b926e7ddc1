"""``speccascade calibrate TRACE...``: fit the forward-time corrections of a chip to measured runs."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``calibrate`` command to ``app``."""

    @app.command("calibrate")
    def calibrate_command(traces: list[str] = typer.Argument(..., help="Trace files (runtime bench trace.jsonl).")
                          ) -> None:
        """Fit the corrections of a chip profile to the forward records of runtime traces (being built)."""
        raise typer.Exit(0)
