"""The Monte-Carlo loop: chunks of (rows x lanes) steps, bounded memory, reproducible from one seed.

Layout: ``lanes`` independent token streams advance together; a chunk samples ``rows`` consecutive steps of every
lane (stateful processes carry each lane's state from row to row and chunk to chunk). Lanes are split between two
fixed *streams* (each its own ``numpy.random.Generator`` spawned from the seed), sampled on two threads: numpy
releases the GIL inside its bulk random fills and ufuncs. The result depends on the seed only, not on the machine.

Estimates: mean tokens per step = total tokens / total steps; its standard error from the spread of the lanes'
means (lanes are independent; each lane's own autocorrelation, e.g. Markov bursts, is inside its mean), so
stderr ~ 1 / sqrt(steps). Milliseconds per token = total time / total tokens (a ratio; delta-method stderr over
lanes). Percentiles (p50/p95/p99) are over N-token requests (:mod:`.requests`).
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from speccascade.errors import InputError
from speccascade.limits import MAX_REQUEST_TOKENS, MAX_SIMULATED_STEPS

from .requests import RequestCutter
from .steps import StepModel

STREAMS = 2
STATELESS_LANES = 4096
STATEFUL_LANES = 65536
CHUNK_ELEMENTS = 1 << 22       # steps per chunk, divided by the per-step width (K for per-position samplers)


@dataclass
class Tally:
    """Running sums of one stream."""

    lanes: int
    max_tokens: int
    histogram: np.ndarray = field(init=False)
    lane_tokens: np.ndarray = field(init=False)
    lane_ms: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.histogram = np.zeros(self.max_tokens + 1, dtype=np.int64)
        self.lane_tokens = np.zeros(self.lanes, dtype=np.float64)
        self.lane_ms = np.zeros(self.lanes, dtype=np.float64)

    def add(self, tokens: np.ndarray, step_ms) -> None:
        self.histogram += histogram(tokens, self.max_tokens)
        self.lane_tokens += tokens.sum(axis=0, dtype=np.int64)
        if np.ndim(step_ms) == 2:
            self.lane_ms += np.asarray(step_ms).sum(axis=0, dtype=np.float64)
        else:
            self.lane_ms += tokens.shape[0] * float(step_ms)


def histogram(tokens: np.ndarray, max_tokens: int) -> np.ndarray:
    """Counts of 0..max_tokens. uint8 input is counted two values at a time (pairs viewed as uint16), which
    halves the work of ``bincount``."""
    flat = tokens.reshape(-1)
    if flat.dtype == np.uint8 and flat.size >= 2:
        even = flat[: flat.size - flat.size % 2]
        pairs = np.bincount(even.view(np.uint16), minlength=65536).reshape(256, 256)
        counts = pairs.sum(axis=0) + pairs.sum(axis=1)
        if flat.size % 2:
            counts[flat[-1]] += 1
    else:
        counts = np.bincount(flat, minlength=max_tokens + 1)
    return counts[: max_tokens + 1]


@dataclass
class RawRun:
    """Everything the loop measured (combined over streams); :mod:`.result` turns it into statistics."""

    steps: int
    lanes: int
    rows: int
    histogram: np.ndarray
    lane_tokens: np.ndarray
    lane_ms: np.ndarray
    request_ms: np.ndarray
    request_steps: np.ndarray
    seconds: float


class _Progress:
    """A rich progress bar on stderr, started only once a run is projected to take over ``after_s`` seconds."""

    def __init__(self, enabled: bool | None, total_rows: int, after_s: float = 2.0):
        self.enabled, self.total, self.after_s = enabled, total_rows, after_s
        self.started, self.bar, self.task = time.perf_counter(), None, None

    def update(self, done_rows: int) -> None:
        if self.enabled is False:
            return
        if self.bar is None:
            elapsed = time.perf_counter() - self.started
            projected = elapsed / max(done_rows, 1) * self.total
            if not (self.enabled or (projected > self.after_s and sys.stderr.isatty())):
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("steps", total=self.total)
        self.bar.update(self.task, completed=done_rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _lane_count(model: StepModel, steps: int, tokens_per_request: int) -> int:
    """Many lanes make row-wise (stateful) sampling efficient; long lanes let N-token requests complete (each lane
    gets about 4 N steps when steps allow) and at least 64 lanes keep the standard error estimate sound."""
    wanted = STATEFUL_LANES if model.stateful() else STATELESS_LANES
    return max(STREAMS, min(wanted, max(64, steps // (4 * tokens_per_request)), steps))


def run(model: StepModel, steps: int, seed: int = 0, *, tokens_per_request: int = 256, width: int = 1,
        max_requests: int = 200_000, progress: bool | None = None, threads: int | None = None) -> RawRun:
    """Simulate at least ``steps`` steps of ``model`` (rounded up to whole rows of lanes).

    ``width``: elements sampled per step (K for per-position samplers), to keep each chunk near
    ``CHUNK_ELEMENTS`` numbers. ``progress``: True / False / None (auto: a bar for runs projected over 2 s on a
    terminal). ``threads``: worker threads for the two streams (default: 2 if the machine has 2 cores).
    """
    if not 1 <= steps <= MAX_SIMULATED_STEPS:
        raise InputError(f"steps must lie in [1, {MAX_SIMULATED_STEPS:,}], got {steps}")
    if not 1 <= tokens_per_request <= MAX_REQUEST_TOKENS:
        raise InputError(f"tokens per request must lie in [1, {MAX_REQUEST_TOKENS:,}], got {tokens_per_request}")
    lanes = _lane_count(model, steps, tokens_per_request)
    split = np.array_split(np.arange(lanes), STREAMS)
    total_rows = math.ceil(steps / lanes)
    chunk_rows = max(1, CHUNK_ELEMENTS // max(1, width) // lanes)
    generators = [np.random.Generator(np.random.PCG64(child)) for child in np.random.SeedSequence(seed).spawn(STREAMS)]
    states = [model.initial_state(generator, part.size) for generator, part in zip(generators, split)]
    tallies = [Tally(part.size, model.max_tokens) for part in split]
    cutters = [RequestCutter(part.size, tokens_per_request, max_requests // STREAMS + 1) for part in split]
    threads = threads or min(STREAMS, _cores())
    started = time.perf_counter()
    bar = _Progress(progress, total_rows)

    def work(index: int, rows: int) -> None:
        block = model.sample(generators[index], rows, split[index].size, states[index])
        states[index] = block.state
        tallies[index].add(block.tokens, block.step_ms)
        cutters[index].add(block.tokens, block.step_ms)

    done = 0
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            while done < total_rows:
                rows = min(chunk_rows, total_rows - done)
                if threads > 1:
                    list(pool.map(work, range(STREAMS), [rows] * STREAMS))
                else:
                    for index in range(STREAMS):
                        work(index, rows)
                done += rows
                bar.update(done)
    finally:
        bar.close()
    requests = [cutter.results() for cutter in cutters]
    return RawRun(steps=total_rows * lanes, lanes=lanes, rows=total_rows,
                  histogram=sum(tally.histogram for tally in tallies),
                  lane_tokens=np.concatenate([tally.lane_tokens for tally in tallies]),
                  lane_ms=np.concatenate([tally.lane_ms for tally in tallies]),
                  request_ms=np.concatenate([latency for latency, _ in requests])[:max_requests],
                  request_steps=np.concatenate([count for _, count in requests])[:max_requests],
                  seconds=time.perf_counter() - started)


def _cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
