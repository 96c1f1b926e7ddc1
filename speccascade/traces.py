"""Runtime traces: a versioned JSON Lines schema (version 2) that the simulator, calibration and the cost model
read without JAX.

A trace file holds one JSON object per line, each with a ``kind``:

* ``header`` (first line, exactly once): ``schema_version``, run id, time, the command, the run config, ``chip``
  (the chip profile the run ran on: a profile name that :func:`speccascade.hardware.load_chip` resolves, or an
  embedded :class:`~speccascade.hardware.chip.ChipProfile`, e.g. a probed one; None when unknown, said in
  ``notes``), the hardware (backend, device kind and count, host), every model (role, name, parameter bytes,
  vocabulary, and its full :class:`~speccascade.hardware.model.ModelProfile`: architecture, dtype, bytes) and
  ``notes``. With the chip and the model profiles a trace holds every cost-model input but the acceptance, which
  its steps measure: any trace can be predicted (:meth:`Header.profiles`).
* ``step``: one decoding step: the strategy's canonical registry name (:mod:`speccascade.strategies`) and its
  knobs as typed fields (:class:`Knobs`), tokens emitted, per drafter->verifier pair the proposed / tested /
  accepted counts, the beta = sum_x min(p, q) sum over tested positions and the accept/reject sequence
  (``"AAR"``; rounds of an inner pair are separated by ``|``), milliseconds per model (staged mode) and the
  step's wall milliseconds.
* ``forward``: one microbenchmark point: a model's forward over ``tokens`` new tokens at ``context`` positions.
* ``compile``: compile seconds of one jitted function (excluded from every timing).

Every record is appended and flushed as it happens (:class:`TraceWriter`), so a killed run keeps every completed
step; :func:`read_trace` keeps them too and reports a partial last line instead of failing. A summary of a whole
benchmark is a separate JSON document (:class:`Summary`).

Version 1 files (the runtime before the strategy registry) are converted on read (:func:`convert_v1_record`): a
v1 step's ``strategy`` was a label whose knobs lived in the header's ``config.strategies``; its ``cascade`` was the
delivered-token-budget cascade, now ``vertical-budget`` with ``k = k_outer`` and ``k_tiny = k_inner``; the
filtered cascade's ``top_m`` is now ``filter_width``. A v1 header names no chip and carries no model profiles:
they stay None and the header's ``notes`` say so. One call over several files refuses a mix of versions
(:func:`read_traces`); ``python -m speccascade.traces upgrade OLD.jsonl NEW.jsonl`` rewrites a v1 file as v2.

This module imports neither JAX nor the models (tested in a subprocess).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_serializer, model_validator

from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.hardware.chip import ChipProfile
from speccascade.hardware.model import ModelProfile
from speccascade.readers import loads_strict, read_json, read_text, validation_message

__all__ = [
    "READABLE_VERSIONS", "RECORD_KINDS", "SCHEMA_VERSION", "CompileRecord", "ForwardRecord", "HardwareInfo",
    "Header", "Knobs", "ModelInfo", "PairRecord", "PairSummary", "Record", "Spread", "StepRecord",
    "StrategySummary", "Summary", "Trace", "TraceWriter", "acceptance_from_steps", "convert_v1_record",
    "file_version", "read_summary", "read_trace", "read_traces", "upgrade_trace", "v1_strategy", "write_summary",
]

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
RECORD_KINDS = ("header", "step", "forward", "compile")
SEQUENCE_CHARS = set("AR|")
UPGRADE_HINT = "python -m speccascade.traces upgrade OLD.jsonl NEW.jsonl"


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
    param_bytes: int = Field(ge=0)     # bytes of weights one forward streams (as stored by the runtime)
    vocab_size: int = Field(ge=1)
    max_len: int = Field(ge=1)
    profile: ModelProfile | None = None  # v2: architecture, dtype and bytes for the cost model (None: unknown)

    @model_validator(mode="after")
    def _profile_matches(self) -> "ModelInfo":
        if self.profile is not None and self.profile.vocab != self.vocab_size:
            raise ValueError(f"model '{self.name}': profile vocab {self.profile.vocab} != vocab_size {self.vocab_size}")
        return self


class Knobs(_Record):
    """A strategy's knobs by their one registry name; unset = not recorded (the registry default applies)."""

    k: int | None = None
    k_tiny: int | None = None
    filter_width: int | None = None
    k_draft: int | None = None
    tree_nodes: int | None = None

    def given(self) -> dict[str, int]:
        """The knobs that are set."""
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}

    @model_serializer(mode="wrap")
    def _only_given(self, handler):  # records write only the knobs that are set
        return {name: value for name, value in handler(self).items() if value is not None}


def _check_knobs(strategy: str, knobs: Knobs) -> None:
    """``knobs`` must be knobs of ``strategy`` and lie in their registry ranges (``check_knobs``)."""
    spec = registry.get(strategy)
    foreign = [name for name in knobs.given() if name not in spec.knob_names]
    if foreign:
        raise ValueError(f"strategy '{spec.name}' has no knob '{foreign[0]}' (its knobs: "
                         f"{', '.join(spec.knob_names) or 'none'})")
    spec.check_knobs(knobs.given())


def _canonical(name: str) -> str:
    return registry.canonical(name)


class Header(_Record):
    kind: Literal["header"] = "header"
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_utc: str
    command: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    chip: str | ChipProfile | None = None  # a load_chip name, or the embedded (e.g. probed) profile
    hardware: HardwareInfo
    models: list[ModelInfo] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _roles_unique(self) -> "Header":
        roles = [model.role for model in self.models]
        if len(set(roles)) != len(roles):
            raise ValueError(f"duplicate model roles: {roles}")
        return self

    def model(self, role: str) -> ModelInfo | None:
        return next((model for model in self.models if model.role == role), None)

    def chip_profile(self) -> ChipProfile | None:
        """The chip profile: the embedded one, or the named one loaded with ``load_chip`` (InputError if unknown
        on this machine); None if the header names none."""
        if self.chip is None or isinstance(self.chip, ChipProfile):
            return self.chip
        from speccascade.hardware.registry import load_chip

        return load_chip(self.chip)

    def model_profiles(self) -> dict[str, ModelProfile]:
        """Role -> ModelProfile of every model that carries one."""
        return {model.role: model.profile for model in self.models if model.profile is not None}

    def profiles(self, roles: Iterable[str] = ("target",)) -> tuple[ChipProfile, dict[str, ModelProfile]]:
        """The cost-model inputs of this run: (chip profile, role -> model profile) for ``roles``; one
        :class:`InputError` line naming what the header lacks (a v1 trace lacks both)."""
        chip = self.chip_profile()
        models = self.model_profiles()
        missing = [f"the {role} model's profile" for role in roles if role not in models]
        if chip is None:
            missing.insert(0, "a chip profile")
        if missing:
            why = f" ({self.notes[0]})" if self.notes else ""
            raise InputError(f"trace {self.run_id} header lacks {', '.join(missing)}{why}")
        return chip, {role: models[role] for role in roles}


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

    def outcomes(self) -> list[int]:
        """The accept (1) / reject (0) decisions in order, round separators dropped."""
        return [1 if mark == "A" else 0 for mark in self.sequence if mark != "|"]


class StepRecord(_Record):
    kind: Literal["step"] = "step"
    strategy: str                      # canonical registry name (an alias given here is canonicalized)
    knobs: Knobs = Knobs()             # the strategy's knobs by their registry names
    mode: Literal["fused", "staged"]   # fused: one jit per step; staged: one jit per stage, timed per model
    repeat: int = Field(ge=0)
    step: int = Field(ge=0)
    context: int = Field(ge=0)         # committed tokens before the step
    tokens_emitted: int = Field(ge=1)
    pairs: dict[str, PairRecord] = Field(default_factory=dict)
    stage_ms: dict[str, float] = Field(default_factory=dict)
    step_ms: float = Field(ge=0)
    extras: dict[str, float] = Field(default_factory=dict)

    @field_validator("strategy")
    @classmethod
    def _canonical_name(cls, value: str) -> str:
        return _canonical(value)

    @model_validator(mode="after")
    def _knobs_of_strategy(self) -> "StepRecord":
        _check_knobs(self.strategy, self.knobs)
        return self

    def knob_values(self) -> dict[str, int]:
        """Every knob of the strategy: the recorded ones, registry defaults for the rest."""
        return registry.get(self.strategy).check_knobs(self.knobs.given())


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
    strategy: str                      # canonical registry name
    what: str                          # "step", "prefill", "stages"
    compile_s: float = Field(ge=0)

    @field_validator("strategy")
    @classmethod
    def _canonical_name(cls, value: str) -> str:
        return _canonical(value)


Record = Annotated[Union[Header, StepRecord, ForwardRecord, CompileRecord], Field(discriminator="kind")]
_RECORD = TypeAdapter(Record)


# --- version 1 ------------------------------------------------------------------------------------------
V1_NOTE = ("converted on read from schema_version 1: a v1 header names no chip profile and carries no model "
           "profiles (chip and models[].profile are None); v1 strategy 'cascade' read as 'vertical-budget' "
           "(k = k_outer, k_tiny = k_inner), 'filtered' top_m as filter_width")


def v1_strategy(label: str, config: Any = None) -> tuple[str, dict[str, int | None]]:
    """(canonical name, knobs) of a v1 strategy label, its knobs taken from the v1 header's
    ``config.strategies[label]`` when given (a knob it lacks is None). Unknown names raise :class:`InputError`."""
    config = config if isinstance(config, dict) else {}
    original = str(config.get("strategy", label))
    if original.strip().lower() == "cascade":  # v1's cascade ran Draft reviews until k_outer tokens existed
        return "vertical-budget", {"k": config.get("k_outer"), "k_tiny": config.get("k_inner")}
    name = _canonical(original)
    spec = registry.get(name)
    renamed = {"filter_width": "top_m"}
    return name, {knob: config.get(renamed.get(knob, knob), config.get(knob)) for knob in spec.knob_names}


def convert_v1_record(data: Any, header_config: dict[str, Any] | None = None, notes: list[str] | None = None,
                      _cache: dict | None = None) -> Any:
    """One v1 record (parsed JSON) -> its v2 form (still unvalidated). ``header_config`` is the v1 header's
    ``config`` (it holds each label's knobs); ``notes`` collects what the conversion could not recover."""
    if not isinstance(data, dict):
        return data
    kind = data.get("kind")
    if kind == "header":
        return {**data, "schema_version": SCHEMA_VERSION, "notes": [*data.get("notes", []), V1_NOTE]}
    if kind not in ("step", "compile") or not isinstance(data.get("strategy"), str):
        return data
    label = data["strategy"]
    cache = {} if _cache is None else _cache
    if label not in cache:
        strategies = (header_config or {}).get("strategies") if isinstance(header_config, dict) else None
        entry = strategies.get(label) if isinstance(strategies, dict) else None
        name, knobs = v1_strategy(label, entry)
        missing = [knob for knob, value in knobs.items() if value is None]
        if missing and notes is not None:
            notes.append(f"v1 strategy '{label}' ({name}): knobs {', '.join(missing)} not recorded in the header "
                         "(registry defaults apply)")
        cache[label] = (name, {knob: value for knob, value in knobs.items() if value is not None})
    name, knobs = cache[label]
    return {**data, "strategy": name, **({"knobs": knobs} if kind == "step" else {})}


# --- writing --------------------------------------------------------------------------------------------
class TraceWriter:
    """Appends records to a JSON Lines trace, one flushed line each (``fsync=True`` also syncs to disk)."""

    def __init__(self, path: str | Path, header: Header, fsync: bool = False, *, force: bool = True):
        """``force=False`` keeps an existing file (one InputError line; the CLI's output policy, see
        speccascade/writers.py); special files, paths under a file and an empty name are always refused."""
        if header.schema_version != SCHEMA_VERSION:
            raise InputError(f"a trace is written with schema_version {SCHEMA_VERSION}, "
                             f"the header says {header.schema_version}")
        from speccascade.writers import check_new_file

        self.path = check_new_file(path, force=force)
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


# --- reading --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trace:
    path: Path
    header: Header                     # always in the v2 form (a v1 header converted, see ``file_version``)
    steps: tuple[StepRecord, ...]
    forwards: tuple[ForwardRecord, ...]
    compiles: tuple[CompileRecord, ...]
    dropped_partial_line: int | None   # line number of a partial last line that was dropped (a killed run)
    file_version: int = SCHEMA_VERSION  # the schema_version the file was written with

    @property
    def notes(self) -> list[str]:
        return list(self.header.notes)

    def strategies(self) -> list[str]:
        """Canonical names of the strategies with steps, in order of first appearance."""
        return list(dict.fromkeys(step.strategy for step in self.steps))

    def steps_of(self, strategy: str, mode: str | None = None, knobs: dict[str, int] | None = None
                 ) -> list[StepRecord]:
        """Steps of ``strategy`` (a name or alias), optionally of one mode and with the given knob values."""
        name = _canonical(strategy)
        return [step for step in self.steps if step.strategy == name and (mode is None or step.mode == mode)
                and (knobs is None or all(step.knobs.given().get(key) == value for key, value in knobs.items()))]


def _problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return validation_message(error).replace("Value error, ", "")
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error.msg})"
    return str(error)


def _read_text(path: Path) -> str:
    """The trace's text through the shared input layer (regular file, size limit, UTF-8)."""
    try:
        return read_text(path, "trace")
    except InputError as error:
        if not Path(path).exists():
            raise InputError(f"trace file not found: {path}") from None
        raise error from None


def _version_of(value: Any, path: Path, number: int) -> int:
    version = value.get("schema_version", 1) if isinstance(value, dict) else None
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"{path}:{number}: schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise InputError(f"{path}:{number}: schema_version {version} is newer than this reader "
                         f"({SCHEMA_VERSION}); upgrade speccascade")
    if version not in READABLE_VERSIONS:
        raise InputError(f"{path}:{number}: unknown schema_version {version} (this reader reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))})")
    return version


def file_version(path: str | Path) -> int:
    """The schema_version of a trace's header line (checked like :func:`read_trace` checks it)."""
    path = Path(path)
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = loads_strict(line)
        except (ValueError, RecursionError) as error:
            raise InputError(f"{path}:{number}: malformed trace record: {_problem(error)}") from None
        if not isinstance(value, dict) or value.get("kind") != "header":
            kind = value.get("kind") if isinstance(value, dict) else type(value).__name__
            raise InputError(f"{path}:{number}: the first record must be the header, got '{kind}'")
        return _version_of(value, path, number)
    raise InputError(f"{path}: no header record (empty or truncated trace)")


def _read(path: Path) -> tuple[Header, list[BaseModel], int | None, int]:
    """(header in v2 form, the other records in file order, dropped partial line, the file's version)."""
    lines = _read_text(path).split("\n")
    complete_end = len(lines) - 1  # the piece after the last newline is partial (or empty)
    header, records, dropped, version = None, [], None, SCHEMA_VERSION
    notes: list[str] = []
    cache: dict = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = loads_strict(line)
            if header is None and isinstance(value, dict) and value.get("kind") == "header":
                version = _version_of(value, path, number)
            if version == 1:
                value = convert_v1_record(value, header.config if header is not None else None, notes, cache)
            record = _RECORD.validate_python(value)
        except (ValueError, RecursionError, ValidationError) as error:  # JSONDecodeError is a ValueError
            if number - 1 == complete_end and isinstance(error, (json.JSONDecodeError, ValidationError)):
                dropped = number
                break
            raise InputError(f"{path}:{number}: malformed trace record: {_problem(error)}") from None
        except InputError as error:  # a v1 strategy label the registry does not know
            raise InputError(f"{path}:{number}: malformed trace record: {error}") from None
        if isinstance(record, Header):
            if header is not None:
                raise InputError(f"{path}:{number}: a second header record")
            header = record
        elif header is None:
            raise InputError(f"{path}:{number}: the first record must be the header, got '{record.kind}'")
        else:
            records.append(record)
    if header is None:
        raise InputError(f"{path}: no header record (empty or truncated trace)")
    if notes:
        header = header.model_copy(update={"notes": [*header.notes, *notes]})
    return header, records, dropped, version


def read_trace(path: str | Path) -> Trace:
    """Read and validate a trace (version 1 converted on read). A malformed line raises :class:`InputError`
    naming its line number, except a partial last line without its newline (a run killed mid-write), which is
    dropped and reported in ``dropped_partial_line``."""
    path = Path(path)
    header, records, dropped, version = _read(path)
    return Trace(path, header, tuple(r for r in records if isinstance(r, StepRecord)),
                 tuple(r for r in records if isinstance(r, ForwardRecord)),
                 tuple(r for r in records if isinstance(r, CompileRecord)), dropped, version)


def read_traces(paths: Sequence[str | Path]) -> list[Trace]:
    """Read several traces of one schema version; a mix of versions is refused in one line (before any file is
    parsed past its header)."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise InputError("no trace files given")
    versions = {path: file_version(path) for path in paths}
    if len(set(versions.values())) > 1:
        old = next(path for path, version in versions.items() if version != SCHEMA_VERSION)
        new = next(path for path, version in versions.items() if version == SCHEMA_VERSION)
        raise InputError(f"traces mix schema versions ({old} is v{versions[old]}, {new} is v{versions[new]}); "
                         f"read them in separate calls or upgrade the old ones first: {UPGRADE_HINT}")
    return [read_trace(path) for path in paths]


def upgrade_trace(source: str | Path, destination: str | Path) -> Path:
    """Rewrite a trace (v1 or v2) as a version-2 file in its record order; the conversion notes go into its
    header. A partial last line of the source is left out."""
    source, destination = Path(source), Path(destination)
    if source.resolve() == destination.resolve():
        raise InputError(f"{destination}: write the upgraded trace to a new file, not over {source}")
    header, records, _, _ = _read(source)
    with TraceWriter(destination, header) as writer:
        for record in records:
            writer.write(record)
    return destination


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


def _convert_summary_v1(data: dict) -> dict:
    strategies = {}
    for label, entry in (data.get("strategies") or {}).items():
        if isinstance(entry, dict):
            name, knobs = v1_strategy(entry.get("strategy", label), entry.get("config"))
            entry = {**entry, "strategy": name, "knobs": {k: v for k, v in knobs.items() if v is not None}}
            if "tokens_per_step" in entry:  # v1's name for the measured mean
                entry["mean_tokens_per_step"] = entry.pop("tokens_per_step")
            label = name
        strategies[label] = entry
    return {**data, "schema_version": SCHEMA_VERSION, "strategies": strategies,
            "notes": [*data.get("notes", []), V1_NOTE.replace("header", "summary")]}


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
                data = _convert_summary_v1(data)
        return Summary.model_validate(data)
    except ValidationError as error:
        raise InputError(f"{path}: invalid summary: {_problem(error)}") from None
    except InputError as error:
        raise InputError(f"{path}: invalid summary: {error}") from None


# --- command line ---------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m speccascade.traces upgrade OLD NEW`` (rewrite as v2) or ``check FILE...`` (validate)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) == 3 and args[0] == "upgrade":
            written = upgrade_trace(args[1], args[2])
            print(f"{written}: schema_version {SCHEMA_VERSION}")
            return 0
        if len(args) >= 2 and args[0] == "check":
            for trace in read_traces(args[1:]):
                print(f"{trace.path}: schema_version {trace.file_version}, {len(trace.steps)} steps, "
                      f"strategies {', '.join(trace.strategies()) or 'none'}")
            return 0
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("usage: python -m speccascade.traces upgrade OLD.jsonl NEW.jsonl | check FILE.jsonl...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
