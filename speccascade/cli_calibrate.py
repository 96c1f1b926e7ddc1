"""``speccascade calibrate TRACE...``: fit a chip's forward-time corrections (and host overhead, acceptance) to
runtime traces and write a calibrated chip profile that ``predict --hardware`` takes.

Prints the fitted parameters with standard errors and 95% intervals, the residuals, the host overhead per
strategy (with what predicted each forward: the fit or the measured table), the records used and unused (with
reasons), the acceptance fit, and where everything was written. ``--json`` prints the report instead (the same
document as ``calibration.json``). Bad input (a malformed trace line, mixed schema versions, too few points, a
degenerate design) is one ``error:`` line on stderr and exit code 2 (through :func:`speccascade.cli.main`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from speccascade.errors import InputError

from .cli_text import dumps, safe


def parse_holds(values: list[str]) -> dict[str, float]:
    """``NAME=VALUE`` strings -> {name: value}."""
    holds = {}
    for text in values:
        name, sep, value = text.partition("=")
        try:
            holds[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InputError(f"--hold {text!r}: expected NAME=VALUE, e.g. --hold overhead_s=0")
    return holds


def _number(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name == "overhead_s":
        return f"{value * 1e6:.3g} us"
    return f"{value:.4g}"


def _parameter_table(document: dict[str, Any]) -> Table:
    fit = document["forward_fit"]
    table = Table(title=f"forward-time corrections (fitted; uncertainties: {fit['uncertainty']})")
    for column in ("parameter", "value", "std error", "95% interval", "status"):
        table.add_column(column)
    for name, estimate in fit["parameters"].items():
        interval = f"[{_number(name, estimate['low'])}, {_number(name, estimate['high'])}]"
        status = estimate["status"] + (f": {estimate['note']}" if estimate["note"] else "")
        table.add_row(safe(name), _number(name, estimate["value"]), _number(name, estimate["std_error"]), interval,
                      safe(status))
    return table


def _residual_table(document: dict[str, Any]) -> Table:
    table = Table(title="relative residuals (predicted - measured) / measured")
    for column in ("predicted by", "points", "rms", "median |r|", "max |r|"):
        table.add_column(column)
    fit = document["forward_fit"]
    rows = [("fit, all models", fit["residuals"])]
    rows += [(f"fit, {key}", values) for key, values in fit["residuals_by_model"].items()]
    if fit.get("uncalibrated_residuals"):
        rows.append((f"input profile '{document['chip']}' uncalibrated", fit["uncalibrated_residuals"]))
    if document["table"] is not None:
        rows.append(("table, leave-one-out", document["table"]["leave_one_out_residuals"]))
    for label, values in rows:
        table.add_row(safe(label), str(values["points"]), f"{values['rms']:.1%}", f"{values['median_abs']:.1%}",
                      f"{values['max_abs']:.1%}")
    return table


def _overhead_table(document: dict[str, Any]) -> Table:
    table = Table(title="host overhead per step (fused step ms - its forwards' predicted ms)")
    for column in ("strategy", "steps", "step ms", "forwards ms", "overhead ms (mean / median)", "fraction",
                   "forwards predicted by"):
        table.add_column(column)
    for row in document["host_overhead"]:
        knobs = ",".join(f"{k}={v}" for k, v in row["knobs"].items() if v is not None)
        how = ", ".join(f"{name} x{count}" for name, count in row["forwards_predicted_by"].items())
        table.add_row(safe(f"{row['strategy']}" + (f" ({knobs})" if knobs else "")), str(row["steps"]),
                      f"{row['step_ms']:.3f}", f"{row['forwards_ms']:.3f}",
                      f"{row['overhead_ms']:.3f} / {row['overhead_ms_median']:.3f}", f"{row['host_overhead_fraction']:.2f}",
                      safe(how))
    return table


def print_report(document: dict[str, Any], console: Console) -> None:
    traces = ", ".join(Path(t["path"]).name for t in document["traces"])
    console.print(f"calibration [bold]{safe(document['name'])}[/] of chip '{safe(document['chip'])}' from "
                  f"{safe(traces)} (mode {safe(document['mode'])})")
    console.print(_parameter_table(document))
    console.print(_residual_table(document))
    if document["host_overhead"]:
        console.print(_overhead_table(document))
    records = document["records"]
    used = ", ".join(f"{kind} {count}" for kind, count in records["used"].items())
    console.print(f"records used: {safe(used)}; unused: {records['unused']}")
    for reason, count in records["unused_by_reason"].items():
        console.print(f"  unused x{count}: {safe(reason)}")
    for note in document["forward_fit"]["notes"] + document["notes"]:
        console.print(f"note: {safe(note)}")
    acceptance = document["acceptance"]
    if acceptance is not None:
        if acceptance.get("file"):
            console.print(f"acceptance: {safe(acceptance['file'])}")
            for line in acceptance.get("lines", []):
                console.print(f"  {safe(line)}")
        else:
            console.print(safe(acceptance["message"]))
    console.print(f"wrote {safe(document['profile'])} (use: speccascade predict --hardware "
                  f"{safe(document['hardware'])})")


def _check_outputs(where, acceptance: bool, force: bool) -> None:
    from speccascade.writers import check_new_file

    for path in [where.profile, where.report] + ([where.acceptance] if acceptance else []):
        check_new_file(path, force=force or where.replaces)


def register(app: typer.Typer) -> None:
    """Add the ``calibrate`` command to ``app``."""

    @app.command("calibrate")
    def calibrate_command(
            traces: list[Path] = typer.Argument(..., help="Trace files (trace.jsonl of runtime bench), one device."),
            out: Optional[str] = typer.Option(None, "--out", help="Write NAME.toml, acceptance.json and "
                                               "calibration.json here (default: $SPECCASCADE_HOME: chips/NAME.toml "
                                               "and calibrations/NAME/)."),
            name: Optional[str] = typer.Option(None, "--name", help="Profile name (default: CHIP-calibrated)."),
            mode: str = typer.Option("fit", "--mode", help="fit: forwards by the fitted cost model; table: by the "
                                     "measured forwards of the same model (interpolated), the fit elsewhere."),
            hardware: Optional[str] = typer.Option(None, "--hardware", help="The chip the traces ran on (name or "
                                                   "FILE.toml), instead of the one their headers name."),
            hold: list[str] = typer.Option([], "--hold", help="Fix a parameter: NAME=VALUE (e.g. overhead_s=0, "
                                           "bandwidth_fraction.DRAM=0.6); repeatable."),
            bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap resamples for the intervals "
                                          "(0: from the Jacobian)."),
            seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
            acceptance: bool = typer.Option(True, "--acceptance/--no-acceptance", help="Also fit acceptance per "
                                            "pair and write acceptance.json."),
            force: bool = typer.Option(False, "--force", help="Replace existing files in --out (a calibration "
                                       "of the same name under $SPECCASCADE_HOME is always replaced)."),
            json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ) -> None:
        """Fit a chip's forward-time corrections to runtime traces; write the calibrated chip profile."""
        from speccascade.calibrate.calibration import calibrate_traces
        from speccascade.calibrate.output import locations, write_calibration
        from speccascade.hardware.registry import load_chip

        chip = load_chip(hardware) if hardware else None
        holds = parse_holds(hold)
        if name is not None:  # the output names are checked before the fit
            _check_outputs(locations(name, out), acceptance, force)
        calibration = calibrate_traces(traces, chip=chip, name=name, mode=mode, hold=holds, bootstrap=bootstrap,
                                       seed=seed)
        where = locations(calibration.name, out)
        document = write_calibration(calibration, where, acceptance=acceptance, force=force)
        if json_output:
            typer.echo(dumps(document))
        else:
            print_report(document, Console(width=180))
