"""Decoding heads on this machine: per variant, held-out top-1 per head, measured tokens per step and speedup over
autoregressive decoding at the best tree size, and the cost model's predicted tokens per step there.

Uses the trio in ``--trio`` (default: ``$SPECCASCADE_HOME/trio`` when it is trained, else
``$SPECCASCADE_HOME/trio-small``, trained on first use with the small plan, a few minutes) and its heads
(``<trio>/heads``, trained on first use: every variant identically), then runs
:func:`speccascade.runtime.heads.bench.bench_heads` (greedy decoding of held-out prompts, every variant at every
tree size, round-robin with autoregressive decoding). Prints the table, then as its last line one JSON object:

    {"variants": {NAME: {"top1": [head 1, head 2, ...], "mean_accepted": tokens per step at the best size,
                         "predicted_accepted": the cost model's tokens per step there (independent heads over the
                         measured accuracies), "speedup": measured, "best_tree_nodes": N,
                         "predicted_speedup": ..., "replay": ...}},
     "ar_ms_per_token": ..., "sizes": [...], "trio": DIR}

    python3 benchmarks/heads.py [--trio DIR] [--sizes 1,2,4,8,16,32,64] [--new-tokens 64] [--prompts 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from speccascade.hardware.registry import user_home
from speccascade.runtime.heads.bench import SIZES, bench_heads
from speccascade.runtime.heads.model import VARIANTS
from speccascade.runtime.heads.report import bench_table
from speccascade.runtime.heads.train import load_heads, small_trio_plan
from speccascade.runtime.trio import load_trio, train_trio


def default_trio() -> Path:
    trained = user_home() / "trio"
    return trained if (trained / "manifest.json").is_file() else user_home() / "trio-small"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trio", type=Path, default=None)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = args.trio or default_trio()
    if not (path / "manifest.json").is_file():
        train_trio(path, plan=small_trio_plan())
    trio = load_trio(path)
    models = {variant: load_heads(trio, variant, path) for variant in VARIANTS}
    prompts = next(iter(models.values())).metadata["data"]["heldout_prompts"][:args.prompts]
    sizes = tuple(int(part) for part in args.sizes.split(","))
    out = args.out or Path(tempfile.mkdtemp(prefix="heads-bench-"))
    result = bench_heads(trio, models, prompts, sizes, args.new_tokens, out=out)
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    print("\n".join(bench_table(result)))
    line = {"variants": {}, "ar_ms_per_token": result["ar_ms_per_token"], "sizes": list(sizes), "trio": str(path)}
    for variant, entry in result["variants"].items():
        best = entry["sizes"][str(entry["best_tree_nodes"])]
        line["variants"][variant] = {"top1": entry["top1"], "mean_accepted": best["mean_tokens_per_step"],
                                     "predicted_accepted": best["predicted_accepted"], "speedup": best["speedup"],
                                     "best_tree_nodes": entry["best_tree_nodes"],
                                     "predicted_speedup": best["predicted_speedup"], "replay": best["replay"]}
    print(json.dumps(line))


if __name__ == "__main__":
    main()
