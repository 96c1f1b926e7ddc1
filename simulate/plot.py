"""Histogram of tokens per step, simulated (bars) against the exact distribution (markers), as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from speccascade.errors import InputError
from speccascade.writers import OutputSet, check_new_file

from .result import SimulationResult

FORMATS = ("png", "svg")


def plot_paths(path: str | Path) -> list[Path]:
    """PATH.png and PATH.svg (a given .png/.svg suffix is replaced, so both formats are always written)."""
    if path is None or str(path).strip() in ("", "."):
        raise InputError("--plot: empty file name (give a path such as --plot out/histogram)")
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise InputError(f"--plot {path}: names a folder; give a file name such as {path / 'histogram'}")
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    for given in dict.fromkeys((path, stem)):  # --plot /dev/null must not become /dev/null.png
        if given.is_dir() or (given.exists() and not given.is_file()):
            kind = "a folder" if given.is_dir() else "a special file (device, FIFO or socket)"
            raise InputError(f"--plot {path}: {given} is {kind}; give a file name such as out/histogram")
    return [stem.with_name(f"{stem.name}.{extension}") for extension in FORMATS]


def plot_histogram(result: SimulationResult, path: str | Path, *, force: bool = False) -> list[Path]:
    """Write the histogram of tokens per step; returns the files written (atomically; existing files are kept
    unless ``force``: both names are checked before either is written)."""
    paths = plot_paths(path)
    for output in paths:
        check_new_file(output, force=force)
    histogram = result.histogram
    tokens = np.asarray(histogram["tokens"])
    simulated = np.asarray(histogram["simulated_pmf"])
    figure = Figure(figsize=(7.0, 4.2), layout="constrained")
    axes = figure.add_subplot()
    axes.bar(tokens, simulated, width=0.8, color="#4c72b0", alpha=0.8,
             label=f"simulated ({result.steps:,} steps): mean {result.mean_tokens_per_step:.4f} "
                   f"± {1.96 * result.stderr_tokens_per_step:.4f}")
    if histogram.get("closed_form_pmf") is not None:
        axes.plot(tokens, histogram["closed_form_pmf"], "o", color="#dd8452", markersize=7,
                  label=f"closed form: mean {result.closed_form_tokens_per_step:.4f}")
    elif result.predicted_tokens_per_step:
        axes.axvline(result.predicted_tokens_per_step, color="#dd8452", linestyle="--",
                     label=f"cost model (i.i.d.) mean {result.predicted_tokens_per_step:.4f}")
    axes.axvline(result.mean_tokens_per_step, color="#4c72b0", linestyle=":", linewidth=1)
    process = result.process
    described = ", ".join(f"{key} {value}" for key, value in process.items()
                          if key in ("process", "alpha", "rho", "k", "k_tiny", "tree_nodes") and value is not None)
    axes.set_title(f"{result.strategy}: tokens per target step ({described})", fontsize=10)
    axes.set_xlabel("tokens per target step")
    axes.set_ylabel("probability")
    if tokens.size <= 40:
        axes.set_xticks(tokens)
    axes.legend(fontsize=8)
    with OutputSet(paths, force=force) as outputs:
        for output, fmt in zip(paths, FORMATS):
            outputs.write(output, lambda temporary, fmt=fmt: figure.savefig(temporary, format=fmt, dpi=120))
    return paths
