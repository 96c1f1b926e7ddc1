"""Running a strategy: prefill, jitted steps (fused or staged), host-side statistics, generation.

One :class:`Decoder` compiles its step once: every array in the state has a fixed shape (capacity ``C``), the
models' weights are arguments (never constants baked into the program), and the state is donated so caches are
updated in place. ``compilations()`` reports the jit cache size of the step (tests assert it stays at 1).
Prompts are prefilled in power-of-two buckets (one compile per bucket, not per prompt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from speccascade.errors import InputError

from .base import DecodingStrategy
from .program import StagedRunner, State, fuse

MIN_BUCKET = 8


@dataclass(frozen=True)
class PairStats:
    """One drafter -> verifier pair in one step. ``alpha`` estimate: accepted / tested."""

    proposed: int
    tested: int
    accepted: int
    beta_sum: float
    sequence: str  # "A" accepted / "R" rejected per tested position; "|" between verifications of one step


@dataclass(frozen=True)
class StepStats:
    step: int
    emitted: int
    pairs: dict[str, PairStats]
    extras: dict[str, float]
    step_ms: float
    stage_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    prompt: tuple[int, ...]
    tokens: tuple[int, ...]  # new tokens only, exactly max_new
    steps: tuple[StepStats, ...]
    decode_ms: float = 0.0   # wall time of the step loop (prefill excluded; statistics and callbacks included)

    def acceptance(self) -> dict[str, dict[str, float]]:
        """Per pair: alpha (accepted / tested), mean beta, counts; plus tokens per step."""
        return summarize_acceptance(self.steps)


def summarize_acceptance(steps: Sequence[StepStats]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = {}
    for step in steps:
        for name, pair in step.pairs.items():
            total = totals.setdefault(name, {"proposed": 0, "tested": 0, "accepted": 0, "beta_sum": 0.0})
            total["proposed"] += pair.proposed
            total["tested"] += pair.tested
            total["accepted"] += pair.accepted
            total["beta_sum"] += pair.beta_sum
    report = {}
    for name, total in totals.items():
        tested = max(total["tested"], 1)
        report[name] = {"alpha": total["accepted"] / tested, "beta": total["beta_sum"] / tested,
                        "proposed": total["proposed"], "tested": total["tested"], "accepted": total["accepted"]}
    if steps:
        report["tokens_per_step"] = {"mean": sum(step.emitted for step in steps) / len(steps)}
    return report


def pack_stats(state: State) -> State:
    """Put the step's statistics into one float32 vector ``state["packed"]`` so the host reads them with a
    single transfer: [length, start_length, then per pair (sorted) proposed, tested, accepted, beta_sum,
    flags..., then extras (sorted)]. Counts stay exact (far below 2^24)."""
    stats = state["stats"]
    parts = [state["length"], stats["start_length"]]
    for name in sorted(stats["pairs"]):
        pair = stats["pairs"][name]
        parts += [pair["proposed"], pair["tested"], pair["accepted"], pair["beta_sum"], pair["flags"]]
    parts += [stats["extras"][name] for name in sorted(stats["extras"])]
    packed = jnp.concatenate([jnp.atleast_1d(part).astype(jnp.float32) for part in parts])
    return {**state, "packed": packed}


def _bucket(length: int, capacity: int) -> int:
    size = MIN_BUCKET
    while size < length:
        size *= 2
    return min(size, capacity)


class Decoder:
    """Compiles and runs one strategy with a fixed token capacity (prompt + new tokens + lookahead)."""

    def __init__(self, strategy: DecodingStrategy, capacity: int, donate: bool = True):
        for model in strategy.models:
            if capacity > model.max_len:
                raise InputError(f"capacity {capacity} exceeds model '{model.name}' max_len {model.max_len}")
        self.strategy = strategy
        self.capacity = int(capacity)
        program = strategy.program()
        fused = fuse(program, strategy.roles)
        donate_argnums = (1,) if donate else ()

        def step_fn(params: Any, state: State) -> State:
            return fused(params, strategy.begin(state))

        self.step_fn = step_fn  # the pure step (for vmap in tests, or a caller's own jit)
        self._step = jax.jit(lambda params, state: pack_stats(step_fn(params, state)), donate_argnums=donate_argnums)
        self._begin = jax.jit(strategy.begin, donate_argnums=(0,) if donate else ())
        self._pack = jax.jit(pack_stats, donate_argnums=(0,) if donate else ())
        self._staged = StagedRunner(program, donate=donate)
        self._prefills: dict[int, Callable] = {}

    # --- state ------------------------------------------------------------------------------------------
    def _prefill(self, bucket: int) -> Callable:
        if bucket not in self._prefills:
            strategy, capacity = self.strategy, self.capacity

            def prefill(params: Any, seq: jax.Array, length: jax.Array, seed: jax.Array) -> State:
                caches = []
                for model, model_params in zip(strategy.models, params):
                    cache = model.init_cache(1, capacity)
                    _, cache = model.forward(model_params, cache, seq[None, :bucket])
                    caches.append(cache)
                state = {"seq": seq, "length": length, "caches": tuple(caches), "key": jax.random.key(seed)}
                state = strategy.after_prefill(params, state)
                return pack_stats(strategy.begin(state))

            self._prefills[bucket] = jax.jit(prefill)
        return self._prefills[bucket]

    def max_new_for(self, prompt_length: int) -> int:
        return self.capacity - prompt_length - self.strategy.lookahead

    def start(self, prompt: Sequence[int], seed: int = 0, max_new: int = 0) -> State:
        """Prefill every model with ``prompt`` (>= 2 tokens) and return the initial state."""
        prompt = [int(token) for token in prompt]
        if len(prompt) < 2:
            raise InputError(f"the prompt needs at least 2 tokens (got {len(prompt)}); prepend a BOS token")
        if max_new > self.max_new_for(len(prompt)):
            raise InputError(f"prompt ({len(prompt)}) + max_new ({max_new}) + lookahead "
                             f"({self.strategy.lookahead}) exceed the decoder capacity {self.capacity}")
        vocab = self.strategy.vocab_size
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise InputError(f"prompt token ids must be in [0, {vocab})")
        seq = np.zeros(self.capacity, np.int32)
        seq[: len(prompt)] = prompt
        prefill = self._prefill(_bucket(len(prompt), self.capacity))
        return prefill(self.strategy.params, jnp.asarray(seq), jnp.asarray(len(prompt), jnp.int32),
                       jnp.asarray(seed, jnp.uint32))

    # --- steps ------------------------------------------------------------------------------------------
    def step(self, state: State) -> State:
        """One fused step (asynchronous: nothing is awaited)."""
        return self._step(self.strategy.params, state)

    def step_staged(self, state: State) -> tuple[State, dict[str, float]]:
        """One step run stage by stage with ``block_until_ready`` after each; returns ms per model."""
        state = self._begin(state)
        state, stage_ms = self._staged(self.strategy.params, state)
        return self._pack(state), stage_ms

    def compile_step(self, state: State) -> float:
        """Compile the fused step ahead of time for ``state``'s shapes; returns the seconds it took (lowering
        included). Later calls with the same shapes reuse the executable."""
        started = time.perf_counter()
        self._step.lower(self.strategy.params, state).compile()
        return time.perf_counter() - started

    def compilations(self) -> int:
        """How many times the fused step was compiled (its jit cache size)."""
        return self._step._cache_size()

    def read_stats(self, state: State, step: int, step_ms: float, stage_ms: dict[str, float] | None = None
                   ) -> tuple[StepStats, int]:
        """Host copy of the step's statistics; returns (stats, committed length)."""
        return self.unpack_stats(np.asarray(jax.device_get(state["packed"])), step, step_ms, stage_ms)

    def unpack_stats(self, packed: np.ndarray, step: int, step_ms: float, stage_ms: dict[str, float] | None = None
                     ) -> tuple[StepStats, int]:
        """Statistics from the vector :func:`pack_stats` wrote; returns (stats, committed length)."""
        length, emitted = int(packed[0]), int(packed[0] - packed[1])
        offset, pairs = 2, {}
        for name in sorted(self.strategy.pairs):
            slots, chunk = self.strategy.pairs[name], self.strategy.verify_sizes[name]
            proposed, tested, accepted, beta_sum = packed[offset:offset + 4]
            flags = packed[offset + 4: offset + 4 + slots].reshape(-1, chunk)
            offset += 4 + slots
            rounds = ["".join("A" if flag == 1 else "R" for flag in row if flag >= 0) for row in flags]
            pairs[name] = PairStats(int(proposed), int(tested), int(accepted), float(beta_sum),
                                    "|".join(r for r in rounds if r))
        extras = {name: float(packed[offset + i]) for i, name in enumerate(sorted(self.strategy.extras()))}
        return StepStats(step, emitted, pairs, extras, step_ms, dict(stage_ms or {})), length

    def tokens(self, state: State, begin: int, count: int) -> tuple[int, ...]:
        seq = np.asarray(jax.device_get(state["seq"]))
        return tuple(int(token) for token in seq[begin: begin + count])

    def generate(self, prompt: Sequence[int], max_new: int, seed: int = 0, staged: bool = False,
                 on_step: Callable[[StepStats], None] | None = None) -> Generation:
        """Decode ``max_new`` tokens after ``prompt``; ``on_step`` sees every step's statistics as it ends."""
        if max_new < 1:
            raise InputError(f"max_new must be >= 1, got {max_new}")
        state = self.start(prompt, seed, max_new)
        end = len(prompt) + max_new
        jax.block_until_ready(state)
        length, steps = len(prompt), []
        loop_started = time.perf_counter()
        while length < end:
            started = time.perf_counter()
            if staged:
                state, stage_ms = self.step_staged(state)
            else:
                state, stage_ms = self.step(state), None
            packed = np.asarray(jax.device_get(state["packed"]))  # waits for the step: one small transfer
            step_ms = (time.perf_counter() - started) * 1e3
            stats, length = self.unpack_stats(packed, len(steps), step_ms, stage_ms)
            steps.append(stats)
            if on_step is not None:
                on_step(stats)
        decode_ms = (time.perf_counter() - loop_started) * 1e3
        return Generation(tuple(prompt), self.tokens(state, len(prompt), max_new), tuple(steps), decode_ms)
