"""Benchmark summaries: one JSON document per run (:class:`Summary`), pooled acceptance, reading and writing."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from speccascade.errors import InputError
from speccascade.hardware.chip import ChipProfile
from speccascade.readers import read_json

from .files import _problem, _version_of
from .records import SCHEMA_VERSION, HardwareInfo, Knobs, ModelInfo, StepRecord, _canonical, _check_knobs, _Record
from .v1 import convert_summary_v1

class Spread(_Record):
    median: float
    min: float
    max: float
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        if not values:
            raise InputError("no values to summarize")
        return cls(median=statistics.median(values), min=min(values), max=max(values), values=list(values))


class PairSummary(_Record):
    alpha: float = Field(ge=0, le=1)   # accepted / tested
    beta: float = Field(ge=0, le=1)    # mean beta over tested positions
    proposed: int
    tested: int
    accepted: int


class StrategySummary(_Record):
    strategy: str                      # canonical registry name
    knobs: Knobs = Knobs()
    config: dict[str, Any]
    repeats: int
    new_tokens: int                    # per repeat
    ms_per_token: Spread               # fused runs, compile excluded
    tokens_per_s: float                # 1000 / median ms_per_token
    speedup: float | None = None       # median over repeats of AR ms/token / this ms/token (same prompt)
    speedup_total: float | None = None  # sum over repeats of AR ms/token / sum of this ms/token (whole-run time)
    compile_s: float
    mean_tokens_per_step: float        # measured: tokens emitted / steps (fused runs); simulate's name for its mean
    acceptance: dict[str, PairSummary]
    stage_ms_per_step: dict[str, float] = Field(default_factory=dict)   # staged runs, mean per step
    host_overhead_fraction: float | None = None

    @field_validator("strategy")
    @classmethod
    def _canonical_name(cls, value: str) -> str:
        return _canonical(value)

    @model_validator(mode="after")
    def _knobs_of_strategy(self) -> "StrategySummary":
        _check_knobs(self.strategy, self.knobs)
        return self


class Summary(_Record):
    kind: Literal["summary"] = "summary"
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_utc: str
    trace_file: str
    chip: str | ChipProfile | None = None
    hardware: HardwareInfo
    models: list[ModelInfo]
    strategies: dict[str, StrategySummary]
    extras: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def acceptance_from_steps(steps: list[StepRecord]) -> dict[str, PairSummary]:
    """Pool pair counters over steps: alpha = accepted / tested, beta = beta_sum / tested."""
    totals: dict[str, list[float]] = {}
    for step in steps:
        for name, pair in step.pairs.items():
            total = totals.setdefault(name, [0, 0, 0, 0.0])
            total[0] += pair.proposed
            total[1] += pair.tested
            total[2] += pair.accepted
            total[3] += pair.beta_sum
    return {name: PairSummary(alpha=accepted / max(tested, 1), beta=min(1.0, beta / max(tested, 1)),
                              proposed=int(proposed), tested=int(tested), accepted=int(accepted))
            for name, (proposed, tested, accepted, beta) in totals.items()}


def write_summary(path: str | Path, summary: Summary, *, force: bool = True) -> None:
    """Write a benchmark summary atomically (``force=False`` keeps an existing file)."""
    from speccascade.writers import write_text

    write_text(path, summary.model_dump_json(indent=2) + "\n", force=force)


def read_summary(path: str | Path) -> Summary:
    """Read a benchmark summary (version 1 converted on read, like a trace)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InputError(f"summary file not found: {path}")
    data = read_json(path)  # the input layer: regular file, size limit, UTF-8, strict JSON
    try:
        if isinstance(data, dict):
            version = _version_of(data, path, 1)
            if version == 1:
                data = convert_summary_v1(data)
        return Summary.model_validate(data)
    except ValidationError as error:
        raise InputError(f"{path}: invalid summary: {_problem(error)}") from None
    except InputError as error:
        raise InputError(f"{path}: invalid summary: {error}") from None
