"""``speccascade simulate``: Monte-Carlo simulation of a strategy, with the same configuration flags as ``predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from speccascade.acceptance_file import AcceptanceEntry, applied, applied_line
from speccascade.costmodel.config import PredictConfig
from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.simulate import ConfidenceThreshold, IID, Markov, SimulationResult, load_empirical, simulate
from speccascade.simulate.build import PROCESS_KINDS, make_process, target_alpha
from speccascade.simulate.processes import markov_rho_range

from .cli_options import config_options
from .cli_text import dumps, safe


def _fitted_markov(entry: AcceptanceEntry | None, alpha: float | None, reset: bool, any_rho: bool,
                   source: str, notes: list[str]) -> Markov | None:
    """A Markov process with the acceptance file's rho for ``entry`` at mean ``alpha`` (the config's value), when
    the fit retained the chain (or, with ``any_rho``, whenever the fit estimated one); None otherwise."""
    if entry is None or entry.markov is None or alpha is None or not (entry.markov.significant or any_rho):
        return None
    low, high = markov_rho_range(alpha)
    rho = min(max(entry.markov.rho, low), high)
    clipped = "" if rho == entry.markov.rho else f" (clipped from {entry.markov.rho:+.4f} to the range at alpha {alpha})"
    notes.append(f"{entry.parameter} ({entry.pair}): Markov process, rho = {rho:+.4f} fitted in {source}{clipped} "
                 f"(LRT p = {entry.markov.p_value:.3g}), mean {alpha:.4f}, "
                 f"{'reset every step' if reset else 'persistent across steps'}")
    return Markov(alpha, rho, not reset)


def acceptance_processes(config: PredictConfig, reset: bool, any_rho: bool = False) -> tuple[Any, Any, list[str]]:
    """(process, inner_process, notes) from the config's acceptance file: Markov where its fit retained the lag-1
    chain, None (the cost model's i.i.d.) elsewhere."""
    strategy = config.resolved_strategy()
    document, notes = config.acceptance, []
    fits = document.values({role: getattr(config, role) for role in ("target", "draft", "tiny")})
    parameters = {pair.parameter: pair for pair in registry.get(strategy).pairs}
    outer_parameter = next((name for name, pair in parameters.items() if pair.verifier == "target"), None)
    process = _fitted_markov(fits.get(outer_parameter), target_alpha(config, strategy), reset, any_rho,
                             document.name, notes)
    inner = None
    if "alpha_tiny" in parameters:
        inner = _fitted_markov(fits.get("alpha_tiny"), config.alpha_tiny, reset, any_rho, document.name, notes)
    return process, inner, notes


def processes_for(config: PredictConfig, kind: str | None, rho: float | None, empirical: Path | None, pair: str,
                  resample: str, reset: bool, trace_strategy: str | None = None) -> tuple[Any, Any, list[str]]:
    """(process, inner_process, notes) for the flags; None keeps the strategy's default (the cost model's
    assumption). With an acceptance file, no --process runs its Markov fits where their tests retained them, and
    --process markov without --rho takes each level's fitted rho (0 where the file has none)."""
    strategy = config.resolved_strategy()
    has_inner = "alpha_tiny" in {pair.parameter for pair in registry.get(strategy).pairs}
    if config.acceptance is not None and (kind is None or (kind == "markov" and rho is None)):
        if empirical is not None:
            raise InputError("--empirical needs --process empirical")
        process, inner, notes = acceptance_processes(config, reset, any_rho=kind == "markov")
        if kind == "markov":
            process = process or make_process("markov", target_alpha(config, strategy), persistent=not reset)
            if inner is None and has_inner and config.alpha_tiny is not None:
                inner = Markov(config.alpha_tiny, 0.0, not reset)
        return process, inner, notes
    rho = 0.0 if rho is None else rho
    if kind is None:
        if rho:
            raise InputError("--rho needs --process markov")
        if empirical is not None:
            raise InputError("--empirical needs --process empirical")
        return None, None, []
    data = load_empirical(empirical, pair, trace_strategy) if kind == "empirical" and empirical is not None else None
    process = make_process(kind, target_alpha(config, strategy), rho=rho, alphas=config.alphas, empirical=data,
                           persistent=not reset, resample=resample)
    inner = None
    if has_inner and config.alpha_tiny is not None:
        inner = Markov(config.alpha_tiny, rho, not reset) if kind == "markov" else IID(config.alpha_tiny)
    return process, inner, []


def _count(value: int) -> str:
    return f"{value:,}" if abs(value) < 10**40 else f"a {len(str(abs(value)))}-digit number"


def check_run_size(steps: int, tokens: int) -> None:
    """--steps and --tokens within :mod:`speccascade.limits` (checked before anything is built)."""
    from speccascade.limits import MAX_REQUEST_TOKENS, MAX_SIMULATED_STEPS

    if steps < 1:
        raise InputError(f"--steps: steps must be >= 1, got {_count(steps)}")
    if steps > MAX_SIMULATED_STEPS:
        raise InputError(f"--steps: at most {MAX_SIMULATED_STEPS:,} steps (speccascade.limits.MAX_SIMULATED_STEPS), "
                         f"got {_count(steps)}")
    if tokens < 1:
        raise InputError(f"--tokens: tokens per request must be >= 1, got {_count(tokens)}")
    if tokens > MAX_REQUEST_TOKENS:
        raise InputError(f"--tokens: at most {MAX_REQUEST_TOKENS:,} tokens per request (speccascade.limits."
                         f"MAX_REQUEST_TOKENS), got {_count(tokens)}")


@config_options
def simulate_command(
        config: PredictConfig,
        process: Optional[str] = typer.Option(None, help=f"Acceptance process: {'|'.join(PROCESS_KINDS)} "
                                                          "(default: the cost model's i.i.d./positional)."),
        rho: Optional[float] = typer.Option(None, help="Markov: lag-1 correlation of accept/reject (default 0 = "
                                                        "i.i.d., or the --acceptance file's fit)."),
        markov_reset: bool = typer.Option(False, "--markov-reset",
                                          help="Markov: restart from the stationary law every step."),
        empirical: Optional[Path] = typer.Option(None, help="Empirical: JSON/JSONL of outcomes or betas, or a "
                                                             "runtime trace."),
        empirical_pair: str = typer.Option("draft->target", help="Runtime trace: which pair's sequences."),
        empirical_strategy: Optional[str] = typer.Option(None, help="Runtime trace: only this strategy's steps (a registry name or alias)."),
        resample: str = typer.Option("stream", help="Empirical betas: stream (keep order) or iid."),
        threshold: Optional[float] = typer.Option(None, help="Draft-length policy: stop drafting when the "
                                                              "confidence falls below this (default: fixed K)."),
        steps: int = typer.Option(1_000_000, help="Target steps to simulate."),
        seed: int = typer.Option(0, help="Random seed (results are reproducible from it)."),
        tokens: int = typer.Option(256, help="N of the N-token request latency."),
        json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
        plot: Optional[str] = typer.Option(None, help="Write PATH.png and PATH.svg: histogram vs closed form."),
        force: bool = typer.Option(False, "--force", help="Replace existing PATH.png / PATH.svg of --plot."),
) -> None:
    """Simulate tokens per step, ms/token and N-token latency (mean with CI, p50/p95/p99, histogram)."""
    check_run_size(steps, tokens)
    if not 0 <= seed < 2**63:
        raise InputError(f"--seed: must lie in [0, 2^63), got {_count(seed)}")
    if plot is not None:  # the names are checked before the simulation runs
        from speccascade.simulate.plot import plot_paths
        from speccascade.writers import check_new_file

        for path in plot_paths(plot):
            check_new_file(path, force=force)
    target, inner, notes = processes_for(config, process, rho, empirical, empirical_pair, resample, markov_reset,
                                         empirical_strategy)
    policy = ConfidenceThreshold(threshold) if threshold is not None else None
    result = simulate(config, process=target, inner_process=inner, policy=policy, steps=steps, seed=seed,
                      tokens=tokens, progress=None if not json_output else False)
    written = []
    if plot is not None:
        from speccascade.simulate.plot import plot_histogram

        written = [str(path) for path in plot_histogram(result, plot, force=force)]
    report = None
    if config.acceptance is not None:
        report = applied(config.acceptance, config) | {
            "processes": notes or ([f"--process {process} as given"] if process else
                                   [f"i.i.d.: {config.acceptance.name} retains no Markov fit for these pairs"])}
    if json_output:
        typer.echo(dumps(result.to_json() | {"plots": written} | ({"acceptance": report} if report else {})))
        return
    render(result, written)
    if report:
        console = Console()
        console.print(safe(applied_line(report)))
        for line in report["processes"]:
            console.print(f"  {safe(line)}")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(result: SimulationResult, plots: list[str], console: Console | None = None) -> None:
    console = console or Console()
    unit = "ms" if result.units == "ms" else "steps"
    process = ", ".join(f"{key}={value}" for key, value in result.process.items() if key != "strategy")
    table = Table(title=safe(f"speccascade simulate  ({result.strategy}; {process})"))
    table.add_column("quantity")
    for column in ("mean", "95% CI / stderr", "p50", "p95", "p99"):
        table.add_column(column, justify="right")
    low, high = result.ci95_tokens_per_step
    table.add_row("tokens / step", _fmt(result.mean_tokens_per_step), f"[{low:.4f}, {high:.4f}]", "", "", "")
    if result.closed_form_tokens_per_step is not None:
        table.add_row("  closed form", _fmt(result.closed_form_tokens_per_step),
                      f"z = {result.z_score:+.2f}" if result.z_score is not None else "", "", "", "")
    else:
        table.add_row("  cost model (i.i.d.)", _fmt(result.predicted_tokens_per_step), "", "", "", "")
    per_token = result.ms_per_token
    table.add_row(f"{unit} / token", _fmt(per_token.mean), _fmt(per_token.stderr, 5), _fmt(per_token.p50),
                  _fmt(per_token.p95), _fmt(per_token.p99))
    latency = result.request_latency_ms
    table.add_row(f"{unit} per {result.tokens_per_request}-token request", _fmt(latency.mean, 2), "",
                  _fmt(latency.p50, 2), _fmt(latency.p95, 2), _fmt(latency.p99, 2))
    console.print(table)
    bars = Table(title="tokens per step (simulated vs closed form)")
    for column in ("tokens", "simulated", "closed form", ""):
        bars.add_column(column, justify="right" if column != "" else "left")
    closed = result.histogram.get("closed_form_pmf")
    for index, (count, share) in enumerate(zip(result.histogram["tokens"], result.histogram["simulated_pmf"])):
        bars.add_row(str(count), f"{share:.4f}", _fmt(closed[index]) if closed else "-", "#" * round(40 * share))
    console.print(bars)
    console.print(f"{result.steps:,} steps, {result.requests:,} requests, seed {result.seed}, "
                  f"{result.steps_per_s / 1e6:.1f} M steps/s; cost model predicts {result.predicted_ms_per_token:.4f} "
                  f"{unit}/token")
    for path in plots:
        console.print(f"plot: {safe(path)}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {safe(warning)}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
