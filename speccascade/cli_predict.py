"""``speccascade predict`` (rich table or JSON) and ``speccascade explain STRATEGY`` (the formulas)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from speccascade.acceptance_file import applied, applied_line
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.explain import explain_text
from speccascade.costmodel.predict import Prediction, predict

from .cli_options import config_options
from .cli_text import dumps, safe


@config_options
def predict_command(config: PredictConfig,
                    json_output: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Predict ms/token, tokens/s and speedup of a strategy (default: the seed paper's headline setup)."""
    prediction = predict(config)
    report = applied(config.acceptance, config) if config.acceptance is not None else None
    if json_output:
        typer.echo(dumps(prediction.to_json() | ({"acceptance": report} if report else {})))
        return
    render(prediction, config)
    if report:
        Console().print(safe(applied_line(report)))


def render(prediction: Prediction, config: PredictConfig, console: Console | None = None) -> None:
    console = console or Console()
    unit = prediction.units
    where = (f"{config.hardware} x{config.chips}, target {config.target}" if prediction.mode == "hardware"
             else f"abstract: c = {config.c}, verify = 1 target step")
    table = Table(title=safe(f"speccascade predict  ({where}; batch {config.batch}, context {config.context})"))
    table.add_column("strategy")
    table.add_column(f"{'ms' if unit == 'ms' else 'steps'}/token", justify="right")
    if prediction.tokens_per_s is not None:
        table.add_column("tokens/s", justify="right")
    table.add_column("speedup", justify="right")
    table.add_column("E(tokens/step)", justify="right")
    rows = [(alt["strategy"], alt["ms_per_token"], alt["speedup"], alt["expected_tokens_per_step"])
            for alt in prediction.alternatives]
    rows.append((prediction.strategy, prediction.ms_per_token, prediction.speedup,
                 prediction.expected_tokens_per_step))
    for name, ms_per_token, speedup, expected in rows:
        cells = [safe(name) if name != prediction.strategy else f"[bold]{safe(name)}[/bold]", f"{ms_per_token:.3f}"]
        if prediction.tokens_per_s is not None:
            cells.append(f"{1e3 / ms_per_token:.1f}")
        cells += [f"{speedup:.2f}x", f"{expected:.2f}"]
        table.add_row(*cells)
    console.print(table)
    stages = Table(title=safe(f"{prediction.strategy}: one target step = {prediction.step_ms:.3f} {unit}"))
    for column in ("stage", "model", "memory level", "forwards x tokens", unit):
        stages.add_column(column, justify="right" if column in (unit, "forwards x tokens") else "left")
    for stage in prediction.stages:
        stages.add_row(safe(stage.name), safe(stage.model), safe(stage.level),
                       f"{stage.forwards:g} x {stage.tokens_per_forward:g}", f"{stage.ms:.3f}")
    console.print(stages)
    console.print(f"physical bound: {prediction.bound_ms_per_token:.3f} {unit}/token "
                  f"(target weights streamed once per step, {prediction.max_tokens_per_step:g} tokens at most)")
    if prediction.memory_per_chip_gb:
        used = safe(", ".join(f"{level} {gb:.3f} GB" for level, gb in prediction.memory_per_chip_gb.items()))
        console.print(f"fits: {'yes' if prediction.fits else '[red]no[/red]'}  (per chip: {used})")
    for warning in prediction.warnings:
        console.print(f"[yellow]warning:[/yellow] {safe(warning)}")


def explain_command(strategy: str = typer.Argument(..., help="autoregressive|speculative|vertical|filtered|horizontal|heads|forward"),
                    latex: bool = typer.Option(False, "--latex", help="LaTeX instead of a pretty print.")) -> None:
    """Print a strategy's cost-model expressions (sympy), with their sources."""
    typer.echo(explain_text(strategy, latex=latex))


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
    app.command("explain")(explain_command)

