"""Request latency: cut each lane's stream of steps into N-token generations.

A request ends at the first step whose cumulative tokens reach N (the surplus of that last step is discarded:
the answer is complete), and the next request starts with the following step. Lanes are cut in parallel: each
iteration finds, for every lane, where its current request ends, with one ``searchsorted`` over all lanes' cumulative
token counts laid end to end (lane l's values offset by l x a bound, so the whole array is increasing). A request
still open at the end of a chunk carries its tokens, steps and milliseconds into the next chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RequestCutter:
    """Per-lane carry of the open request; completed requests' (ms, steps) accumulate in lists."""

    lanes: int
    tokens_per_request: int
    max_requests: int = 200_000
    open_tokens: np.ndarray = field(init=False)
    open_steps: np.ndarray = field(init=False)
    open_ms: np.ndarray = field(init=False)
    latencies_ms: list[np.ndarray] = field(default_factory=list, init=False)
    steps: list[np.ndarray] = field(default_factory=list, init=False)
    count: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.open_tokens = np.zeros(self.lanes, dtype=np.int64)
        self.open_steps = np.zeros(self.lanes, dtype=np.int64)
        self.open_ms = np.zeros(self.lanes, dtype=np.float64)

    @property
    def full(self) -> bool:
        return self.count >= self.max_requests

    def add(self, tokens: np.ndarray, step_ms: float | np.ndarray) -> None:
        """Consume one block of steps: ``tokens`` (rows, lanes); ``step_ms`` a number or (rows, lanes)."""
        if self.full:
            return
        rows, lanes = tokens.shape
        bound = rows * int(tokens.max()) + self.tokens_per_request + 1
        wide = lanes * bound >= 2**31
        dtype = np.int64 if wide else np.int32
        lane_major = np.ascontiguousarray(tokens.T)                          # (lanes, rows)
        cumulative = np.cumsum(lane_major, axis=1, dtype=dtype)              # inclusive, C-contiguous
        variable_time = np.ndim(step_ms) == 2
        if variable_time:
            elapsed = np.cumsum(np.ascontiguousarray(np.asarray(step_ms, dtype=np.float64).T), axis=1)
        offsets = np.arange(lanes, dtype=dtype) * dtype(bound)
        flat = cumulative + offsets[:, None]
        flat = flat.reshape(-1)
        # the last boundary of each lane, relative to this chunk: tokens, step index, milliseconds
        base_tokens = -self.open_tokens
        base_step = -1 - self.open_steps
        base_ms = -self.open_ms
        active = np.arange(lanes)
        while active.size and not self.full:
            target = (offsets[active] + base_tokens[active] + self.tokens_per_request).astype(dtype)
            end = np.searchsorted(flat, target, side="left") - active * rows
            done = end < rows
            finished, end = active[done], end[done]
            if finished.size:
                steps = end - base_step[finished]
                ends_ms = elapsed[finished, end] if variable_time else (end + 1) * float(step_ms)
                ms = ends_ms - base_ms[finished]
                self.latencies_ms.append(ms)
                self.steps.append(steps)
                self.count += finished.size
                base_tokens[finished] = cumulative[finished, end]
                base_step[finished] = end
                base_ms[finished] = ends_ms
            active = finished
        total_ms = elapsed[:, -1] if variable_time else rows * float(step_ms)
        self.open_tokens = cumulative[:, -1] - base_tokens
        self.open_steps = rows - 1 - base_step
        self.open_ms = total_ms - base_ms

    def results(self) -> tuple[np.ndarray, np.ndarray]:
        """(latency ms, steps) of every completed request (at most ``max_requests``)."""
        if not self.latencies_ms:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        latencies = np.concatenate(self.latencies_ms)[:self.max_requests]
        steps = np.concatenate(self.steps)[:self.max_requests]
        return latencies, steps
