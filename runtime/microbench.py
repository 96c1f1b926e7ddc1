"""Forward-time microbenchmarks: each model over T = 1..T_max new tokens at several context lengths.

These are the calibration inputs for the cost model's forward-time expression. Two numbers per point:

* ``ms``: device time of one forward with the dispatch amortized: ``chain`` forwards run inside one jitted
  ``lax.fori_loop`` at the same position, threading the cache, each forward's tokens taken from the previous
  forward's argmax and every logit consumed (so forwards cannot overlap across cores and XLA can neither hoist
  nor prune any of them); ms = wall / chain, median over repeats (min and max kept);
* ``call_ms`` (T = 1 only, to bound compile time): one dispatched and awaited forward call, the per-call cost a
  Python-driven loop pays.

The context is a traced argument, so one compile per (model, T) covers every context length.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from speccascade.errors import InputError
from speccascade.traces import ForwardRecord

from .api import CausalLM, with_position


def _median_ms(call: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    call()  # warm-up (compile)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), min(samples), max(samples)


def time_forwards(model: CausalLM, role: str, tokens: Sequence[int], contexts: Sequence[int], capacity: int,
                  repeats: int = 5, chain: int = 8,
                  on_record: Callable[[ForwardRecord], None] | None = None) -> list[ForwardRecord]:
    """Time ``model``'s forward for every T in ``tokens`` and every context in ``contexts``."""
    if capacity > model.max_len:
        raise InputError(f"microbench capacity {capacity} exceeds model '{model.name}' max_len {model.max_len}")
    for context in contexts:
        if context + max(tokens) > capacity:
            raise InputError(f"context {context} + {max(tokens)} tokens exceed the capacity {capacity}")
    cache = model.init_cache(1, capacity)
    records = []
    for count in tokens:
        @jax.jit
        def chained(params, cache, context, count=count):
            def body(step, carry):
                previous, cache = carry
                # tokens come from the previous forward's argmax: forwards run one after the other (no overlap
                # across cores, nothing hoisted out of the loop); every logit is consumed (no pruned head)
                ids = ((previous + step + jnp.arange(count)) % model.vocab_size)[None, :].astype(jnp.int32)
                logits, cache = model.forward(params, with_position(cache, context), ids)
                return jnp.argmax(logits[0, -1]).astype(jnp.int32) + (jnp.max(logits) > jnp.inf), cache
            return jax.lax.fori_loop(0, chain, body, (jnp.zeros((), jnp.int32), cache))

        token_ids = jnp.zeros((1, count), jnp.int32)
        single = jax.jit(lambda params, cache, context, token_ids=token_ids:
                         model.forward(params, with_position(cache, context), token_ids)[0])
        for context in contexts:
            position = jnp.asarray(context, jnp.int32)
            ms, ms_min, ms_max = _median_ms(lambda: chained(model.params, cache, position), repeats)
            call_ms = None
            if count == 1:
                call_ms = _median_ms(lambda: single(model.params, cache, position), repeats)[0]
            record = ForwardRecord(model=model.name, role=role, tokens=count, context=context, ms=ms / chain,
                                   ms_min=ms_min / chain, ms_max=ms_max / chain, call_ms=call_ms, repeats=repeats,
                                   param_bytes=model.param_bytes)
            records.append(record)
            if on_record is not None:
                on_record(record)
    return records


def achieved_gb_s(record: ForwardRecord) -> float:
    """Weight bytes streamed per second of one forward (param bytes / ms), in GB/s."""
    return record.param_bytes / (record.ms * 1e-3) / 1e9 if record.ms > 0 else 0.0


def run_microbench(models: dict[str, CausalLM], tokens: Sequence[int], contexts: Sequence[int],
                   trace_path, *, repeats: int = 5, chain: int = 8, chip: str | None = None, command: str = "",
                   notes: Sequence[str] = (), config: dict | None = None,
                   on_record: Callable[[ForwardRecord], None] | None = None,
                   force: bool = True) -> list[ForwardRecord]:
    """Time every model (role -> CausalLM, all resident together, as the header says) over ``tokens`` x
    ``contexts`` and write a schema-v2 trace of ``forward`` records (:mod:`speccascade.traces`) that
    calibration reads: the header names the chip (``chip``, else this machine's cached probe) and carries every
    model's profile; random-weight models are named so in their names and in the header's notes."""
    import datetime
    import uuid

    from speccascade.traces import Header, TraceWriter

    from .bench import chip_for_header, hardware_info, model_infos

    tokens, contexts = sorted(set(int(t) for t in tokens)), sorted(set(int(c) for c in contexts))
    if not tokens or min(tokens) < 1 or not contexts or min(contexts) < 0:
        raise InputError("microbench needs token counts >= 1 and contexts >= 0")
    if repeats < 1 or chain < 1:
        raise InputError("microbench needs --repeats >= 1 and --chain >= 1")
    capacity = max(contexts) + max(tokens)
    for role, model in models.items():
        if capacity > model.max_len:
            raise InputError(f"context {max(contexts)} + {max(tokens)} tokens exceed {role} '{model.name}' "
                             f"max_len {model.max_len}")
    hardware = hardware_info()
    chip_value, chip_notes = chip_for_header(chip, hardware)
    infos, info_notes = model_infos(models)
    header = Header(run_id=uuid.uuid4().hex[:12],
                    created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    command=command, chip=chip_value, hardware=hardware, models=infos,
                    notes=[*chip_notes, *info_notes, *notes],
                    config={"microbench": {"tokens": tokens, "contexts": contexts, "repeats": repeats,
                                           "chain": chain, "capacity": capacity}, **(config or {})})
    records: list[ForwardRecord] = []
    with TraceWriter(trace_path, header, force=force) as writer:
        def write(record: ForwardRecord) -> None:
            writer.write(record)
            records.append(record)
            if on_record is not None:
                on_record(record)

        for role, model in models.items():
            time_forwards(model, role, tokens, contexts, capacity, repeats=repeats, chain=chain, on_record=write)
    return records
