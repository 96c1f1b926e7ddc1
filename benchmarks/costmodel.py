"""Throughput of the vectorized cost model: 3-stage (vertical cascade) predictions per second.

Compares one vectorized ``evaluate`` call over N configurations (alpha, alpha_tiny, K, K_tiny, batch, context all
varying) against a Python loop calling the same model once per configuration. Prints one JSON object:
{"configs_per_s": ..., "loop_configs_per_s": ..., "configs": N, ...}. Target: >= 5 million configs/s on 2 cores.

    python3 benchmarks/costmodel.py [--configs 2000000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import evaluate
from speccascade.costmodel.timings import stage_timings


def grid(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"alpha": rng.uniform(0.3, 0.99, count), "alpha_tiny": rng.uniform(0.3, 0.99, count),
            "k": rng.integers(1, 13, count).astype(float), "k_tiny": rng.integers(1, 7, count).astype(float)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, default=2_000_000)
    parser.add_argument("--loop-configs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = PredictConfig(hardware="tpu-v5e", chips=2, target="gemma-7b", draft="gemma-2b:int8", tiny="tiny-10m",
                           alpha=0.9, alpha_tiny=0.85)
    timings = stage_timings(config, verify_tokens=config.k * (config.k_tiny + 1) + 1)
    arrays = grid(args.configs)
    evaluate("vertical", config, timings, **{name: values[:1000] for name, values in arrays.items()})  # warm
    best = np.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = evaluate("vertical", config, timings, **arrays)
        best = min(best, time.perf_counter() - start)
    assert np.all(np.isfinite(result["ms_per_token"]))
    loop = grid(args.loop_configs, seed=1)
    start = time.perf_counter()
    for index in range(args.loop_configs):
        evaluate("vertical", config, timings, **{name: float(values[index]) for name, values in loop.items()})
    loop_s = time.perf_counter() - start
    print(json.dumps({"configs_per_s": args.configs / best, "loop_configs_per_s": args.loop_configs / loop_s,
                      "configs": args.configs, "vectorized_s": best, "strategy": "vertical",
                      "target_configs_per_s": 5e6}))


if __name__ == "__main__":
    main()
