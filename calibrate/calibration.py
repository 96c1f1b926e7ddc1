"""One calibration, end to end: traces -> forward points -> fitted corrections (and, in table mode, the measured
table) -> host overhead per strategy -> a calibrated chip profile with provenance.

Modes. ``fit``: every forward is predicted by the fitted cost model (what ``predict --hardware PROFILE`` does).
``table``: forwards of a model the traces measured are predicted from its recorded forwards
(:mod:`.forward_table`), others by the fit; each prediction is labelled with what made it, and the table's own
accuracy is its leave-one-out residual. The written profile always carries the fitted corrections: a chip profile
holds corrections, not tables.

Accounting: :attr:`Calibration.unused` lists every record not used, with file, line and reason (compile records:
compile time is excluded from every timing; staged steps; forwards without a model profile; a partial last line
the reader dropped); :attr:`Calibration.used` counts the used ones by kind.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

from speccascade.errors import InputError
from speccascade.hardware.chip import CalibrationProvenance, ChipProfile, Residuals, TraceSource
from speccascade.hardware.model import ModelProfile

from .forward_fit import ForwardFit, fit_forwards, predict_ms, residual_summary
from .forward_table import ForwardTable
from .overhead import Predictor, StepOverhead, host_overheads
from .points import (Device, ForwardPoint, Unused, group_by_device, forward_points, load_traces, model_key,
                     record_lines, trace_source, weight_levels, where)

Mode = Literal["fit", "table"]


@dataclass(frozen=True)
class Calibration:
    name: str
    mode: Mode
    date_utc: str
    device: Device
    fit: ForwardFit
    table: ForwardTable | None
    table_residuals: Residuals | None          # leave-one-out, table mode only
    overheads: tuple[StepOverhead, ...]
    used: dict[str, int]                       # record kind -> records used
    unused: tuple[Unused, ...]
    sources: tuple[TraceSource, ...]
    profile: ChipProfile                       # the input profile, corrections fitted and provenance filled
    uncalibrated_residuals: Residuals | None = None  # the input profile's own corrections on the same points
    notes: tuple[str, ...] = ()

    @property
    def traces(self):
        return self.device.traces

    def unused_reasons(self) -> dict[str, int]:
        """Reason -> how many records it left unused."""
        counts: dict[str, int] = {}
        for entry in self.unused:
            counts[f"{entry.kind}: {entry.reason}"] = counts.get(f"{entry.kind}: {entry.reason}", 0) + 1
        return counts


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def fit_predictor(fit: ForwardFit) -> Predictor:
    """Every forward by the fitted cost model (cached per distinct forward)."""
    cache: dict[tuple, float] = {}

    def predict(role: str, model: ModelProfile, level: str, tokens: int, context: int, columns: float | None):
        key = (model_key(role, model), level, tokens, context, columns)
        if key not in cache:
            point = ForwardPoint("", role, model, level, tokens, context, 1.0)
            cache[key] = float(predict_ms(fit.chip, [point], fit.combine, [columns])[0])
        return cache[key], "fit"

    return predict


def table_predictor(table: ForwardTable, fit: ForwardFit) -> Predictor:
    fallback = fit_predictor(fit)

    def predict(role: str, model: ModelProfile, level: str, tokens: int, context: int, columns: float | None):
        if columns is not None:
            return fallback(role, model, level, tokens, context, columns)[0], "fit (m-column forward, not in the table)"
        found = table.lookup(model_key(role, model), tokens, context)
        if found is None:
            return fallback(role, model, level, tokens, context, None)[0], "fit (outside the table)"
        return found.ms, found.how

    return predict


def _other_records(device: Device) -> tuple[list[Unused], dict[str, int]]:
    unused, used = [], {"header": len(device.traces)}
    for trace in device.traces:
        lines = record_lines(trace)
        for index, _ in enumerate(trace.compiles):
            unused.append(Unused(where(trace, lines, "compile", index), "compile",
                                 "compile time is excluded from every timing (nothing to fit)"))
        if trace.dropped_partial_line is not None:
            unused.append(Unused(f"{trace.path}:{trace.dropped_partial_line}", "partial",
                                 "partial last line (a killed run), dropped by the trace reader"))
    return unused, used


def calibrate_traces(paths: Sequence[str | Path], *, chip: ChipProfile | None = None, name: str | None = None,
                     mode: Mode = "fit", hold: Mapping[str, float] | None = None, bootstrap: int = 0,
                     seed: int = 0) -> Calibration:
    """Calibrate the device the traces ran on (``chip`` overrides the headers' profile)."""
    if mode not in ("fit", "table"):
        raise InputError(f"unknown mode '{mode}'; modes: fit, table")
    traces = load_traces(paths)
    devices = group_by_device(traces, chip)
    if len(devices) > 1:
        names = "; ".join(f"{d.chip.name} ({', '.join(str(t.path) for t in d.traces)})" for d in devices)
        raise InputError(f"the traces come from {len(devices)} devices ({names}); calibrate each device separately")
    device = devices[0]
    points, unused_forwards = forward_points(device)
    if not points:
        reasons = sorted({entry.reason for entry in unused_forwards}) or ["the traces hold no forward records "
                                                                          "(run the benchmark with its microbenchmark)"]
        raise InputError(f"no usable forward records to fit: {'; '.join(reasons)}")
    fit = fit_forwards(device.chip, points, hold=hold, bootstrap=bootstrap, seed=seed)
    table = ForwardTable.from_points(points) if mode == "table" else None
    table_residuals = None
    if table is not None:
        errors = table.leave_one_out(points)
        table_residuals = residual_summary(errors[np.isfinite(errors)])
    levels = {str(trace.path): weight_levels(trace, device.chip) for trace in device.traces}
    predictor = table_predictor(table, fit) if table is not None else fit_predictor(fit)
    overheads, unused_steps = host_overheads(device.traces, levels, predictor)
    unused_other, used = _other_records(device)
    used["forward"] = len(points)
    used["step"] = sum(overhead.steps for overhead in overheads)
    unused = tuple(unused_forwards + unused_steps + unused_other)
    sources = tuple(trace_source(trace) for trace in device.traces)
    date = _today()
    name = name or f"{device.chip.name}-calibrated"
    profile = calibrated_profile(device.chip, fit, name, sources, date, len(unused_forwards), mode,
                                 step_overheads(overheads))
    measured = np.array([point.ms for point in points])
    uncalibrated = residual_summary(predict_ms(device.chip, points) / measured - 1.0)
    return Calibration(name, mode, date, device, fit, table, table_residuals, tuple(overheads), used, unused,
                       sources, profile, uncalibrated, device.notes)


def step_overheads(overheads: Sequence[StepOverhead]) -> dict[str, float]:
    """Host seconds per step by strategy: the step-weighted mean over its knob settings (at least 0), and ``"*"``
    the mean over all strategies, for a strategy the traces did not run."""
    by_strategy: dict[str, list[tuple[int, float]]] = {}
    for overhead in overheads:
        by_strategy.setdefault(overhead.strategy, []).append((overhead.steps, overhead.overhead_ms))
    out = {name: max(0.0, sum(n * ms for n, ms in items) / sum(n for n, _ in items)) / 1e3
           for name, items in by_strategy.items() if sum(n for n, _ in items)}
    if out:
        out["*"] = sum(out.values()) / len(out)
    return out


def calibrated_profile(base: ChipProfile, fit: ForwardFit, name: str, sources: Sequence[TraceSource], date: str,
                       points_unused: int, mode: Mode = "fit", step_overhead_s: dict[str, float] | None = None
                       ) -> ChipProfile:
    """``base`` renamed, its peaks untouched, ``[corrections]`` = the fit with calibrated = true and provenance."""
    residuals = fit.residuals
    files = ", ".join(Path(source.path).name for source in sources)
    source = (f"speccascade calibrate on {date}: bounded least-squares fit (scipy trf, relative residuals) of the "
              f"cost model's forward time to {residuals.points} forward records of {len(sources)} trace(s) "
              f"({files}); residual rms {residuals.rms:.1%}, max {residuals.max_abs:.1%}; uncertainties: "
              f"{fit.uncertainty}")
    provenance = CalibrationProvenance(
        method=f"least_squares fit ({fit.uncertainty} uncertainties); calibrate mode {mode}", date_utc=date,
        traces=list(sources), points_used=residuals.points, points_unused=points_unused, residuals=residuals,
        parameters=dict(fit.parameters), combine=fit.combine, notes=list(fit.notes))
    corrections = fit.corrections.model_copy(update={"calibrated": True, "source": source,
                                                     "provenance": provenance,
                                                     "step_overhead_s": dict(step_overhead_s or {})})
    data = base.model_dump()
    data.update(name=name, corrections=corrections.model_dump(),
                notes=[*base.notes, f"calibrated from {files} on {date} (peaks are the input profile's, "
                                    f"'{base.name}'; the fit is in [corrections])"])
    return ChipProfile.model_validate(data)
