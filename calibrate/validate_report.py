"""Outputs of a trace validation: the parity plot (PNG and SVG) and one self-contained HTML page.

The page embeds its plot as a base64 PNG (no external files, no scripts), with the summary and the per-configuration
table; a browser opens it offline. Files go through the output layer (no overwrite without ``force``, atomic).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from matplotlib.figure import Figure

from speccascade.errors import InputError
from speccascade.writers import OutputSet, check_new_file, output_dir

from .validate_traces import Validation


def parity_figure(validation: Validation) -> Figure:
    """Predicted vs measured ms/token, calibrated and uncalibrated, with the identity line."""
    figure = Figure(figsize=(6.0, 5.0), layout="constrained")
    axes = figure.add_subplot()
    measured = [row.measured_ms for row in validation.rows]
    axes.scatter(measured, [row.uncalibrated_ms for row in validation.rows], marker="x", color="#999999",
                 label="uncalibrated (datasheet / probe)")
    axes.scatter(measured, [row.predicted_ms for row in validation.rows], color="#4c72b0", label="calibrated")
    for row in validation.rows:
        axes.annotate(row.label, (row.measured_ms, row.predicted_ms), fontsize=6, alpha=0.7)
    values = measured + [row.predicted_ms for row in validation.rows] + [row.uncalibrated_ms for row in validation.rows]
    low, high = min(values) * 0.8, max(values) * 1.25
    axes.plot([low, high], [low, high], "k--", linewidth=1, label="predicted = measured")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("measured ms/token (held-out configurations)")
    axes.set_ylabel("predicted ms/token")
    summary = validation.summary()
    axes.set_title(f"held out: {summary['n_heldout']}; median APE {summary['median_ape']:.1%} "
                   f"(uncalibrated {summary['uncalibrated_median_ape']:.1%})", fontsize=9)
    axes.legend(fontsize=8)
    return figure


def plot_paths(path: str | Path) -> list[Path]:
    """PATH.png and PATH.svg (a given .png/.svg suffix replaced); an empty path is refused in one line."""
    if path is None or str(path).strip() in ("", "."):
        raise InputError("--plot: empty file name (give a path such as --plot parity)")
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    for given in dict.fromkeys((path, stem)):  # --plot /dev/null must not become /dev/null.png
        if given.is_dir() or (given.exists() and not given.is_file()):
            kind = "a folder" if given.is_dir() else "a special file (device, FIFO or socket)"
            raise InputError(f"--plot {path}: {given} is {kind}; give a file name such as out/parity")
    return [stem.with_name(f"{stem.name}.png"), stem.with_name(f"{stem.name}.svg")]


def report_path(directory: str | Path) -> Path:
    """DIR/validate.html (the folder checked, and made if missing)."""
    return output_dir(directory) / "validate.html"


def write_plot(validation: Validation, path: str | Path, *, force: bool = False) -> list[Path]:
    paths = plot_paths(path)
    for target in paths:
        check_new_file(target, force=force)
    figure = parity_figure(validation)
    with OutputSet(paths, force=force) as outputs:
        for target, fmt in zip(paths, ("png", "svg")):
            outputs.write(target, lambda temporary, fmt=fmt: figure.savefig(temporary, format=fmt, dpi=120))
    return paths


def _png_data(validation: Validation) -> str:
    buffer = io.BytesIO()
    parity_figure(validation).savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def page(validation: Validation, title: str = "speccascade validate") -> str:
    """The HTML page (self-contained: the plot is embedded)."""
    summary = validation.summary()
    esc = html.escape

    def cell(value) -> str:
        if value is None:
            return "<td>-</td>"
        if isinstance(value, float):
            return f"<td>{value:.4g}</td>"
        return f"<td>{esc(str(value))}</td>"

    rows = "\n".join(
        "<tr>" + "".join(cell(value) for value in (row.label, row.measured_ms, row.predicted_ms, f"{row.ape:.1%}",
                                                   row.uncalibrated_ms, f"{row.uncalibrated_ape:.1%}",
                                                   row.measured_speedup, row.predicted_speedup)) + "</tr>"
        for row in validation.rows)
    facts = "\n".join(f"<li>{esc(name)}: {esc(str(value))}</li>" for name, value in summary.items())
    fitted = ", ".join(f"{esc(name)} {value:.4g}" for name, value in validation.acceptance.items())
    notes = "".join(f"<li>{esc(note)}</li>" for note in validation.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{esc(title)}</h1>
<h2>Summary</h2><ul>{facts}</ul>
<p>Fitted on: {esc(', '.join(validation.fit_on))}. Acceptance (fit-on only): {fitted}. Forward-time fit residual
rms {validation.forward_residual_rms:.1%}.</p>
<h2>Parity</h2><img alt="predicted vs measured ms/token" src="data:image/png;base64,{_png_data(validation)}">
<h2>Held-out configurations</h2>
<table><tr><th>configuration</th><th>measured ms/token</th><th>predicted</th><th>APE</th><th>uncalibrated</th>
<th>APE</th><th>measured speedup</th><th>predicted speedup</th></tr>
{rows}
</table>
<ul>{notes}</ul>
</body></html>
"""


def write_report(validation: Validation, directory: str | Path, *, force: bool = False) -> Path:
    target = report_path(directory)
    with OutputSet([target], force=force) as outputs:
        outputs.write(target, lambda temporary: temporary.write_text(page(validation), encoding="utf-8"))
    return target
