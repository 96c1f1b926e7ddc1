"""Host overhead of a decoding step: the share of its wall time spent outside model forwards.

For a few real steps of a strategy (from a fixed state, so each can be rerun), two jitted calls are timed in
alternation, ``repeats`` times each, and their medians compared:

* the fused step itself on a fresh copy of the state (donated, as in decoding), including its dispatch and the
  one-vector statistics transfer (what decoding pays);
* the same step's model forwards only (:meth:`DecodingStrategy.forward_plan`: the roles and token counts that step ran, at
  the step's context, every logit consumed so XLA cannot drop part of the output layer, each forward's tokens
  taken from the previous forward's argmax so they run one after the other as in the step, not overlapped across
  cores; a Draft that computes only m output columns, as in the filtered cascade, computes m here too), repeated
  ``chain`` times inside one jit and divided by ``chain``, so dispatch is not counted.

    host_overhead_fraction = 1 - sum_steps forwards_ms / sum_steps step_ms

What remains is sampling and verification arithmetic, buffer updates, loop control, dispatch and the statistics
copy. Measuring both back to back keeps machine noise (other processes) mostly out of the ratio.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .api import with_position
from .decoding import Decoder
from .decoding.decoder import pack_stats


def _forwards_only(decoder: Decoder, plan: tuple[tuple[str, int], ...], chain: int):
    strategy = decoder.strategy
    index = {role: position for position, role in enumerate(strategy.roles)}

    @jax.jit
    def run(params, caches, context):
        def body(step, carry):
            previous, caches = carry
            caches = list(caches)
            for role, count in plan:
                i = index[role]
                model = strategy.models[i]
                # each forward's tokens come from the previous forward's output, as in a real step: the forwards
                # run one after the other (no overlap across cores) and none can be hoisted out of the loop
                tokens = ((previous + step + jnp.arange(count)) % model.vocab_size)[None, :].astype(jnp.int32)
                columns = strategy.output_columns(role)
                if columns is None:
                    logits, caches[i] = model.forward(params[i], with_position(caches[i], context), tokens)
                else:  # the filtered cascade's Draft: m output columns (ids depend on the previous forward too)
                    ids = ((previous + jnp.arange(columns)) % model.vocab_size).astype(jnp.int32)
                    logits, caches[i] = model.forward_columns(params[i], with_position(caches[i], context), tokens,
                                                              ids)
                previous = jnp.argmax(logits[0, -1]).astype(jnp.int32) + (jnp.max(logits) > jnp.inf)
            return previous, tuple(caches)

        return jax.lax.fori_loop(0, chain, body, (jnp.zeros((), jnp.int32), tuple(caches)))

    return run


def _time(call, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def host_overhead(decoder: Decoder, prompt: Sequence[int], seed: int = 0, steps: int = 6, repeats: int = 7,
                  chain: int = 4) -> dict[str, float]:
    """Measure ``steps`` consecutive steps from ``prompt``; returns the fraction and the summed medians (ms)."""
    strategy = decoder.strategy
    step = jax.jit(lambda params, state: pack_stats(decoder.step_fn(params, state)), donate_argnums=(1,))
    copy = jax.jit(lambda state: jax.tree_util.tree_map(jnp.copy, state))
    state = decoder.start(prompt, seed)
    forwards_cache: dict[tuple, object] = {}
    step_total = forward_total = 0.0
    for index in range(steps):
        context = len(prompt) if index == 0 else int(np.asarray(state["packed"])[0])
        after = step(strategy.params, copy(state))
        stats, _ = decoder.unpack_stats(np.asarray(after["packed"]), index, 0.0)
        plan = tuple(strategy.forward_plan({name: pair.proposed for name, pair in stats.pairs.items()}))
        if plan not in forwards_cache:
            forwards_cache[plan] = _forwards_only(decoder, plan, chain)
        forwards = forwards_cache[plan]
        caches, position = state["caches"], jnp.asarray(context, jnp.int32)
        jax.block_until_ready(forwards(strategy.params, caches, position))  # compile
        step_ms, forward_ms = [], []
        for _ in range(repeats):  # alternate, so both see the same machine conditions
            fresh = jax.block_until_ready(copy(state))  # the step donates (updates in place) as in decoding
            step_ms += _time(lambda: np.asarray(step(strategy.params, fresh)["packed"]), 1)
            forward_ms += _time(lambda: jax.block_until_ready(forwards(strategy.params, caches, position)), 1)
        step_total += statistics.median(step_ms)
        forward_total += statistics.median(forward_ms) / chain
        state = after
    return {"host_overhead_fraction": 1.0 - forward_total / step_total, "step_ms": step_total / steps,
            "forward_ms": forward_total / steps}
