"""``speccascade validate``: compare predictions with measurements (rich table or ``--json``).

Two sources of measurements share the command: ``--reported FILE.json`` (published results, calibrate/reported.py)
and trace files of runs (``validate TRACE... --fit-on/--holdout``, :mod:`.cli_validate_traces`). Bad input is one line on stderr and exit code 2 (speccascade.cli.main).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from speccascade.calibrate.reported import METRICS, ReportedSet, load_reported
from speccascade.calibrate.reported_fit import BOUNDS, DESCRIPTION, NAME, Fit, LeaveOneOut, fit_factor, leave_one_out
from speccascade.calibrate.reported_predict import Comparison, compare, summarize
from speccascade.errors import InputError

from .cli_text import dumps, safe


def validate_command(
    traces: Optional[list[Path]] = typer.Argument(None, help="Trace files of measured runs (the trace mode)."),
    reported: Optional[Path] = typer.Option(None, "--reported", help="Published measurements (JSON, see "
                                                                      "docs/validate.md)."),
    fit: bool = typer.Option(False, "--fit", help=f"Fit one shared correction ({NAME}) and report its "
                                                  "leave-one-out error."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Compare this figure for every record: "
                                                                 + " | ".join(METRICS) + " (default: each "
                                                                 "record's own)."),
    fit_on: str = typer.Option("rest", "--fit-on", help="Trace mode: configurations to fit on, "
                                                        "NAME[:knob=v...],... or all/rest."),
    holdout: str = typer.Option("rest", "--holdout", help="Trace mode: configurations to predict (or rest)."),
    hardware: Optional[str] = typer.Option(None, "--hardware", help="Trace mode: the chip profile the traces ran "
                                                                     "on, when their headers name none."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Trace mode: write PATH.png and PATH.svg (parity)."),
    report: Optional[str] = typer.Option(None, "--report", help="Trace mode: write DIR/validate.html."),
    force: bool = typer.Option(False, "--force", help="Replace existing output files."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Compare predictions with measurements: published results (--reported FILE.json) or measured traces."""
    if metric is not None and metric not in METRICS:
        raise InputError(f"--metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    if not traces and reported is None:
        raise InputError("validate needs trace files (validate TRACE...) or --reported FILE.json")
    if traces and reported is not None:
        raise InputError("give trace files or --reported FILE.json, not both")
    if traces:
        from .cli_validate_traces import run_trace_validation

        run_trace_validation(traces, fit_on, holdout, plot, report, force, json_output, hardware)
        return
    loaded = load_reported(reported)
    comparisons = compare(loaded, metric)
    fitted, loo = (fit_factor(comparisons), leave_one_out(comparisons)) if fit else (None, None)
    if json_output:
        typer.echo(dumps(reported_json(loaded, comparisons, fitted, loo)))
        return
    render_reported(loaded, comparisons, fitted, loo)


def reported_json(loaded: ReportedSet, comparisons: list[Comparison], fitted: Fit | None = None,
                  loo: LeaveOneOut | None = None) -> dict[str, Any]:
    """{"file", "records": [{...record, "metric", "predicted", "reported", "rel_error", ...}], "summary", "fit"}."""
    loo_by_record = {}
    if loo is not None:
        predicted = [c for c in comparisons if c.parts is not None]
        loo_by_record = {id(c): (v, p, e) for c, v, p, e in zip(predicted, loo.values, loo.predicted, loo.rel_errors)}
    records = []
    for comparison in comparisons:
        record, parts = comparison.record, comparison.parts
        row = record.model_dump(mode="json", exclude_none=True, exclude={"reported"})
        row.update(reported_values=record.reported.model_dump(exclude_none=True), metric=comparison.metric,
                   predicted=comparison.predicted(), reported=comparison.reported, rel_error=comparison.rel_error())
        if parts is not None:
            row.update(mode=parts.mode, fits=parts.fits, expected_tokens_per_step=parts.expected,
                       acceptance_used=parts.acceptance)
        if fitted is not None and parts is not None:
            value, predicted_loo, error_loo = loo_by_record[id(comparison)]
            row.update(fitted_predicted=comparison.predicted(fitted.value),
                       fitted_rel_error=comparison.rel_error(fitted.value), loo_verify_factor=value,
                       loo_predicted=predicted_loo, loo_rel_error=error_loo)
        records.append(row)
    out: dict[str, Any] = {"file": str(loaded.path), "records": records, "summary": summarize(comparisons)}
    if fitted is not None:
        in_sample = summarize(comparisons, fitted.value)
        out["fit"] = {"correction": NAME, "description": DESCRIPTION, "bounds": list(BOUNDS), "value": fitted.value,
                      "stderr": fitted.stderr, "at_bound": fitted.at_bound, "n": fitted.n,
                      "in_sample": {"median_rel_error": in_sample["median_rel_error"],
                                    "max_rel_error": in_sample["max_rel_error"]},
                      "leave_one_out": {"median_rel_error": loo.median_rel_error, "max_rel_error": loo.max_rel_error}}
    return out


def _figure(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if metric == "speedup" else f"{value:.3g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def render_reported(loaded: ReportedSet, comparisons: list[Comparison], fitted: Fit | None = None,
                    loo: LeaveOneOut | None = None, console: Console | None = None) -> None:
    console = console or Console(width=170)
    table = Table(title=f"speccascade validate --reported {safe(loaded.path.name)}"
                        + (f"  ({safe(loaded.description)})" if loaded.description else ""))
    for column in ("#", "record", "strategy", "hardware", "metric", "reported", "predicted", "rel. error"):
        table.add_column(column, justify="right" if column in ("#", "reported", "predicted", "rel. error") else "left")
    if loo is not None:
        table.add_column("LOO predicted", justify="right")
        table.add_column("LOO error", justify="right")
    loo_rows = iter(zip(loo.predicted, loo.rel_errors)) if loo is not None else None
    for index, comparison in enumerate(comparisons, 1):
        record = comparison.record
        hardware = "abstract (c)" if record.abstract else (record.hardware or "-")
        if not record.abstract and record.hardware is not None:
            hardware += f" x{record.chips}" + (f" (tp {record.tensor_parallel})"
                                               if record.tensor_parallel not in (None, record.chips) else "")
        cells = [str(index), safe(record.name), safe(record.strategy or "-"), safe(hardware), comparison.metric,
                 _figure(comparison.reported, comparison.metric)]
        if comparison.parts is None:
            cells += ["not modelled", "-"] + (["-", "-"] if loo is not None else [])
        else:
            fits = "" if comparison.parts.fits else " [yellow](does not fit)[/yellow]"
            cells += [_figure(comparison.predicted(), comparison.metric) + fits, _percent(comparison.rel_error())]
            if loo_rows is not None:
                predicted, error = next(loo_rows)
                cells += [_figure(predicted, comparison.metric), _percent(error)]
        table.add_row(*cells)
    console.print(table)
    summary = summarize(comparisons)
    if summary["n"]:
        console.print(f"{summary['n']} records predicted: median |rel. error| {100 * summary['median_rel_error']:.1f}%, "
                      f"max {100 * summary['max_rel_error']:.1f}%")
    for comparison in comparisons:
        if comparison.parts is None:
            console.print(f"not modelled: {safe(comparison.record.name)}: {safe(comparison.record.unmodelled)}")
    if fitted is not None:
        error = f" +- {fitted.stderr:.3f}" if fitted.stderr is not None else ""
        bound = " (at its bound)" if fitted.at_bound else ""
        in_sample = summarize(comparisons, fitted.value)
        console.print(f"fit: {DESCRIPTION}; v = {fitted.value:.3f}{error}{bound}, bounds {list(BOUNDS)}, "
                      f"{fitted.n} records")
        console.print(f"  in sample: median {100 * in_sample['median_rel_error']:.1f}%, max "
                      f"{100 * in_sample['max_rel_error']:.1f}%;  leave-one-out: median "
                      f"{100 * loo.median_rel_error:.1f}%, max {100 * loo.max_rel_error:.1f}%")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_command)
