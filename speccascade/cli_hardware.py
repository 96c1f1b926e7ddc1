"""``speccascade hardware``: list, show and probe chip and model profiles.

``list`` prints every chip (main-memory capacity and bandwidth, bf16 peak, memory levels) and every model
(parameters, embedding, dtype, weight bytes). ``show NAME`` prints one chip or model field by field with its
source. ``probe`` measures this machine (see :mod:`speccascade.hardware.probe`) and writes a profile usable
everywhere a chip name is. Each takes ``--json``. Unknown names raise :class:`UnknownNameError` (one line
listing the known names; exit code 2 through :func:`speccascade.cli.main`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from speccascade.hardware import ChipProfile, ModelProfile, list_chips, list_models, load_chip, load_model
from speccascade.errors import InputError, UnknownNameError
from speccascade.readers import read_toml

from .cli_text import dumps, safe

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

GB = 1e9


def _console() -> Console:
    return Console(width=160)


def _gb(value: float) -> str:
    return f"{value / GB:,.2f} GB"


def _bytes(value: float) -> str:
    """Human size: MiB under 1 GiB, else GB (decimal, as datasheets write it)."""
    return f"{value / (1 << 20):,.1f} MiB" if value < (1 << 30) else _gb(value)


def _levels(chip: ChipProfile) -> str:
    parts = []
    for level in chip.memory:
        per = "/core" if level.scope == "core" else ""
        parts.append(f"{level.name} {_bytes(level.capacity_bytes)}{per} @ {level.bandwidth_bytes_per_s / GB:,.0f} GB/s")
    return " -> ".join(parts)


def chip_summary(chip: ChipProfile) -> dict[str, Any]:
    main = chip.memory[-1]
    return {
        "name": chip.name, "vendor": chip.vendor, "cores_per_chip": chip.cores_per_chip,
        "main_memory": main.name, "main_capacity_bytes": main.capacity_bytes,
        "main_bandwidth_bytes_per_s": main.bandwidth_bytes_per_s, "peak_flops_bf16": chip.peak_flops["bf16"],
        "levels": [level.name for level in chip.memory], "calibrated": chip.corrections.calibrated,
    }


def model_summary(model: ModelProfile) -> dict[str, Any]:
    return {
        "name": model.name, "family": model.family, "architecture": model.architecture,
        "params_total": model.params_total, "params_embedding": model.params_embedding, "dtype": model.dtype,
        "weight_bytes": model.weight_bytes,
    }


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables.")
                 ) -> None:
    """List every chip and model profile (shipped and in $SPECCASCADE_HOME); a profile that does not load (a
    broken file in $SPECCASCADE_HOME) is listed as broken with its one-line problem."""
    broken: list[dict[str, str]] = []
    chips = _loadable("chip", list_chips(), load_chip, broken)
    models = _loadable("model", list_models(), load_model, broken)
    if as_json:
        typer.echo(dumps({"chips": [chip_summary(c) for c in chips], "models": [model_summary(m) for m in models],
                          "broken": broken}))
        return
    chip_table = Table(title="Chips (per chip; datasheet peaks unless calibrated)")
    for column in ("name", "main memory", "bandwidth", "bf16 peak", "levels (fastest first)", "calibrated"):
        chip_table.add_column(column, overflow="fold")
    for chip in chips:
        main = chip.memory[-1]
        chip_table.add_row(safe(chip.name), safe(f"{main.name} {_gb(main.capacity_bytes)}"),
                           f"{main.bandwidth_bytes_per_s / GB:,.0f} GB/s",
                           f"{chip.peak_flops['bf16'] / 1e12:,.1f} TFLOP/s",
                           safe(_levels(chip)), "yes" if chip.corrections.calibrated else "no")
    model_table = Table(title="Models (suffix NAME:int8|int4|bf16|fp32 changes the weight dtype)")
    for column in ("name", "architecture", "params", "embedding", "dtype", "weights"):
        model_table.add_column(column)
    for model in models:
        model_table.add_row(safe(model.name), safe(model.architecture), f"{model.params_total / 1e9:,.3f} B",
                            f"{model.params_embedding / 1e9:,.3f} B", safe(model.dtype), _gb(model.weight_bytes))
    console = _console()
    console.print(chip_table)
    console.print(model_table)
    for item in broken:
        console.print(f"[red]broken {item['kind']} profile[/red] {safe(item['name'])}: {safe(item['problem'])}")


def _loadable(kind: str, names: list[str], load, broken: list[dict[str, str]]) -> list:
    """The profiles of ``names`` that load; each one that does not is appended to ``broken`` with its problem."""
    loaded = []
    for name in names:
        try:
            loaded.append(load(name))
        except InputError as error:
            broken.append({"kind": kind, "name": name, "problem": str(error)})
    return loaded


def _load_any(name: str) -> ChipProfile | ModelProfile:
    """A chip or a model by name (model names may carry a dtype suffix) or by path to a TOML file."""
    if name.endswith(".toml"):
        data = read_toml(Path(name))
        return load_model(name) if "params_total" in data else load_chip(name)
    chips, models = list_chips(), list_models()
    if name in chips:
        return load_chip(name)
    if name.partition(":")[0] in models:
        return load_model(name)
    raise UnknownNameError("chip or model", name, chips + models)


def _chip_rows(chip: ChipProfile) -> list[tuple[str, str, str]]:
    rows = [("vendor", chip.vendor, ""), ("description", chip.description, ""),
            ("cores_per_chip", str(chip.cores_per_chip), "")]
    for level in chip.memory:
        scope = " per core" if level.scope == "core" else ""
        weights = "" if level.holds_weights else ", never holds weights"
        rows.append((f"memory {level.name}", f"{_bytes(level.capacity_bytes)}{scope}, "
                     f"{level.bandwidth_bytes_per_s / GB:,.1f} GB/s{weights}", level.source))
    for dtype, flops in chip.peak_flops.items():
        rows.append((f"peak {dtype}", f"{flops / 1e12:,.3f} TFLOP/s", chip.peak_flops_source))
    if chip.interconnect is not None:
        link = chip.interconnect
        rows.append((f"interconnect {link.name}",
                     f"{link.links_per_chip} x {link.link_bandwidth_bytes_per_s / GB:,.1f} GB/s one way, "
                     f"{link.topology}, latency {link.latency_s * 1e6:.1f} us", link.source))
    corrections = chip.corrections
    fractions = ", ".join(f"{k} {v:.3f}" for k, v in corrections.bandwidth_fraction.items()) or "none"
    by_dtype = "".join(f", {dtype} {value:.3f}" for dtype, value in corrections.compute_efficiency_by_dtype.items())
    rows.append(("corrections", f"calibrated {corrections.calibrated}; bandwidth fractions {fractions}; compute "
                 f"efficiency {corrections.compute_efficiency:.3f}{by_dtype}; overhead "
                 f"{corrections.overhead_s * 1e6:.2f} us; token slope {corrections.token_slope:.3g}; context slope "
                 f"{corrections.context_slope:.3g}", corrections.source))
    provenance = corrections.provenance
    if provenance is not None:
        residual = provenance.residuals
        fit = f"; residual rms {residual.rms:.1%}, max {residual.max_abs:.1%}" if residual else ""
        rows.append(("calibration", f"{provenance.method} on {provenance.date_utc}: {provenance.points_used} points "
                     f"used, {provenance.points_unused} unused{fit}",
                     "; ".join(f"{Path(t.path).name} sha256 {t.sha256[:12]}" for t in provenance.traces)))
    rows.extend(("note", note, "") for note in chip.notes)
    return rows


def _model_rows(model: ModelProfile) -> list[tuple[str, str, str]]:
    rows = [("source", model.source, "every field below unless stated (the TOML comments cite each one)"),
            ("params_total", f"{model.params_total:,.0f}", ""),
            ("params_embedding", f"{model.params_embedding:,.0f}", "")]
    rows += [(field, str(getattr(model, field)), "") for field in (
        "family", "architecture", "layers", "d_model", "heads", "kv_heads", "head_dim", "d_ff", "vocab",
        "tied_embeddings", "dtype")]
    rows.append(("weight bytes", f"{_gb(model.weight_bytes)} at {model.dtype}", "params_total x bytes per param"))
    rows.append(("KV bytes per token", f"{model.kv_bytes_per_token:,.0f}", "2 x layers x kv_heads x head_dim x 2 B"))
    rows.extend(("note", note, "") for note in model.notes)
    return rows


@app.command("show")
def show_command(name: str = typer.Argument(..., help="Chip or model name (gemma-2b:int8), or a .toml path."),
                 as_json: bool = typer.Option(False, "--json", help="Print the profile as JSON.")) -> None:
    """Show one chip or model profile field by field, with the source of each number."""
    profile = _load_any(name)
    if as_json:
        kind = "chip" if isinstance(profile, ChipProfile) else "model"
        typer.echo(dumps({"kind": kind, **profile.model_dump(mode="json")}))
        return
    rows = _chip_rows(profile) if isinstance(profile, ChipProfile) else _model_rows(profile)
    table = Table(title=safe(profile.name))
    for column in ("field", "value", "source"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(safe(cell) for cell in row))
    _console().print(table)


@app.command("probe")
def probe_command(name: str = typer.Option("local", "--name", help="Profile name (the file is NAME.toml)."),
                  output: Optional[str] = typer.Option(None, "--output", help="Write here instead of "
                                                       "$SPECCASCADE_HOME/chips/NAME.toml."),
                  quick: bool = typer.Option(False, "--quick", help="Smaller, faster measurements (~seconds)."),
                  force: bool = typer.Option(False, "--force", help="Replace an existing file at --output (or a "
                                             "profile under $SPECCASCADE_HOME that an earlier probe did not write)."),
                  as_json: bool = typer.Option(False, "--json", help="Print the profile and path as JSON.")) -> None:
    """Measure this machine with JAX (bandwidth, matmul FLOP/s, dispatch overhead) and write a chip profile."""
    from speccascade.hardware.probe import check_name, probe, probe_output, write_profile

    check_name(name)
    path = probe_output(name, output, force=force)  # checked before anything is measured
    profile = probe(name=name, quick=quick)
    path = write_profile(profile, path, force=True)
    if as_json:
        typer.echo(dumps({"path": str(path), "profile": profile.model_dump(mode="json")}))
        return
    table = Table(title=f"{safe(profile.name)}: measured")
    for column in ("field", "value"):
        table.add_column(column)
    for level in profile.memory:
        scope = " per core" if level.scope == "core" else ""
        table.add_row(f"memory {safe(level.name)}",
                      f"{_bytes(level.capacity_bytes)}{scope}, {level.bandwidth_bytes_per_s / GB:,.1f} GB/s")
    for dtype, flops in profile.peak_flops.items():
        table.add_row(f"matmul {safe(dtype)}", f"{flops / 1e9:,.1f} GFLOP/s")
    table.add_row("dispatch overhead", f"{profile.corrections.overhead_s * 1e6:,.2f} us")
    console = _console()
    console.print(table)
    for note in profile.notes:
        console.print(f"note: {safe(note)}")
    console.print(f"wrote {safe(path)} (use --hardware {safe(path if output is not None else profile.name)})")
