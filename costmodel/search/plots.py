"""Plots of a sweep (matplotlib, PNG and SVG, labelled axes with units).

- ``heatmap_k_ktiny``: speedup of the vertical cascade over (K, k_tiny);
- ``speedup_vs_alpha``: best speedup over K (and k_tiny) per strategy as the acceptance varies;
- ``roofline``: the chip's roofs (one per memory level) with each model's decode and verify forwards placed;
- ``pareto``: memory per chip vs ms/token of every configuration, with the Pareto front;
- ``scaling``: throughput vs batch size and latency vs context length (the seed paper's Figure 3).

Each plot holds the axes it does not show at a reference value (the base configuration's value when swept, else
the middle of the grid) and says so in its title. A plot whose axes the sweep lacks gets a small auxiliary sweep
around the base configuration (``plot_inputs``); plots that need hardware are skipped in abstract mode.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from speccascade.hardware import load_chip  # noqa: E402
from speccascade.writers import OutputSet, check_new_file, output_dir  # noqa: E402

from speccascade import strategies as registry  # noqa: E402

from ..config import PredictConfig  # noqa: E402
from .optimize import searchable  # noqa: E402
from ..predict import describable  # noqa: E402
from ..forward import forward_inputs  # noqa: E402
from .sweep import SweepSpec, SweepTable, run_sweep  # noqa: E402
from ..timings import stage_timings  # noqa: E402

FORMATS = ("png", "svg")
ACCEPTANCE_AXES = ("alpha", "alpha_tiny", "gamma_tiny", "gamma_draft_given_tiny", "gamma_target_given_draft")
HEATMAP_STRATEGY = registry.VERTICAL.name  # the (K, k_tiny) heatmap is of the fixed-review vertical cascade
SHOWN = {"heatmap_k_ktiny": ("k", "k_tiny", "strategy"), "speedup_vs_alpha": ("alpha", "k", "k_tiny", "strategy")}


def possible_strategies(config: PredictConfig) -> tuple[str, ...]:
    """The searchable strategies (Tiny/Draft/Target, scalar acceptance) that the base configuration describes."""
    return tuple(name for name in describable(config) if name in searchable())


def _slice(table: SweepTable, keep: tuple[str, ...]) -> np.ndarray:
    """Rows with every swept axis not in ``keep`` at its reference value."""
    fixed = {name: table.reference(name) for name in table.axes if name not in keep}
    return table.select(**fixed)


BASE_FIELDS = ("hardware", "chips", "target", "draft", "tiny", "alpha", "alpha_tiny", "k", "k_tiny", "batch",
               "context", "c", "c_tiny")


def _base_text(table: SweepTable, keep: tuple[str, ...]) -> str:
    """The base configuration's values of the inputs neither swept nor shown (None values left out)."""
    hidden = set(table.axes) | set(keep) | ({"draft"} if "quantization" in table.axes else set())
    parts = [f"{name}={table.base[name]}" for name in BASE_FIELDS
             if name not in hidden and table.base.get(name) is not None]
    return ", ".join(parts)


def _fixed_text(table: SweepTable, keep: tuple[str, ...]) -> str:
    parts = [f"{name}={table.reference(name)}" for name in table.axes if name not in keep]
    base = _base_text(table, keep)
    return "; ".join(part for part in (", ".join(parts), base) if part) or "base configuration"


def _save(figure, directory: Path, name: str, formats=FORMATS) -> list[Path]:
    """``name.png`` and ``name.svg``, each written atomically. The overwrite policy is checked by the caller
    before any plot is drawn (:func:`plot_all`), so this replaces what that check allowed."""
    paths = [directory / f"{name}.{fmt}" for fmt in formats]
    try:
        with OutputSet(paths, force=True) as outputs:
            for path, fmt in zip(paths, formats):
                outputs.write(path, lambda temporary, fmt=fmt: figure.savefig(temporary, format=fmt, dpi=120,
                                                                               bbox_inches="tight"))
    finally:
        plt.close(figure)
    return paths



def _unit(table: SweepTable) -> str:
    return "ms" if np.isfinite(table.columns["tokens_per_s"]).any() else "target steps"


def heatmap_k_ktiny(table: SweepTable, directory: Path) -> list[Path]:
    keep = SHOWN["heatmap_k_ktiny"]
    mask = _slice(table, keep) & (table.columns["strategy"] == HEATMAP_STRATEGY)
    ks, k_tinies = np.unique(table.columns["k"][mask]), np.unique(table.columns["k_tiny"][mask])
    grid = np.full((len(ks), len(k_tinies)), np.nan)
    rows = np.searchsorted(ks, table.columns["k"][mask])
    cols = np.searchsorted(k_tinies, table.columns["k_tiny"][mask])
    grid[rows, cols] = table.columns["speedup"][mask]
    figure, axis = plt.subplots(figsize=(7, 5))
    image = axis.imshow(grid, origin="lower", aspect="auto", cmap="viridis",
                        extent=(k_tinies[0] - 0.5, k_tinies[-1] + 0.5, ks[0] - 0.5, ks[-1] + 0.5))
    best = np.unravel_index(int(np.nanargmax(grid)), grid.shape)
    axis.plot(k_tinies[best[1]], ks[best[0]], "r*", markersize=14, label=f"best: {np.nanmax(grid):.2f}x")
    figure.colorbar(image, ax=axis, label="speedup over autoregressive (x)")
    axis.set_xlabel("k_tiny (Tiny drafts per Draft review, tokens)")
    axis.set_ylabel("K (Draft reviews per Target step)")
    axis.set_title(f"vertical cascade speedup\n({_fixed_text(table, keep)})", fontsize=9)
    axis.legend(loc="upper right")
    return _save(figure, directory, "heatmap_k_ktiny")


def speedup_vs_alpha(table: SweepTable, directory: Path) -> list[Path]:
    keep = SHOWN["speedup_vs_alpha"]
    mask = _slice(table, keep)
    figure, axis = plt.subplots(figsize=(7, 5))
    for strategy in np.unique(table.columns["strategy"][mask]):
        rows = mask & (table.columns["strategy"] == strategy)
        alphas = table.columns["alpha"][rows]
        speedups = table.columns["speedup"][rows]
        xs = np.unique(alphas)
        best = [speedups[alphas == x].max() for x in xs]
        axis.plot(xs, best, marker="o", markersize=3, label=strategy)
    axis.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axis.set_xlabel("alpha (acceptance of draft tokens by the target, per token)")
    axis.set_ylabel("speedup over autoregressive (x), best K per alpha")
    axis.set_title(f"speedup vs acceptance\n({_fixed_text(table, keep)})", fontsize=9)
    axis.legend()
    axis.grid(alpha=0.3)
    return _save(figure, directory, "speedup_vs_alpha")


def pareto_front(memory: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both memory and ms/token, sorted by memory."""
    order = np.lexsort((ms, memory))
    best_ms = np.minimum.accumulate(ms[order])
    improves = np.concatenate([[True], best_ms[1:] < best_ms[:-1]])
    return order[improves]


def pareto(table: SweepTable, directory: Path) -> list[Path]:
    # acceptance rates and the context length describe the workload, not a choice: hold them at reference
    acceptance = {name: table.reference(name) for name in table.axes if name in ACCEPTANCE_AXES + ("context",)}
    fits = table.columns["fits"].astype(bool) & table.select(**acceptance)
    memory, ms = table.columns["memory_total_gb"], table.columns["ms_per_token"]
    figure, axis = plt.subplots(figsize=(7, 5))
    for strategy in np.unique(table.columns["strategy"]):
        rows = np.flatnonzero(fits & (table.columns["strategy"] == strategy))
        if rows.size > 5000:
            rows = np.random.default_rng(0).choice(rows, 5000, replace=False)
        axis.scatter(memory[rows], ms[rows], s=6, alpha=0.4, label=strategy)
    feasible = np.flatnonzero(fits)
    if feasible.size:
        front = feasible[pareto_front(memory[feasible], ms[feasible])]
        axis.step(memory[front], ms[front], where="post", color="black", linewidth=1.5, label="Pareto front")
    axis.set_xlabel("memory used on all chips (GB: weights + KV cache in main memory, per chip x chips)")
    axis.set_ylabel(f"time per token ({_unit(table)})")
    axis.set_yscale("log")
    held = ", ".join(f"{name}={value}" for name, value in acceptance.items())
    axis.set_title(f"memory vs latency (configurations that fit)\n({'; '.join(p for p in (held, _base_text(table, ())) if p)})",
                   fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, which="both")
    return _save(figure, directory, "pareto_memory_ms")


def scaling(table: SweepTable, directory: Path) -> list[Path]:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, name, metric in ((left, "batch", "throughput"), (right, "context", "latency")):
        fixed = {other: table.reference(other) for other in table.axes
                 if other not in (name, "k", "k_tiny", "strategy", "filter_width")}
        mask = table.select(**fixed)
        for strategy in np.unique(table.columns["strategy"][mask]):
            rows = mask & (table.columns["strategy"] == strategy)
            xs = table.columns[name][rows].astype(float)
            ms = table.columns["ms_per_token"][rows]
            values = np.unique(xs)
            best_ms = np.array([ms[xs == x].min() for x in values])
            ys = values * 1e3 / best_ms if metric == "throughput" else best_ms
            axis.plot(values, ys, marker="o", markersize=3, label=strategy)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size (sequences)" if name == "batch" else "context length (tokens)")
        axis.set_ylabel("throughput (tokens/s, all sequences)" if metric == "throughput" else "latency (ms/token)")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
        axis.set_title(f"{metric} vs {name} (best K each)\n({', '.join(f'{k}={v}' for k, v in fixed.items())})",
                       fontsize=8)
    return _save(figure, directory, "scaling_batch_context")


def roofline(config: PredictConfig, directory: Path, k: int | None = None) -> list[Path]:
    """Roofs of every memory level and each model's decode (1 token) and verify (K+1 tokens) forward."""
    chip = load_chip(config.hardware)
    timings = stage_timings(config, verify_tokens=(k or config.k) + 1)
    peak = chip.flops_for("bf16")
    intensity = np.logspace(-1, 4, 200)
    figure, axis = plt.subplots(figsize=(7, 5))
    for level in chip.memory:
        roof = np.minimum(peak, level.bandwidth_bytes_per_s * intensity)
        axis.plot(intensity, roof / 1e12, label=f"{level.name} roof ({level.bandwidth_bytes_per_s / 1e9:g} GB/s)")
    axis.axhline(peak / 1e12, color="grey", linestyle=":", label=f"bf16 peak ({peak / 1e12:g} TFLOP/s)")
    for role, model in timings.models.items():
        level = timings.level(role)
        tokens_list = [1, (k or config.k) + 1] if role == "target" else [1]
        for tokens in tokens_list:
            values = forward_inputs(chip, model, level=level, tokens=tokens, context=config.context,
                                    batch=config.batch, tp=timings.tensor_parallel[role])
            batch_tokens = float(values["batch"]) * tokens
            flops = (2 * values["matmul_params"] * batch_tokens
                     + values["attention_coefficient"] * (config.context + tokens) * batch_tokens)
            bytes_read = values["weight_bytes"] + float(values["batch"]) * config.context * values["kv_bytes_per_token"]
            x = flops / bytes_read
            attainable = min(peak, chip.level(level).bandwidth_bytes_per_s * x)
            axis.scatter([x], [attainable / 1e12], s=40, zorder=3)
            axis.annotate(f"{role} {model.name}\n{tokens} tok, {level}", (x, attainable / 1e12), fontsize=7,
                          textcoords="offset points", xytext=(5, -12))
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("arithmetic intensity (FLOP/byte)")
    axis.set_ylabel("attainable performance (TFLOP/s per chip)")
    axis.set_title(f"roofline: {chip.name}, batch {config.batch}, context {config.context}", fontsize=9)
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(alpha=0.3, which="both")
    return _save(figure, directory, "roofline")


# --- auxiliary sweeps and the driver ---------------------------------------------------------------------

def _auxiliary(spec: SweepSpec, table: SweepTable, axes: dict[str, list],
               strategies: tuple[str, ...]) -> SweepTable:
    """A small sweep over ``axes``; the main sweep's other axes held at their reference values."""
    merged = {name: [_python(table.reference(name))] for name in spec.axes if name not in axes and name != "strategy"}
    merged |= axes
    merged["strategy"] = list(strategies)
    return run_sweep(SweepSpec(spec.base, merged))


def _python(value):
    return value.item() if hasattr(value, "item") else value


def plot_inputs(spec: SweepSpec, table: SweepTable) -> dict[str, SweepTable | str]:
    """For each plot: the table it draws from (the sweep itself or an auxiliary one), or why it is skipped."""
    base = spec.base
    strategies = possible_strategies(base)
    swept = set(table.axes)
    hardware = base.hardware is not None
    k_axis = {"k": list(range(1, 17))}
    out: dict[str, SweepTable | str] = {}
    if HEATMAP_STRATEGY not in strategies:
        out["heatmap_k_ktiny"] = "needs a tiny model (or --c-tiny) and --alpha-tiny"
    elif {"k", "k_tiny"} <= swept and HEATMAP_STRATEGY in set(table.columns["strategy"]):
        out["heatmap_k_ktiny"] = table
    else:
        out["heatmap_k_ktiny"] = _auxiliary(spec, table, {"k": list(range(1, 17)), "k_tiny": list(range(1, 9))},
                                            (HEATMAP_STRATEGY,))
    if "alpha" in swept and "k" in swept:
        out["speedup_vs_alpha"] = table
    else:
        extra = {"alpha": [round(a, 2) for a in np.arange(0.30, 0.991, 0.03)]} | k_axis
        if any("k_tiny" in registry.get(name).knob_names for name in strategies):
            extra["k_tiny"] = list(range(1, 9))
        out["speedup_vs_alpha"] = _auxiliary(spec, table, extra, strategies)
    if not hardware:
        for name in ("pareto", "scaling"):
            out[name] = "needs --hardware (abstract mode has no memory or batch)"
        return out
    memory_axes = {"chips", "draft", "tiny", "target", "quantization", "hardware"}
    if any(len(np.unique(table.columns[name])) > 1 for name in memory_axes & swept):
        out["pareto"] = table
    else:
        extra = {"chips": [1, 2, 4, 8]} | k_axis
        if base.draft is not None:
            extra["quantization"] = ["bf16", "int8", "int4"]
        out["pareto"] = _auxiliary(spec, table, extra, strategies)
    if {"batch", "context"} <= swept:
        out["scaling"] = table
    else:
        extra = {"batch": [1, 2, 4, 8, 16, 32, 64], "context": [256, 1024, 4096, 16384]} | k_axis
        out["scaling"] = _auxiliary(spec, table, extra, strategies)
    return out


PLOTTERS = {"heatmap_k_ktiny": heatmap_k_ktiny, "speedup_vs_alpha": speedup_vs_alpha, "pareto": pareto,
            "scaling": scaling}


def plot_paths(directory: Path) -> list[Path]:
    """Every file :func:`plot_all` may write into ``directory``."""
    return [Path(directory) / f"{name}.{fmt}" for name in (*PLOTTERS, "roofline") for fmt in FORMATS]


def check_plot_paths(directory: Path, *, force: bool = False) -> None:
    """Refuse (one line) before anything is drawn when a plot file exists and ``force`` is not given."""
    directory = output_dir(directory)
    for path in plot_paths(directory):
        check_new_file(path, force=force)


def plot_all(spec: SweepSpec, table: SweepTable, directory: Path, *, force: bool = False
             ) -> dict[str, list[Path] | str]:
    """Draw every plot into ``directory``; returns name -> files, or name -> reason it was skipped. Existing
    files are kept unless ``force`` (the check runs for all plots before the first is drawn)."""
    directory = output_dir(directory)
    check_plot_paths(directory, force=force)
    out: dict[str, list[Path] | str] = {}
    for name, source in plot_inputs(spec, table).items():
        out[name] = source if isinstance(source, str) else PLOTTERS[name](source, directory)
    if spec.base.hardware is not None:
        out["roofline"] = roofline(spec.base, directory)
    else:
        out["roofline"] = "needs --hardware"
    return out
