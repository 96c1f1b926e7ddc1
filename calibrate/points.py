"""From traces to calibration inputs: the device a trace ran on, where each model's weights sat, and every
``forward`` record either turned into a :class:`ForwardPoint` or reported as :class:`Unused` with its reason.

Traces are read only through :mod:`speccascade.traces` (schema v2; v1 converted on read; a mix refused). A trace's
device is its header's ``chip`` (a profile name or the embedded probed profile), unless the caller gives one.
Weights are placed as the cost model places them (:func:`speccascade.costmodel.placement.place`: smallest model
first, in the fastest level with room), all of the trace's models resident together as during the benchmark, so
the level a fitted bandwidth fraction belongs to is the level ``predict`` reads those weights from.

Every record is accounted for: a point, or an :class:`Unused` entry naming file, line and reason. Nothing is
dropped silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from speccascade.costmodel.placement import Resident, place
from speccascade.errors import InputError
from speccascade.readers import loads_strict, read_bytes, read_text
from speccascade.hardware.chip import ChipProfile, TraceSource
from speccascade.hardware.model import ModelProfile
from speccascade.traces import Trace, read_traces


@dataclass(frozen=True)
class Unused:
    """A record a calibration step did not use, and why (``where`` is ``FILE:LINE``)."""

    where: str
    kind: str
    reason: str


@dataclass(frozen=True)
class ForwardPoint:
    """One microbenchmark forward: ``role``'s ``model`` over ``tokens`` new tokens at ``context``, weights in
    ``level``, measured ``ms`` (median per forward, dispatch amortized)."""

    where: str
    role: str
    model: ModelProfile
    level: str
    tokens: int
    context: int
    ms: float

    @property
    def model_key(self) -> str:
        return model_key(self.role, self.model)


def model_key(role: str, model: ModelProfile) -> str:
    """Which model a forward is of, across traces: role, profile name, weight dtype and parameter count (two
    checkpoints of one family share a name: the quick trio's Target and the default trio's)."""
    return f"{role}:{model.name}:{model.dtype}:{model.params_total:.0f}"


@dataclass(frozen=True)
class Device:
    """The traces of one device and the chip profile they are calibrated against."""

    chip: ChipProfile
    traces: tuple[Trace, ...]
    notes: tuple[str, ...] = ()


def load_traces(paths: Sequence[str | Path]) -> list[Trace]:
    """Read trace files (one schema version; a malformed line is one InputError naming file and line)."""
    return read_traces(paths)


def trace_source(trace: Trace) -> TraceSource:
    """Path, SHA-256 and header identity of a trace file (provenance)."""
    digest = hashlib.sha256(read_bytes(trace.path, "trace")).hexdigest()
    return TraceSource(path=str(trace.path), sha256=digest, run_id=trace.header.run_id,
                       created_utc=trace.header.created_utc)


def record_lines(trace: Trace) -> dict[str, list[int]]:
    """Line numbers of the trace's records by kind, in file order (the reader keeps that order per kind)."""
    lines: dict[str, list[int]] = {}
    for number, line in enumerate(read_text(trace.path, "trace").split("\n"), start=1):
        if not line.strip() or number == trace.dropped_partial_line:
            continue
        try:
            value = loads_strict(line)
        except (ValueError, RecursionError):  # the file changed since it was read and validated
            raise InputError(f"{trace.path}:{number}: malformed trace record (the file changed while read)") from None
        kind = value.get("kind", "?") if isinstance(value, dict) else "?"
        lines.setdefault(kind, []).append(number)
    return lines


def where(trace: Trace, lines: dict[str, list[int]], kind: str, index: int) -> str:
    numbers = lines.get(kind, [])
    return f"{trace.path}:{numbers[index]}" if index < len(numbers) else f"{trace.path} ({kind} #{index + 1})"


def _device_key(trace: Trace, chip: ChipProfile) -> tuple[str, str, str]:
    hardware = trace.header.hardware
    return chip.name, hardware.backend, hardware.device_kind


def group_by_device(traces: Sequence[Trace], chip: ChipProfile | None = None) -> list[Device]:
    """The traces grouped by the device they ran on (chip profile name, backend, device kind). With ``chip`` given,
    every trace is calibrated against it (one group). A trace whose header names no chip needs ``chip``."""
    if chip is not None:
        return [Device(chip, tuple(traces))]
    groups: dict[tuple[str, str, str], list[Trace]] = {}
    profiles: dict[tuple[str, str, str], ChipProfile] = {}
    notes: dict[tuple[str, str, str], list[str]] = {}
    for trace in traces:
        profile = trace.header.chip_profile()
        if profile is None:
            why = f" ({trace.header.notes[0]})" if trace.header.notes else ""
            raise InputError(f"{trace.path}: the trace header names no chip profile{why}; give the chip it ran on "
                             "with --hardware NAME|FILE.toml")
        key = _device_key(trace, profile)
        if key in profiles and profiles[key] != profile:
            notes.setdefault(key, []).append(
                f"{trace.path}: its chip profile '{profile.name}' differs from the first trace's (re-probed?); the "
                f"first trace's peaks are used")
        profiles.setdefault(key, profile)
        groups.setdefault(key, []).append(trace)
    return [Device(profiles[key], tuple(group), tuple(notes.get(key, []))) for key, group in groups.items()]


def weight_levels(trace: Trace, chip: ChipProfile) -> dict[str, str]:
    """Role -> memory level of its weights, every model of the trace resident at once (cost-model placement)."""
    profiles = trace.header.model_profiles()
    if not profiles:
        return {}
    longest = {role: max((f.tokens for f in trace.forwards if f.role == role), default=1) for role in profiles}
    context = max((f.context for f in trace.forwards), default=0)
    residents = [Resident(role, model, 1, longest[role]) for role, model in profiles.items()]
    return dict(place(chip, residents, batch=1, context=context).levels)


def forward_points(device: Device) -> tuple[list[ForwardPoint], list[Unused]]:
    """Every ``forward`` record of the device's traces as a point, or unused with a reason."""
    points: list[ForwardPoint] = []
    unused: list[Unused] = []
    for trace in device.traces:
        lines = record_lines(trace)
        levels = weight_levels(trace, device.chip)
        profiles = trace.header.model_profiles()
        for index, record in enumerate(trace.forwards):
            at = where(trace, lines, "forward", index)
            info = trace.header.model(record.role)
            if info is None:
                unused.append(Unused(at, "forward", f"role '{record.role}' is not among the header's models"))
            elif record.role not in profiles:
                unused.append(Unused(at, "forward", f"the header carries no ModelProfile for the {record.role} "
                                                    f"model '{info.name}' (cost-model inputs unknown)"))
            elif record.model != info.name:
                unused.append(Unused(at, "forward", f"model '{record.model}' is not the header's {record.role} "
                                                    f"model '{info.name}'"))
            elif record.ms <= 0:
                unused.append(Unused(at, "forward", "ms is 0 (no time measured)"))
            else:
                points.append(ForwardPoint(at, record.role, profiles[record.role], levels[record.role],
                                           record.tokens, record.context, record.ms))
    return points, unused
