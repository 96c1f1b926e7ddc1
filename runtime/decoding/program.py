"""A decoding step as a small program of stages, run fused (one jit) or staged (one jit per stage, timed).

A :class:`Stage` is a pure function ``(params, state) -> state`` that belongs to one model (``"tiny"``,
``"draft"`` or ``"target"``); a :class:`Loop` repeats its body while ``cond(state)`` holds. The same program runs
two ways, with identical results (same functions, same keys):

* :func:`fuse` turns it into one pure function (loops become ``lax.while_loop``) for one ``jax.jit`` per step:
  the fast path, used for ms/token.
* :class:`StagedRunner` jits every stage on its own, evaluates loop conditions on the host and blocks after each
  stage (``block_until_ready``), so the wall time of every stage is known: per-stage milliseconds for traces.
  It pays one dispatch per stage; that cost is what the fused path avoids.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Union

import jax

State = dict[str, Any]
StageFn = Callable[[Any, State], State]


@dataclass(frozen=True)
class Stage:
    model: str
    fn: StageFn


@dataclass(frozen=True)
class Loop:
    cond: Callable[[State], jax.Array]
    body: tuple[Stage, ...]


Program = tuple[Union[Stage, Loop], ...]


def fuse(program: Program, roles: tuple[str, ...] | None = None) -> StageFn:
    """One pure function running the whole program; loops become ``lax.while_loop`` (static shapes).

    With ``roles`` (the order of ``state["caches"]``), a loop carries only the caches of the models its stages
    belong to; the others wait outside (XLA would otherwise copy them into and out of the loop)."""

    def run(params: Any, state: State) -> State:
        for part in program:
            if isinstance(part, Stage):
                state = part.fn(params, state)
                continue
            body = part.body

            def loop_body(loop_state: State, body=body) -> State:
                for stage in body:
                    loop_state = stage.fn(params, loop_state)
                return loop_state

            used = {stage.model for stage in body}
            held = tuple(role not in used for role in roles) if roles else ()
            if any(held):
                caches = state["caches"]
                state = {**state, "caches": tuple(None if out else cache for out, cache in zip(held, caches))}
                state = jax.lax.while_loop(part.cond, loop_body, state)
                state = {**state, "caches": tuple(caches[i] if out else cache
                                                  for i, (out, cache) in enumerate(zip(held, state["caches"])))}
            else:
                state = jax.lax.while_loop(part.cond, loop_body, state)
        return state

    return run


class StagedRunner:
    """Runs a program one jitted stage at a time and returns the wall milliseconds spent per model."""

    def __init__(self, program: Program, donate: bool = True):
        self._program = program
        donate_argnums = (1,) if donate else ()
        self._stages: dict[int, Callable] = {}
        self._conds: dict[int, Callable] = {}
        for part in program:
            stages = (part,) if isinstance(part, Stage) else part.body
            for stage in stages:
                self._stages[id(stage)] = jax.jit(stage.fn, donate_argnums=donate_argnums)
            if isinstance(part, Loop):
                self._conds[id(part)] = jax.jit(part.cond)

    def _run_stage(self, stage: Stage, params: Any, state: State, stage_ms: dict[str, float]) -> State:
        start = time.perf_counter()
        state = self._stages[id(stage)](params, state)
        jax.block_until_ready(state)
        stage_ms[stage.model] += (time.perf_counter() - start) * 1e3
        return state

    def __call__(self, params: Any, state: State) -> tuple[State, dict[str, float]]:
        stage_ms: dict[str, float] = defaultdict(float)
        for part in self._program:
            if isinstance(part, Stage):
                state = self._run_stage(part, params, state, stage_ms)
            else:
                while bool(self._conds[id(part)](state)):
                    for stage in part.body:
                        state = self._run_stage(stage, params, state, stage_ms)
        return state, dict(stage_ms)
