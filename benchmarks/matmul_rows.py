"""Why bfloat16 decoding matmuls are padded to 8 rows: XLA:CPU matmul time by row count and weight format.

Twelve [2816, 512] weights (the default Target's fused gate/up shape; 69 MB as float32, beyond the L2 cache) are
multiplied by an activation of R rows, R = 1, 2, 4, 6, 8, in one jitted function; float32 (x W^T), and bfloat16
weights with float32 accumulation (the activation cast to bfloat16). Each variant runs ``--rounds`` times,
round-robin (so that load from other processes hits them alike); the minimum and median wall times are printed as
one JSON object, {"float32": {R: [min_ms, median_ms]}, "bfloat16": {...}}.

    python3 benchmarks/matmul_rows.py [--rounds 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

ROWS = (1, 2, 4, 6, 8)


def product(weights, x):
    total = jnp.zeros((), jnp.float32)
    for kernel in weights:
        y = jax.lax.dot_general(x.astype(kernel.dtype), kernel, (((1,), (1,)), ((), ())),
                                preferred_element_type=jnp.float32)
        total = total + y[:, :8].sum()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    weights32 = [jnp.asarray(rng.standard_normal((2816, 512)), jnp.float32) for _ in range(12)]
    formats = {"float32": weights32, "bfloat16": [w.astype(jnp.bfloat16) for w in weights32]}
    fn = jax.jit(product)
    cases = {(name, rows): (weights, jnp.ones((rows, 512), jnp.float32))
             for name, weights in formats.items() for rows in ROWS}
    for weights, x in cases.values():
        jax.block_until_ready(fn(weights, x))  # compile
    samples = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case, (weights, x) in cases.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(weights, x))
            samples[case].append((time.perf_counter() - start) * 1e3)
    result = {name: {rows: [round(min(samples[(name, rows)]), 3), round(statistics.median(samples[(name, rows)]), 3)]
                     for rows in ROWS} for name in formats}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
