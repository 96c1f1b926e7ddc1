"""The JAX runtime on the default trio, on this machine: AR speed, bandwidth use, host overhead, speedups.

Runs ``speccascade.runtime.bench.run_bench`` (greedy decoding; every strategy; compile excluded; repeats cycle
over four Python-source prompts, round-robin over strategies) on the default trio (trained on first use), then
measures this machine's main-memory bandwidth the way ``speccascade hardware probe`` does
(:func:`speccascade.hardware.probe.matvec_bandwidth`, same matrix sizing).
Writes the trace and summary to ``--out`` and prints, as its last line, one JSON object:

* ``ar_ms_per_token``: median ms per token of greedy autoregressive decoding with the Target;
* ``bandwidth_fraction``: (Target weight bytes / AR seconds per token) / probed main-memory bandwidth
  (target >= 0.5);
* ``host_overhead_fraction``: for the vertical cascade, 1 - (microbenchmarked time of the forwards a step ran) /
  (step wall time), over all fused steps (target <= 0.10);
* ``speedup``: {strategy: median over repeats of AR ms/token / strategy ms/token, each pair decoding the same
  prompt} (target >= 2 for the best);
* ``acceptance``: {"strategy:pair": alpha}, alpha = accepted / tested draft tokens;
* ``speedup_total`` (extra): AR time over the strategy's time summed over all repeats (all prompts together,
  so a prompt the Draft predicts badly weighs in fully instead of being outvoted by the median).

The whole bench runs once per Target weight format in ``--targets`` (default fp32, then bf16): the first format's
figures are the top-level keys (float32: the format whose AR decoding streams its weights at half the probed
bandwidth); ``by_target`` holds the headline figures of each format (bf16: bfloat16 weights with float32
accumulation, 8-row matmuls; see docs/runtime-models.md, "Weight formats").

    python3 benchmarks/runtime.py [--trio DIR] [--new-tokens 128] [--repeats 8] [--out DIR] [--draft int8|fp32]
                                  [--targets fp32,bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from speccascade.runtime.bench import DEFAULT_PROMPTS, BenchConfig, run_bench
from speccascade.strategy_names import StrategyKnobs
from speccascade.runtime.trio import DRAFT_WEIGHTS, TARGET_WEIGHTS, load_default_trio

MiB = 1 << 20


def probed_bandwidth() -> tuple[float, int]:
    """Main-memory bandwidth (bytes/s) measured like ``speccascade hardware probe --quick`` sizes it."""
    from speccascade.hardware.probe import QUICK, cpu_cache_levels, dram_bytes, matvec_bandwidth

    last_level = max((level.capacity_bytes * level.instances for level in cpu_cache_levels()), default=0)
    available = dram_bytes()[1]
    matrix = min(max(QUICK.main_matrix_min_bytes, 4 * last_level), QUICK.main_matrix_max_bytes,
                 max(available // 4, 16 * MiB))
    return matvec_bandwidth(matrix, repeats=5)


def measure(trio, target: str, args, out: Path, bandwidth: float) -> dict:
    """One full bench with the Target's weights in ``target``; the JSON fields for that run."""
    models = trio.models(target=target, draft=args.draft)
    config = BenchConfig(strategies=tuple(args.strategies.split(",")),
                         knobs=StrategyKnobs(k=args.k, k_tiny=args.k_tiny, filter_width=args.filter_width),
                         new_tokens=args.new_tokens, repeats=args.repeats, staged_repeats=args.staged_repeats,
                         extra={"draft_weights": args.draft, "target_weights": target})
    prompts = [[trio.tokenizer.eot_id] + trio.tokenizer.encode(text) for text in DEFAULT_PROMPTS]
    out.mkdir(parents=True, exist_ok=True)
    summary = run_bench(models, prompts, config, out / "trace.jsonl", out / "summary.json",
                        progress=os.isatty(2), command="benchmarks/runtime.py")
    strategies = summary.strategies
    ar_ms = strategies["autoregressive"].ms_per_token.median
    achieved = models["target"].param_bytes / (ar_ms / 1e3)
    return {
        "ar_ms_per_token": ar_ms,
        "bandwidth_fraction": achieved / bandwidth,
        "host_overhead_fraction": strategies["vertical-budget"].host_overhead_fraction,
        "speedup": {name: item.speedup for name, item in strategies.items() if name != "autoregressive"},
        "acceptance": {f"{name}:{pair}": value.alpha for name, item in strategies.items()
                       for pair, value in item.acceptance.items()},
        "speedup_total": {name: item.speedup_total for name, item in strategies.items()
                               if name != "autoregressive"},
        "ms_per_token": {name: item.ms_per_token.median for name, item in strategies.items()},
        "host_overhead": {name: item.host_overhead_fraction for name, item in strategies.items()},
        "achieved_bandwidth_gb_s": achieved / 1e9,
        "param_bytes": {info.role: info.param_bytes for info in summary.models},
        "backend": f"{summary.hardware.backend}:{summary.hardware.device_kind}",
        "trace": str(out / "trace.jsonl"),
        "summary": str(out / "summary.json"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trio", type=Path, default=None)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2 * len(DEFAULT_PROMPTS),
                        help="generations per strategy; repeat r decodes prompt r mod 4")
    parser.add_argument("--staged-repeats", type=int, default=1)
    parser.add_argument("--draft", choices=DRAFT_WEIGHTS, default="fp32")
    parser.add_argument("--targets", default="fp32,bf16",
                        help="Target weight formats to bench, the first one reported at the top level")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--k-tiny", type=int, default=3)
    parser.add_argument("--filter-width", type=int, default=64)
    parser.add_argument("--strategies", default="autoregressive,speculative,vertical-budget:k=6,vertical:k=2,filtered",
                        help="NAME or NAME:knob=value:... each (the vertical-budget at k=6 is the former cascade)")
    parser.add_argument("--out", type=Path, default=None, help="trace/summary directory (default: a temp dir)")
    args = parser.parse_args()
    targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    if not targets or any(name not in TARGET_WEIGHTS for name in targets):
        parser.error(f"--targets takes {' and/or '.join(TARGET_WEIGHTS)}, got {args.targets!r}")
    trio = load_default_trio(args.trio)
    out = args.out or Path(tempfile.mkdtemp(prefix="speccascade-runtime-"))
    bandwidth, matrix_bytes = probed_bandwidth()
    by_target = {target: measure(trio, target, args, out / target, bandwidth) for target in targets}
    headline = by_target[targets[0]]
    result = {**headline, "target_weights": targets[0],
              "by_target": {name: {key: fields[key] for key in ("ar_ms_per_token", "bandwidth_fraction",
                                                                "host_overhead_fraction", "speedup",
                                                                "speedup_total", "ms_per_token")}
                            for name, fields in by_target.items()},
              "probed_bandwidth_gb_s": bandwidth / 1e9, "probe_matrix_mib": matrix_bytes / MiB,
              "config": {"draft": args.draft, "targets": targets, "strategies": args.strategies, "k": args.k,
                         "k_tiny": args.k_tiny, "filter_width": args.filter_width, "new_tokens": args.new_tokens,
                         "repeats": args.repeats}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
