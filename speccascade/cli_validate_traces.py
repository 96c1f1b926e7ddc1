"""``speccascade validate TRACE... --fit-on/--holdout``: the trace mode's table, JSON, parity plot and HTML page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .cli_text import dumps, safe


def run_trace_validation(traces: list[Path], fit_on: str, holdout: str, plot: str | Path | None,
                         report: str | Path | None, force: bool, json_output: bool,
                         hardware: str | None = None) -> None:
    from speccascade.calibrate.validate_report import plot_paths, report_path, write_plot, write_report
    from speccascade.calibrate.validate_traces import validate_traces
    from speccascade.writers import check_new_file

    # output names first: a refused name costs no fit
    for path in (plot_paths(plot) if plot is not None else []) + ([report_path(report)] if report is not None else []):
        check_new_file(path, force=force)
    from speccascade.hardware import load_chip

    validation = validate_traces(traces, fit_on=fit_on, holdout=holdout,
                                 chip=load_chip(hardware) if hardware else None)
    written = []
    if plot is not None:
        written += write_plot(validation, plot, force=force)
    if report is not None:
        written.append(write_report(validation, report, force=force))
    if json_output:
        typer.echo(dumps(validation.to_json() | {"written": [str(path) for path in written]}))
        return
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)
    table = Table(title=f"speccascade validate: fitted on {safe(', '.join(validation.fit_on))}")
    for column in ("held-out configuration", "measured ms/token", "predicted", "APE", "uncalibrated", "APE",
                   "measured speedup", "predicted speedup"):
        table.add_column(column, justify="left" if column.startswith("held") else "right")
    for row in validation.rows:
        speed = [f"{value:.2f}x" if value is not None else "-" for value in (row.measured_speedup,
                                                                             row.predicted_speedup)]
        table.add_row(safe(row.label), f"{row.measured_ms:.4f}", f"{row.predicted_ms:.4f}", f"{row.ape:.1%}",
                      f"{row.uncalibrated_ms:.4f}", f"{row.uncalibrated_ape:.1%}", *speed)
    console.print(table)
    summary = validation.summary()
    tau = summary["kendall_tau"]
    console.print(f"median APE {summary['median_ape']:.1%}, max {summary['max_ape']:.1%}; Kendall tau "
                  f"{'-' if tau is None else f'{tau:.2f}'}; uncalibrated median {summary['uncalibrated_median_ape']:.1%}, "
                  f"max {summary['uncalibrated_max_ape']:.1%}")
    for note in validation.notes:
        console.print(f"note: {safe(note)}")
    for path in written:
        console.print(f"wrote {safe(path)}")
