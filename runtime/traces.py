"""Runtime traces: a versioned, documented JSON Lines schema that calibration reads without JAX.

A trace file holds one JSON object per line, each with a ``kind``:

* ``header`` (first line, exactly once): ``schema_version``, run id, time, the command, the run config, the
  hardware (backend, device kind and count, host) and every model (role, parameter bytes, vocabulary).
* ``step``: one decoding step of one strategy: tokens emitted, per drafter->verifier pair the proposed / tested /
  accepted counts, the beta = sum_x min(p, q) sum over tested positions and the accept/reject sequence
  (``"AAR"``; rounds of an inner pair are separated by ``|``), milliseconds per model (staged mode) and the
  step's wall milliseconds.
* ``forward``: one microbenchmark point: a model's forward over ``tokens`` new tokens at ``context`` positions.
* ``compile``: compile seconds of one jitted function (excluded from every timing).

Every record is appended and flushed as it happens (:class:`TraceWriter`), so a killed run keeps every completed
step; :func:`read_trace` keeps them too and reports a partial last line instead of failing. A summary of a whole
benchmark is a separate JSON document (:class:`Summary`). This module imports neither JAX nor the models.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from speccascade.errors import InputError
from speccascade.readers import validation_message

SCHEMA_VERSION = 1
SEQUENCE_CHARS = set("AR|")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HardwareInfo(_Record):
    backend: str                       # "cpu", "gpu", "tpu"
    device_kind: str                   # e.g. "cpu", "TPU v5 lite", "NVIDIA H200"
    device_count: int = Field(ge=1)
    host: str                          # platform string of the host
    cpu_count: int | None = None
    jax_version: str | None = None


class ModelInfo(_Record):
    role: str                          # "tiny", "draft", "target"
    name: str
    param_bytes: int = Field(ge=0)     # bytes of weights one forward streams
    vocab_size: int = Field(ge=1)
    max_len: int = Field(ge=1)


class Header(_Record):
    kind: Literal["header"] = "header"
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_utc: str
    command: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    hardware: HardwareInfo
    models: list[ModelInfo] = Field(default_factory=list)


class PairRecord(_Record):
    """One drafter -> verifier pair within one step."""

    proposed: int = Field(ge=0)        # draft tokens drafted
    tested: int = Field(ge=0)          # positions whose accept/reject was drawn
    accepted: int = Field(ge=0)
    beta_sum: float = Field(ge=0)      # sum over tested positions of sum_x min(p(x), q(x))
    sequence: str = ""                 # "A"/"R" per tested position; "|" between rounds of an inner pair

    @model_validator(mode="after")
    def _consistent(self) -> "PairRecord":
        if not self.accepted <= self.tested <= self.proposed:
            raise ValueError(f"need accepted <= tested <= proposed, got {self.accepted}, {self.tested}, "
                             f"{self.proposed}")
        if set(self.sequence) - SEQUENCE_CHARS:
            raise ValueError(f"sequence may only hold A, R and |, got {self.sequence!r}")
        return self


class StepRecord(_Record):
    kind: Literal["step"] = "step"
    strategy: str                      # label of the strategy configuration
    mode: Literal["fused", "staged"]   # fused: one jit per step; staged: one jit per stage, timed per model
    repeat: int = Field(ge=0)
    step: int = Field(ge=0)
    context: int = Field(ge=0)         # committed tokens before the step
    tokens_emitted: int = Field(ge=1)
    pairs: dict[str, PairRecord] = Field(default_factory=dict)
    stage_ms: dict[str, float] = Field(default_factory=dict)
    step_ms: float = Field(ge=0)
    extras: dict[str, float] = Field(default_factory=dict)


class ForwardRecord(_Record):
    kind: Literal["forward"] = "forward"
    model: str
    role: str
    tokens: int = Field(ge=1)          # new tokens in the forward (T)
    context: int = Field(ge=0)         # positions already in the cache
    ms: float = Field(ge=0)            # median ms per forward, dispatch amortized (forwards chained in one jit)
    ms_min: float = Field(ge=0)
    ms_max: float = Field(ge=0)
    call_ms: float | None = Field(default=None, ge=0)  # median ms of one dispatched, awaited call
    repeats: int = Field(ge=1)
    param_bytes: int = Field(ge=0)


class CompileRecord(_Record):
    kind: Literal["compile"] = "compile"
    strategy: str
    what: str                          # "step", "prefill", "stages"
    compile_s: float = Field(ge=0)


Record = Annotated[Union[Header, StepRecord, ForwardRecord, CompileRecord], Field(discriminator="kind")]
_RECORD = TypeAdapter(Record)


class TraceWriter:
    """Appends records to a JSON Lines trace, one flushed line each (``fsync=True`` also syncs to disk)."""

    def __init__(self, path: str | Path, header: Header, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")
        self._fsync = fsync
        self.write(header)

    def write(self, record: BaseModel) -> None:
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Trace:
    path: Path
    header: Header
    steps: tuple[StepRecord, ...]
    forwards: tuple[ForwardRecord, ...]
    compiles: tuple[CompileRecord, ...]
    dropped_partial_line: int | None  # line number of a partial last line that was dropped (a killed run)

    def steps_of(self, strategy: str, mode: str | None = None) -> list[StepRecord]:
        return [step for step in self.steps if step.strategy == strategy and (mode is None or step.mode == mode)]


def _problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return validation_message(error)
    return str(error)


def read_trace(path: str | Path) -> Trace:
    """Read and validate a trace. A malformed line raises :class:`InputError` naming its line number, except a
    partial last line without its newline (a run killed mid-write), which is dropped and reported."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"trace file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    lines = text.split("\n")
    complete_end = len(lines) - 1  # the piece after the last newline is partial (or empty)
    header, records, dropped = None, [], None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _RECORD.validate_python(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as error:
            if number - 1 == complete_end:
                dropped = number
                break
            raise InputError(f"{path}:{number}: malformed trace record: {_problem(error)}") from None
        if isinstance(record, Header):
            if header is not None:
                raise InputError(f"{path}:{number}: a second header record")
            if record.schema_version > SCHEMA_VERSION:
                raise InputError(f"{path}:{number}: schema_version {record.schema_version} is newer than this "
                                 f"reader ({SCHEMA_VERSION}); upgrade speccascade")
            header = record
        elif header is None:
            raise InputError(f"{path}:{number}: the first record must be the header, got '{record.kind}'")
        else:
            records.append(record)
    if header is None:
        raise InputError(f"{path}: no header record (empty or truncated trace)")
    return Trace(path, header, tuple(r for r in records if isinstance(r, StepRecord)),
                 tuple(r for r in records if isinstance(r, ForwardRecord)),
                 tuple(r for r in records if isinstance(r, CompileRecord)), dropped)


# --- summaries ------------------------------------------------------------------------------------------
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
    strategy: str
    config: dict[str, Any]
    repeats: int
    new_tokens: int                    # per repeat
    ms_per_token: Spread               # fused runs, compile excluded
    tokens_per_s: float                # 1000 / median ms_per_token
    speedup: float | None = None       # median over repeats of AR ms/token / this ms/token (same prompt)
    speedup_total: float | None = None  # sum over repeats of AR ms/token / sum of this ms/token (whole-run time)
    compile_s: float
    tokens_per_step: float
    acceptance: dict[str, PairSummary]
    stage_ms_per_step: dict[str, float] = Field(default_factory=dict)   # staged runs, mean per step
    host_overhead_fraction: float | None = None


class Summary(_Record):
    kind: Literal["summary"] = "summary"
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_utc: str
    trace_file: str
    hardware: HardwareInfo
    models: list[ModelInfo]
    strategies: dict[str, StrategySummary]
    extras: dict[str, Any] = Field(default_factory=dict)


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


def write_summary(path: str | Path, summary: Summary) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")


def read_summary(path: str | Path) -> Summary:
    path = Path(path)
    try:
        return Summary.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"summary file not found: {path}") from None
    except ValidationError as error:
        raise InputError(f"{path}: invalid summary: {validation_message(error)}") from None
