"""``speccascade optimize``, ``speccascade sweep`` and ``speccascade audit`` (typer + rich)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from speccascade.acceptance_file import AcceptanceFile
from speccascade.costmodel.audit import audit, findings_json
from speccascade.costmodel.audit.claims import load_claim
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.search.optimize import Candidate, OptimizeRequest, OptimizeResult, optimize
from speccascade.errors import InputError

from .cli_options import config_options
from .cli_text import dumps, safe


def _numbers(text: str | None, flag: str, kind=float) -> list | None:
    if text is None:
        return None
    try:
        return [kind(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError(f"{flag}: expected comma-separated {'integers' if kind is int else 'numbers'}, "
                         f"got {text!r}") from None


FLAG_NAMES = {"latency_limit_ms": "--latency-limit", "drafts": "--draft", "tinies": "--tiny", "batches": "--batch",
              "quantizations": "--quantize"}


def _flag_error(error: ValidationError) -> str:
    """One line naming the flag: '--alpha: Input should be ... (got 1.5)', or the model-level message as is."""
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        return message
    name = str(first["loc"][0])
    flag = FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
    return f"{flag}: {message} (got {first['input']!r})"


def _candidates(values: list[str] | None, flag: str) -> list[Candidate]:
    """NAME or NAME=ALPHA, repeated or comma-separated."""
    out = []
    for value in values or []:
        for part in value.split(","):
            name, _, alpha = part.strip().partition("=")
            if not name:
                raise InputError(f"{flag}: empty model name in {value!r}")
            try:
                out.append(Candidate(name=name, alpha=float(alpha) if alpha else None))
            except ValueError:
                raise InputError(f"{flag}: expected NAME or NAME=ALPHA with ALPHA in [0, 1], got {part!r}") from None
    return out


def optimize_command(
    hardware: Optional[str] = typer.Option(None, help="Chip profile (hardware mode)."),
    target: Optional[str] = typer.Option(None, help="Target model."),
    draft: Optional[list[str]] = typer.Option(None, help="Draft candidate NAME[=ALPHA] (repeat or comma-separate)."),
    tiny: Optional[list[str]] = typer.Option(None, help="Tiny candidate NAME[=ALPHA_TINY] (repeat or comma-separate)."),
    quantize: Optional[str] = typer.Option(None, help="Also try each draft quantized (default int8,int4; '' for none)."),
    alpha: Optional[float] = typer.Option(None, help="Acceptance for drafts given without =ALPHA (abstract: alpha)."),
    alpha_tiny: Optional[float] = typer.Option(None, "--alpha-tiny", help="Acceptance of Tiny tokens by the Draft."),
    c: Optional[float] = typer.Option(None, "--c", help="Abstract mode: draft/target cost per forward."),
    c_tiny: Optional[float] = typer.Option(None, "--c-tiny", help="Abstract mode: tiny/target cost per forward."),
    strategies: Optional[str] = typer.Option(None, help="Subset of the searchable strategies (default: all of "
                                                         "autoregressive,speculative,vertical,vertical-budget,filtered; aliases work)."),
    k_max: int = typer.Option(32, "--k-max", help="Largest K searched."),
    k_tiny_max: int = typer.Option(8, "--k-tiny-max", help="Largest k_tiny searched."),
    filter_widths: str = typer.Option("16,64,256,1024", "--filter-widths", help="Filter widths m (filtered)."),
    chips: Optional[str] = typer.Option(None, help="Chip counts (target tensor parallelism) to try (default 1,2,4,8)."),
    batch: str = typer.Option("1", help="Batch sizes to try."),
    context: int = typer.Option(1024, help="Context length in the KV cache."),
    combine: str = typer.Option("max", help="max (roofline) or sum (the seed's eq. 4)."),
    objective: str = typer.Option("ms_per_token", help="ms_per_token | tokens_per_s_per_chip | throughput."),
    latency_limit: Optional[float] = typer.Option(None, "--latency-limit", help="Max ms/token (throughput)."),
    top: int = typer.Option(5, help="Configurations shown (best + runner-ups)."),
    max_configurations: Optional[int] = typer.Option(None, "--max-configurations", help="Largest search allowed "
                                                     "(default 2,000,000 configurations, about a minute)."),
    acceptance: Optional[Path] = typer.Option(None, "--acceptance", help="Acceptance file (JSON, from `speccascade "
                                              "calibrate`): fills --alpha, --alpha-tiny and the filtered cascade's "
                                              "filter pass (given flags win)."),
    write_config: Optional[str] = typer.Option(None, "--write-config", help="Write the shown configurations as "
                                                "DIR/rank-N.toml, the --config files predict, simulate and runtime "
                                                "bench take."),
    force: bool = typer.Option(False, "--force", help="Replace existing rank-N.toml files."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Find the best configuration: draft (and quantization), tiny stage or not, K, k_tiny, m, chips, batch.

    With no model or cost flag: the seed paper's headline setup (TPU v5e, Gemma-7B target, Gemma-2B draft at its
    claimed alpha 0.9, the 10M Tiny at 0.85). With --hardware and --target only: the target family's smaller models
    as drafts, their int8/int4 quantizations, the registry's Tiny or none, 1/2/4/8 chips."""
    filled, notes = {}, []
    if acceptance is not None:
        filled, notes = acceptance_fields(AcceptanceFile.read(acceptance), alpha, alpha_tiny, target)
        alpha, alpha_tiny = filled.pop("alpha", alpha), filled.pop("alpha_tiny", alpha_tiny)
    if hardware is None and target is None and c is None and not draft and not tiny:
        from speccascade.costmodel.config import HEADLINE

        hardware, target = HEADLINE.hardware, HEADLINE.target
        draft = [f"{HEADLINE.draft.split(':')[0]}={alpha if alpha is not None else HEADLINE.alpha}"]
        tiny = [f"{HEADLINE.tiny}={alpha_tiny if alpha_tiny is not None else HEADLINE.alpha_tiny}"]
    fields = {"hardware": hardware, "target": target, "alpha": alpha, "alpha_tiny": alpha_tiny, "c": c,
              "c_tiny": c_tiny, "k_max": k_max, "k_tiny_max": k_tiny_max, "context": context, "combine": combine,
              "objective": objective, "latency_limit_ms": latency_limit, "top": top,
              "max_configurations": max_configurations,
              "drafts": _candidates(draft, "--draft") if draft else None,
              "tinies": _candidates(tiny, "--tiny") if tiny else None,
              "quantizations": None if quantize is None else [q for q in quantize.split(",") if q],
              "filter_widths": _numbers(filter_widths, "--filter-widths", int),
              "chips": _numbers(chips, "--chips", int), "batches": _numbers(batch, "--batch", int)}
    if strategies is not None:
        fields["strategies"] = [s for s in strategies.replace(" ", "").split(",") if s]
    fields.update(filled)
    try:
        request = OptimizeRequest.model_validate({key: value for key, value in fields.items() if value is not None})
    except ValidationError as error:
        raise InputError(_flag_error(error)) from None
    result = optimize(request)
    written = []
    if write_config is not None:
        from speccascade.costmodel.search.configs import write_configs

        written = write_configs(result, write_config, force=force)
    if json_output:
        typer.echo(dumps(result.to_json() | ({"acceptance": notes} if acceptance is not None else {})
                         | ({"written": [str(path) for path in written]} if written else {})))
        return
    render_optimize(result)
    for path in written:
        _console().print(f"wrote {safe(path)}")
    for note in notes:
        _console().print(safe(note))


def acceptance_fields(document: AcceptanceFile, alpha: float | None, alpha_tiny: float | None,
                      target: str | None) -> tuple[dict[str, float], list[str]]:
    """Optimizer fields from an acceptance file (given flags win) and one note per value: alpha, alpha_tiny, and
    for the filtered cascade the filter pass gamma_0 gamma_1|0 = gamma_total / alpha (the seed's eq. 6 with
    gamma_2|1 = alpha), put in gamma_draft_given_tiny with gamma_tiny = 1."""
    fits = document.values({"target": target})
    fields, notes = {}, []
    for name, given in (("alpha", alpha), ("alpha_tiny", alpha_tiny)):
        if name in fits:
            entry = fits[name]
            fields[name] = entry.alpha if given is None else given
            notes.append(f"{name} = {entry.alpha:.4f} [{entry.ci[0]:.4f}, {entry.ci[1]:.4f}] from {document.name}"
                         + ("" if given is None else f" (not used: --{name.replace('_', '-')} {given} given)"))
    reference = fields.get("alpha", alpha)
    if "gamma_total" in fits and reference:
        gamma = fits["gamma_total"].alpha
        ratio = min(1.0, gamma / reference)
        fields.update(gamma_tiny=1.0, gamma_draft_given_tiny=ratio)
        notes.append(f"gamma_total = {gamma:.4f} from {document.name}: filter pass gamma_0 gamma_1|0 = "
                     f"gamma_total / alpha = {ratio:.4f}" + (" (capped at 1)" if ratio < gamma / reference else ""))
    elif "gamma_total" in fits:
        notes.append(f"gamma_total from {document.name} not used: the filter pass needs an alpha to divide by")
    return fields, notes


def _console() -> Console:
    """Rich console, at least 140 columns wide when printing to a pipe or file (tables stay readable)."""
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)
    return console


def render_optimize(result: OptimizeResult, console: Console | None = None) -> None:
    console = console or _console()
    request = result.request
    unit = result.best.units
    where = (f"abstract: alpha {request.alpha}, c {request.c}" if request.abstract
             else f"{request.hardware}, target {request.target}, context {request.context}")
    table = Table(title=safe(f"speccascade optimize ({where}; objective {request.objective}; "
                             f"{result.configurations:,} configurations)"))
    top = result.top()
    hardware = not request.abstract
    cells = {
        "#": lambda rank, ch: str(rank), "strategy": lambda rank, ch: safe(ch.structure.strategy),
        "draft": lambda rank, ch: safe(ch.structure.draft or "-"), "tiny": lambda rank, ch: safe(ch.structure.tiny or "-"),
        "m": lambda rank, ch: str(ch.structure.filter_width or "-"), "chips": lambda rank, ch: str(ch.structure.chips),
        "batch": lambda rank, ch: str(ch.structure.batch), "K": lambda rank, ch: str(ch.k or "-"),
        "k_tiny": lambda rank, ch: str(ch.k_tiny or "-"),
        f"{'ms' if unit == 'ms' else 'steps'}/token": lambda rank, ch: f"{ch.ms_per_token:.3f}",
        "tokens/s": lambda rank, ch: f"{ch.tokens_per_s:.1f}" if ch.tokens_per_s else "-",
        "speedup": lambda rank, ch: f"{ch.speedup:.3f}x", "E": lambda rank, ch: f"{ch.expected_tokens:.2f}",
        "fits": lambda rank, ch: "yes" if ch.fits else "[red]no[/red]"}
    objective_header = {"throughput": "throughput tok/s", "tokens_per_s_per_chip": "tok/s/chip"}.get(request.objective)
    if objective_header:
        cells[objective_header] = lambda rank, ch: f"{ch.objective_value:.1f}"
    hidden = set() if hardware else {"draft", "tiny", "m", "chips", "batch", "tokens/s", "fits"}
    hidden |= {"tiny"} if not any(ch.structure.tiny for ch in top) else set()
    hidden |= {"m"} if not any(ch.structure.filter_width for ch in top) else set()
    if not any(ch.k_tiny for ch in top):
        hidden.add("k_tiny")
    columns = [name for name in cells if name not in hidden]
    for column in columns:
        table.add_column(column, justify="left" if column in ("strategy", "draft", "tiny") else "right")
    for rank, choice in enumerate(top, start=1):
        table.add_row(*(cells[column](rank, choice) for column in columns))
    console.print(table)
    losers = result.losers()
    if losers:
        why = Table(title="why the others lose (best variant of each strategy/draft/tiny)")
        for column in ("configuration", "K", "ms/token", "reason", "why"):
            why.add_column(column)
        for choice, reason, message in losers:
            why.add_row(safe(choice.structure.label()), str(choice.k or "-"), f"{choice.ms_per_token:.3f}", safe(reason),
                        safe(message))
        console.print(why)
    for group in result.infeasible():
        console.print(f"[red]{safe(group['reason'])}[/red]: " + safe(
            f"{group['structures']} structure(s) at chips {group['chips']}, batch {group['batch']} cannot run, "
            f"e.g. {group['example']}"))
    closed = result.extras.get("closed_form")
    if closed and "optimal_k" in closed:
        optimum = closed["optimal_k"]
        k_star = optimum["k_continuous"]
        console.print(f"Lambert-W optimum: K* = {k_star if k_star is None else round(k_star, 4)} -> best integer "
                      f"K = {optimum['k']} (speedup {optimum['speedup']:.4f}x)")
        console.print(f"  K* = {safe(optimum['formula'])}")
        console.print(f"break-even: alpha > {closed['break_even']['alpha_min']:.4g} (at K = "
                      f"{closed['break_even']['k_at_min']})")
    elif closed:
        alpha_min = closed["break_even"]["alpha_min"]
        console.print(f"with {safe(closed['draft'])}: c = {closed['c']:.4f}, continuous best K (scipy) = "
                      f"{closed['k_continuous_scipy']:.2f}; break-even alpha = "
                      f"{'none' if alpha_min is None else f'{alpha_min:.4f}'} "
                      f"(K = {closed['break_even']['k_at_min']}, real verify cost)")
    if closed and "synergy" in closed:
        synergy = closed["synergy"]
        threshold = synergy["alpha_tiny_min"]
        console.print("tiny stage never beats the best 2-level setup" if threshold is None else
                      f"tiny stage pays when alpha_tiny > {threshold:.4f} "
                      f"(best 2-level speedup {synergy['best_2level_speedup']:.3f}x)")


def _plain(value):
    """A table cell as a JSON value (numpy scalars unwrapped, NaN and inf as null)."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


@config_options
def sweep_command(
    config: PredictConfig,
    grid: Optional[list[str]] = typer.Option(None, "--grid", help="AXIS=v1,v2 or AXIS=start:stop[:step] (repeat). "
                                             "Axes: alpha, alpha_tiny, k, k_tiny, gamma_*, strategy, hardware, chips, "
                                             "target, draft, tiny, quantization, batch, context, filter_width, c, c_tiny."),
    strategies: Optional[str] = typer.Option(None, "--strategies", help="Strategies to sweep (default: the config's)."),
    out: str = typer.Option("sweep-out", "--out", help="Directory for the table and plots."),
    formats: Optional[str] = typer.Option(None, "--formats", help="Table formats, comma-separated: csv, json, "
                                          "parquet (default csv,json and parquet where pyarrow is installed)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw the plots (PNG and SVG)."),
    force: bool = typer.Option(False, "--force", help="Replace existing sweep tables and plots in --out."),
    max_rows: Optional[int] = typer.Option(None, "--max-rows", help="Largest sweep allowed (rows; default "
                                           "20,000,000, about 3 GB of columns)."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Evaluate a grid of configurations into a table (CSV, JSON, Parquet) and plots; the base is the config flags."""
    import time

    from rich.progress import Progress

    from speccascade.costmodel.search.sweep import MAX_ROWS, SweepSpec, parse_axis, run_sweep, table_paths
    from speccascade.writers import check_new_file, output_dir

    if max_rows is not None and max_rows < 1:
        raise InputError(f"--max-rows: must be >= 1, got {max_rows}")
    max_rows = MAX_ROWS if max_rows is None else max_rows
    axes = dict(parse_axis(text) for text in grid or [])
    chosen = tuple(s for s in (strategies or "").replace(" ", "").split(",") if s)
    spec = SweepSpec(config, axes, chosen)
    spec.check_size(max_rows)
    # every output name is checked before the sweep runs: a refusal costs nothing and leaves nothing
    wanted = None if formats is None else tuple(f for f in formats.replace(" ", "").split(",") if f)
    directory = output_dir(out)
    paths = table_paths(directory, wanted)
    for path in paths.values():
        check_new_file(path, force=force)
    if plots:
        from speccascade.costmodel.search.plots import check_plot_paths, plot_all

        check_plot_paths(directory, force=force)
    started = time.perf_counter()
    if spec.size() >= 200_000 and not json_output:
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"sweeping {spec.size():,} configurations", total=spec.size())
            table = run_sweep(spec, progress=lambda rows: bar.advance(task, rows), max_rows=max_rows)
    else:
        table = run_sweep(spec, max_rows=max_rows)
    evaluated = time.perf_counter()
    written = table.write(directory, tuple(paths), force=force)
    wrote = time.perf_counter()
    drawn = plot_all(spec, table, directory, force=force) if plots else {}
    fits = table.columns["fits"].astype(bool)
    speedup = np.where(fits, table.columns["speedup"], -np.inf) if fits.any() else table.columns["speedup"]
    best = int(np.argmax(speedup))
    summary = {"rows": len(table), "axes": list(table.axes), "evaluate_s": evaluated - started,
               "write_s": wrote - evaluated, "plot_s": time.perf_counter() - wrote,
               "tables": {fmt: str(path) for fmt, path in written.items()},
               "plots": {name: [str(p) for p in value] if isinstance(value, list) else f"skipped: {value}"
                         for name, value in drawn.items()},
               "best_speedup" + ("" if fits.any() else " (nothing fits)"): {name: _plain(column[best]) for name, column in table.columns.items()}}
    if json_output:
        typer.echo(dumps(summary, default=str))
        return
    console = _console()
    console.print(f"{summary['rows']:,} configurations in {summary['evaluate_s']:.2f} s; tables written in "
                  f"{summary['write_s']:.2f} s: {safe(', '.join(summary['tables'].values()))}")
    for name, value in summary["plots"].items():
        console.print(f"  plot {name}: {safe(', '.join(value) if isinstance(value, list) else value)}")
    row = next(value for key, value in summary.items() if key.startswith("best_speedup"))
    console.print("highest speedup: " + safe(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                        for k, v in row.items())))


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def audit_command(
    claim_file: Path = typer.Argument(..., help="CLAIM.json (schema: docs/claim.schema.json)."),
    json_output: bool = typer.Option(False, "--json", help="Print {\"findings\": [...]} as JSON."),
    show_info: bool = typer.Option(True, "--info/--no-info", help="Show passed checks (info) in the table."),
) -> None:
    """Check a reported result against its own numbers, the hardware and model profiles, and physics."""
    claim = load_claim(claim_file)
    findings = audit(claim)
    if json_output:
        typer.echo(dumps({"claim": claim.name} | findings_json(findings)))
        return
    console = _console()
    table = Table(title=f"speccascade audit: {safe(claim.name)}", show_lines=False)
    table.add_column("severity")
    table.add_column("check")
    table.add_column("finding")
    for item in findings:
        if item.severity == "info" and not show_info:
            continue
        style = SEVERITY_STYLE[item.severity]
        table.add_row(f"[{style}]{safe(item.severity)}[/{style}]", safe(item.id), safe(item.message))
    console.print(table)
    counts = findings_json(findings)["counts"]
    console.print(f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} passed checks")


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize_command)
    app.command("sweep")(sweep_command)
    app.command("audit")(audit_command)
