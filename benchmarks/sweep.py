"""A sweep of about a million configurations: evaluation, each table format, and the plots, timed separately.

The grid is the seed paper's headline setup (TPU v5e x2, Gemma-7B, Gemma-2B int8, Tiny 10M) over alpha (40 values),
alpha_tiny (25), K (25), k_tiny (10) and four strategies = 1,000,000 rows. Prints one JSON object:
{"rows", "evaluate_s", "configs_per_s", "write_s": {fmt: s}, "bytes": {fmt: n}, "plot_s", "plots"}.

    python3 benchmarks/sweep.py [--out DIR] [--no-plots]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from speccascade.costmodel.config import HEADLINE
from speccascade.costmodel.search.plots import plot_all
from speccascade.costmodel.search.sweep import SweepSpec, parse_axis, run_sweep

GRID = ("alpha=0.60:0.99:0.01", "alpha_tiny=0.50:0.98:0.02", "k=1:25", "k_tiny=1:10",
        "strategy=autoregressive,speculative,vertical,filtered")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None, help="Directory for the files (default: a temp dir).")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="speccascade-sweep-"))
    spec = SweepSpec(HEADLINE, dict(parse_axis(text) for text in GRID))
    started = time.perf_counter()
    table = run_sweep(spec)
    evaluate_s = time.perf_counter() - started
    write_s, sizes = {}, {}
    for fmt in ("csv", "json", "parquet"):
        started = time.perf_counter()
        path = table.write(out, (fmt,)).get(fmt)
        write_s[fmt] = time.perf_counter() - started
        sizes[fmt] = path.stat().st_size if path else None
    plots, plot_s = {}, 0.0
    if not args.no_plots:
        started = time.perf_counter()
        plots = {name: ([str(p) for p in value] if isinstance(value, list) else value)
                 for name, value in plot_all(spec, table, out).items()}
        plot_s = time.perf_counter() - started
    print(json.dumps({"rows": len(table), "evaluate_s": evaluate_s, "configs_per_s": len(table) / evaluate_s,
                      "write_s": write_s, "bytes": sizes, "plot_s": plot_s, "plots": plots, "out": str(out)},
                     indent=2))


if __name__ == "__main__":
    main()
