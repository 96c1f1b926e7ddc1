"""Validate the cost model on runtime traces: fit on some configurations, predict the others, compare.

A *configuration* is one (strategy, knobs) of the traces' fused steps. Its measured ms/token is the median over its
repeats of (sum of step ms) / (sum of tokens), its measured speedup the autoregressive configuration's ms/token over
it. Fitting uses only what is allowed to enter:

- the forward-time corrections from the traces' ``forward`` microbenchmark records (isolated forwards, not a
  configuration's decoding run; :func:`calibrate.forward_fit.fit_forwards`);
- the host overhead per step (:mod:`.overhead`) from the *fit-on* configurations' steps only (a strategy without a
  fit-on configuration takes the mean of the others, the profile's ``"*"``);
- the acceptance per drafter->verifier pair (MLE accepted / judged) from the fit-on configurations only: for a
  held-out configuration, pooled over the fit-on configurations *of its own trace* (the same prompts and models:
  acceptance is a property of the text decoded, not of the timing) when they measure that parameter, else pooled
  over every fit-on configuration (``Validation.acceptance``; ``acceptance_by_trace`` lists the per-trace values).

Each held-out configuration is then predicted with ``costmodel.predict`` on the calibrated chip, the header's model
profiles, its knobs and its mean context; the *uncalibrated* prediction uses the header's chip profile (datasheet
or probed peaks) with the same acceptance. Errors: absolute percentage error of ms/token per configuration, median
and max; Kendall tau of the held-out strategies' speedups (scipy.stats.kendalltau), predicted vs measured.

Selectors (``--fit-on`` / ``--holdout``): comma-separated ``NAME[:knob=value...][@STEM]`` (registry names or
aliases; a configuration matches when its strategy and the given knobs agree, and, with ``@STEM``, when it comes
from the trace file of that stem), ``all``, or ``rest`` (everything the other selector does not take). With several
traces each trace's configurations are apart (labels end in ``@STEM``).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from speccascade import strategies as registry
from speccascade.strategy_names import parse_strategy_spec
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.errors import InputError
from speccascade.hardware.chip import ChipProfile
from speccascade.traces import Trace

from .calibration import calibrated_profile, fit_predictor, step_overheads
from .forward_fit import fit_forwards
from .overhead import host_overheads
from .points import forward_points, group_by_device, load_traces, trace_source, weight_levels

AR = registry.AUTOREGRESSIVE.name


@dataclass(frozen=True)
class Measured:
    """One configuration's fused steps: ms/token per repeat, context, tokens per step, pair counts."""

    strategy: str
    knobs: tuple[tuple[str, int], ...]
    tag: str                                 # the trace's file stem when several traces are validated, else ""
    models: dict                             # role -> ModelProfile of the run (the trace header's)
    ms_per_token: tuple[float, ...]          # per repeat
    mean_context: float
    steps: int
    mean_tokens_per_step: float
    pairs: dict[str, tuple[int, int]]        # pair -> (accepted, judged)

    @property
    def label(self) -> str:
        knobs = ":".join(f"{name}={value}" for name, value in self.knobs)
        label = f"{self.strategy}:{knobs}" if knobs else self.strategy
        return f"{label}@{self.tag}" if self.tag else label

    @property
    def median_ms(self) -> float:
        return statistics.median(self.ms_per_token)

    def matches(self, strategy: str, knobs: dict[str, int], tag: str | None = None) -> bool:
        own = dict(self.knobs)
        return (strategy == self.strategy and all(own.get(name) == value for name, value in knobs.items())
                and (tag is None or tag == self.tag))


def measure(traces: Sequence[Trace]) -> dict[str, Measured]:
    """Every configuration of the traces' fused steps, by label (one trace: ``NAME:knobs``; several: each trace's
    configurations apart, ``NAME:knobs@STEM``, since traces differ in models, prompts or contexts)."""
    stems = [Path(trace.path).stem for trace in traces]
    if len(traces) > 1 and len(set(stems)) != len(stems):
        raise InputError(f"several traces share a file name ({', '.join(sorted(stems))}): rename them, the "
                         "validation tells configurations of different traces apart by file name")
    groups: dict[tuple, dict[int, list]] = {}
    models: dict[str, dict] = {}
    for trace, stem in zip(traces, stems):
        tag = stem if len(traces) > 1 else ""
        models[tag] = trace.header.model_profiles()
        for step in trace.steps:
            if step.mode != "fused":
                continue
            key = (step.strategy, tuple(sorted(step.knob_values().items())), tag)
            groups.setdefault(key, {}).setdefault(step.repeat, []).append(step)
    out = {}
    for (strategy, knobs, tag), repeats in groups.items():
        steps = [step for run in repeats.values() for step in run]
        pairs: dict[str, list[int]] = {}
        for step in steps:
            for name, pair in step.pairs.items():
                counts = pairs.setdefault(name, [0, 0])
                counts[0] += pair.accepted
                counts[1] += pair.tested
        per_repeat = tuple(sum(s.step_ms for s in run) / sum(s.tokens_emitted for s in run) for run in repeats.values())
        measured = Measured(strategy, knobs, tag, models[tag], per_repeat, float(np.mean([s.context for s in steps])),
                            len(steps),
                            sum(s.tokens_emitted for s in steps) / len(steps),
                            {name: (a, j) for name, (a, j) in pairs.items()})
        out[measured.label] = measured
    if not out:
        raise InputError("the traces hold no fused decoding steps to validate")
    return out


def select(measured: dict[str, Measured], selector: str, other: set[str] | None = None) -> set[str]:
    """Labels a selector takes (see the module docstring)."""
    text = selector.strip()
    if text == "all":
        return set(measured)
    if text == "rest":
        if other is None:
            raise InputError("'rest' needs the other selector to name configurations")
        return set(measured) - other
    chosen = set()
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        spec, _, tag = entry.partition("@")
        name, knobs = parse_strategy_spec(spec)
        hits = {label for label, item in measured.items() if item.matches(name, knobs, tag or None)}
        if not hits:
            raise InputError(f"selector {entry!r} matches no configuration of the traces; they hold: "
                             f"{', '.join(sorted(measured))}")
        chosen |= hits
    return chosen


@dataclass(frozen=True)
class Row:
    label: str
    strategy: str
    measured_ms: float
    predicted_ms: float
    uncalibrated_ms: float
    measured_speedup: float | None
    predicted_speedup: float | None
    uncalibrated_speedup: float | None

    @property
    def ape(self) -> float:
        return abs(self.predicted_ms / self.measured_ms - 1.0)

    @property
    def uncalibrated_ape(self) -> float:
        return abs(self.uncalibrated_ms / self.measured_ms - 1.0)


@dataclass(frozen=True)
class Validation:
    rows: tuple[Row, ...]
    fit_on: tuple[str, ...]
    acceptance: dict[str, float]
    step_overhead_s: dict[str, float]
    forward_residual_rms: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    acceptance_by_trace: dict[str, dict[str, float]] = field(default_factory=dict)  # trace tag -> its fit-on values

    def summary(self) -> dict:
        apes = [row.ape for row in self.rows]
        raw = [row.uncalibrated_ape for row in self.rows]
        return {"n_heldout": len(self.rows), "median_ape": float(np.median(apes)), "max_ape": float(np.max(apes)),
                "kendall_tau": _tau([(r.measured_speedup, r.predicted_speedup) for r in self.rows]),
                "uncalibrated_median_ape": float(np.median(raw)), "uncalibrated_max_ape": float(np.max(raw)),
                "uncalibrated_kendall_tau": _tau([(r.measured_speedup, r.uncalibrated_speedup) for r in self.rows]),
                "strategies": sorted({row.strategy for row in self.rows})}

    def to_json(self) -> dict:
        return {"summary": self.summary(), "fit_on": list(self.fit_on), "acceptance": self.acceptance,
                "acceptance_by_trace": self.acceptance_by_trace,
                "step_overhead_s": self.step_overhead_s, "forward_residual_rms": self.forward_residual_rms,
                "rows": [dataclasses.asdict(row) | {"ape": row.ape, "uncalibrated_ape": row.uncalibrated_ape}
                         for row in self.rows], "notes": list(self.notes)}


def _tau(pairs: list[tuple[float | None, float | None]]) -> float | None:
    values = [(a, b) for a, b in pairs if a is not None and b is not None]
    if len(values) < 3:
        return None
    from scipy.stats import kendalltau

    tau = kendalltau([a for a, _ in values], [b for _, b in values]).statistic
    return None if tau is None or not np.isfinite(tau) else float(tau)


def pooled_acceptance(measured: dict[str, Measured], labels: set[str]) -> dict[str, float]:
    """Acceptance parameter -> MLE accepted / judged, pooled over ``labels``' configurations (the registry's
    pair -> parameter map: draft->target is alpha, except the filtered cascade's, which is gamma_total)."""
    counts: dict[str, list[int]] = {}
    for label in labels:
        item = measured[label]
        spec = registry.get(item.strategy)
        for pair in spec.pairs:
            if pair.name in item.pairs:
                accepted, judged = item.pairs[pair.name]
                total = counts.setdefault(pair.parameter, [0, 0])
                total[0] += accepted
                total[1] += judged
    return {name: accepted / judged for name, (accepted, judged) in counts.items() if judged}


def _config(item: Measured, chip: ChipProfile, models: dict, acceptance: dict[str, float]) -> PredictConfig:
    spec = registry.get(item.strategy)
    missing = [pair.parameter for pair in spec.pairs if pair.parameter not in acceptance]
    if missing:
        raise InputError(f"{item.label}: no fit-on configuration measured {', '.join(missing)} "
                         f"(add one with that pair to --fit-on)")
    fields = {"strategy": item.strategy, "hardware": chip.name, "context": int(round(item.mean_context)),
              **{role: models[role].name for role in spec.roles if role in models}, **dict(item.knobs)}
    fields.update({name: acceptance[name] for name in ("alpha", "alpha_tiny", "gamma_total") if name in acceptance
                   and name in {pair.parameter for pair in spec.pairs}})
    return PredictConfig(**fields)


def _predicted_ms(item: Measured, chip: ChipProfile, acceptance: dict[str, float]) -> float:
    config = _config(item, chip, item.models, acceptance)
    return predict(config, alternatives=False, chip=chip, models=item.models).ms_per_token


def validate_traces(paths: Sequence[str | Path], fit_on: str = "rest", holdout: str = "rest",
                    chip: ChipProfile | None = None) -> Validation:
    """Fit on ``fit_on``, predict ``holdout`` (selectors; see the module docstring); ``chip`` replaces the traces'
    chip profile (for traces whose header names none)."""
    if fit_on.strip() == "rest" and holdout.strip() == "rest":
        raise InputError("give --fit-on or --holdout (or both); the other may be 'rest'")
    traces = load_traces(paths)
    devices = group_by_device(traces, chip)
    if len(devices) != 1:
        raise InputError(f"the traces come from {len(devices)} devices; validate each device separately")
    device = devices[0]
    measured = measure(device.traces)
    fit_labels = select(measured, fit_on, None if fit_on.strip() == "rest" else set())
    if holdout.strip() == "rest":
        held = set(measured) - fit_labels
    else:
        held = select(measured, holdout)
        if fit_on.strip() == "rest":
            fit_labels = set(measured) - held
    overlap = fit_labels & held
    if overlap:
        raise InputError(f"configurations both fitted and held out: {', '.join(sorted(overlap))}")
    if not held:
        raise InputError("nothing held out to predict")
    points, _ = forward_points(device)
    if not points:
        raise InputError("no usable forward records to fit (run the benchmark with its microbenchmark)")
    fit = fit_forwards(device.chip, points)
    levels = {str(trace.path): weight_levels(trace, device.chip) for trace in device.traces}
    stems = {str(trace.path): (Path(trace.path).stem if len(device.traces) > 1 else "") for trace in device.traces}
    fit_traces = [dataclasses.replace(trace, steps=tuple(step for step in trace.steps if step.mode == "fused" and any(
        measured[label].matches(step.strategy, step.knob_values(), stems[str(trace.path)]) for label in fit_labels)))
        for trace in device.traces]
    overheads, _ = host_overheads(fit_traces, levels, fit_predictor(fit))
    overhead_s = step_overheads(overheads)
    calibrated = calibrated_profile(device.chip, fit, f"{device.chip.name}-validate",
                                    tuple(trace_source(trace) for trace in device.traces), "validation", 0,
                                    step_overhead_s=overhead_s)
    acceptance = pooled_acceptance(measured, fit_labels)
    by_trace = {tag: pooled_acceptance(measured, {label for label in fit_labels if measured[label].tag == tag})
                for tag in {item.tag for item in measured.values()}}

    def acceptance_of(item: Measured) -> dict[str, float]:
        return {**acceptance, **by_trace.get(item.tag, {})}  # the trace's own parameters win
    # each trace's own autoregressive configuration is its speedup baseline
    baselines = {item.tag: item for item in measured.values() if item.strategy == AR}
    rows = []
    for label in sorted(held):
        item = measured[label]
        own = acceptance_of(item)
        predicted = _predicted_ms(item, calibrated, own)
        raw = _predicted_ms(item, device.chip, own)
        speedups = (None, None, None)
        ar = baselines.get(item.tag)
        if ar is not None and item.strategy != AR:
            speedups = (ar.median_ms / item.median_ms, _predicted_ms(ar, calibrated, own) / predicted,
                        _predicted_ms(ar, device.chip, own) / raw)
        rows.append(Row(label, item.strategy, item.median_ms, predicted, raw, *speedups))
    notes = []
    if len(baselines) < len({item.tag for item in measured.values()}):
        notes.append("a trace without an autoregressive configuration: its speedups are not computed")
    return Validation(tuple(rows), tuple(sorted(fit_labels)), acceptance, overhead_s, fit.residuals.rms,
                      tuple(notes), {tag: values for tag, values in sorted(by_trace.items()) if values})
