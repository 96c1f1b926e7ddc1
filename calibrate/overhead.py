"""Host overhead per step, per strategy: a fused step's measured time minus the time of the forwards it ran.

A ``step`` record of mode ``fused`` (one jitted call per step, as decoding runs) holds the step's wall ``step_ms``
(dispatch, sampling, verification, buffer updates and the statistics transfer included). The forwards it ran are
the registry's step shape at the step's knobs (:meth:`speccascade.strategies.StepShape.forwards`; for the
delivered-token-budget cascade, whose review count is random, the count the step itself records:
``proposed[tiny->draft] // k_tiny``, as the runtime's ``reviews``). Each forward is predicted at the step's
context by a :data:`Predictor` (the fitted model, or the measured table; each prediction says which), and

    overhead_ms(step) = step_ms - sum over its forwards of predicted ms
    host_overhead_fraction = 1 - sum_steps forwards_ms / sum_steps step_ms

per (strategy, knobs). This is what ``runtime/overhead.py`` measures directly (the step and its forwards-only
twin timed back to back); here it comes from the trace alone, so it applies to any trace, at the price of the
forward model's error entering the difference. Staged steps (``block_until_ready`` after every stage) are
reported unused: they time a different program.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from speccascade import strategies as registry
from speccascade.hardware.model import ModelProfile
from speccascade.traces import StepRecord, Trace

from .points import Unused, record_lines, where

# (role, model, weights level, tokens, context, output columns or None) -> (ms, how it was predicted)
Predictor = Callable[[str, ModelProfile, str, int, int, "float | None"], tuple[float, str]]


@dataclass(frozen=True)
class StepOverhead:
    """Host overhead of one strategy at one knob setting, over its fused steps."""

    strategy: str
    knobs: dict[str, int]
    steps: int
    step_ms: float                    # mean measured ms per step
    forwards_ms: float                # mean predicted ms of the step's forwards
    overhead_ms: float                # mean of step_ms - forwards_ms
    overhead_ms_median: float
    fraction: float                   # 1 - sum forwards_ms / sum step_ms
    predicted_by: dict[str, int] = field(default_factory=dict)  # how the forwards were predicted -> count

    @property
    def label(self) -> str:
        knobs = ",".join(f"{name}={value}" for name, value in self.knobs.items())
        return f"{self.strategy}({knobs})" if knobs else self.strategy


def step_forwards(step: StepRecord) -> list[registry.Forwards]:
    """The forwards one recorded step ran: the registry's step shape at its knobs (random review counts from the
    step's own counters). Raises ValueError when the step does not record what the count needs."""
    spec = registry.get(step.strategy)
    knobs = step.knob_values()
    shape = spec.step_shape(knobs)
    reviews = None
    if shape.reviews is None:
        inner = next((pair.name for pair in spec.pairs if pair.verifier != "target"), None)
        if inner is None or inner not in step.pairs or not knobs.get("k_tiny"):
            raise ValueError(f"the step records no '{inner}' pair, so its number of reviews is unknown")
        reviews = step.pairs[inner].proposed // knobs["k_tiny"]
    return [forward for forward in shape.forwards(reviews) if int(forward.count) > 0]


def host_overheads(traces: Sequence[Trace], levels: dict[str, dict[str, str]], predict: Predictor
                   ) -> tuple[list[StepOverhead], list[Unused]]:
    """Per (strategy, knobs) host overhead of every fused step of ``traces``; ``levels`` maps a trace path to its
    role -> weights level. Every step not used is returned with its reason."""
    samples: dict[tuple[str, tuple], list[tuple[float, float]]] = {}
    hows: dict[tuple[str, tuple], Counter] = {}
    unused: list[Unused] = []
    for trace in traces:
        lines = record_lines(trace)
        profiles = trace.header.model_profiles()
        for index, step in enumerate(trace.steps):
            at = where(trace, lines, "step", index)
            if step.mode != "fused":
                unused.append(Unused(at, "step", "staged step (block_until_ready after each stage): host overhead "
                                                 "is measured on fused steps"))
                continue
            missing = [role for role in registry.get(step.strategy).roles if role not in profiles]
            if missing:
                unused.append(Unused(at, "step", f"the header carries no ModelProfile for the {missing[0]} model"))
                continue
            try:
                forwards = step_forwards(step)
            except ValueError as error:
                unused.append(Unused(at, "step", str(error)))
                continue
            forwards_ms = 0.0
            key = (step.strategy, tuple(sorted(step.knob_values().items())))
            counter = hows.setdefault(key, Counter())
            for forward in forwards:
                columns = None if forward.columns is None else float(step.knob_values()[forward.columns])
                ms, how = predict(forward.role, profiles[forward.role], levels[str(trace.path)][forward.role],
                                  int(forward.tokens), step.context, columns)
                forwards_ms += int(forward.count) * ms
                counter[how] += int(forward.count)
            samples.setdefault(key, []).append((step.step_ms, forwards_ms))
    return [_summarize(key, values, hows[key]) for key, values in samples.items()], unused


def _summarize(key: tuple[str, tuple], values: list[tuple[float, float]], hows: Counter) -> StepOverhead:
    strategy, knobs = key
    step_total = sum(step for step, _ in values)
    forward_total = sum(forwards for _, forwards in values)
    overheads = [step - forwards for step, forwards in values]
    return StepOverhead(strategy, dict(knobs), len(values), step_total / len(values), forward_total / len(values),
                        statistics.fmean(overheads), statistics.median(overheads),
                        1.0 - forward_total / step_total if step_total > 0 else 0.0, dict(hows))
