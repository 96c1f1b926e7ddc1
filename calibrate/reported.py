"""Published measurements as data: the schema of ``speccascade validate --reported FILE.json`` (jax-free).

A reported file holds what papers *state*: one record per table row, each naming its source (paper, table), the
configuration it describes (chip, models, strategy, knobs), the acceptance it reports, and the measured figure
(``reported``: speedup, ms/token and/or tokens/s). Numbers the source does not state but a prediction needs are
the record's own choices and are listed in ``assumed``; rows the cost model cannot describe (a decoding method
outside the strategy registry, a theoretical bound) stay in the file with ``unmodelled`` saying why, so nothing a
paper claims is dropped silently.

Acceptance, by the strategy's pair parameters (``speccascade/strategies.py``):

==================  =================================================================================
parameter           the record gives
==================  =================================================================================
alpha               ``alpha``, or ``tokens_per_step`` (inverted through E(alpha, K), see reported_predict)
gamma_total         ``alpha`` (the total), ``gammas`` [gamma_0, gamma_1|0, gamma_2|1] (seed eq. 6), or
                    ``tokens_per_step``
alpha_tiny          ``alpha_tiny``
alphas              ``alphas`` (horizontal, one per position)
heads_accuracy      ``heads_accuracy`` (a JSON file next to the reported file, or inline); a
                    ``tokens_per_step`` then replaces the tree's expected tokens
==================  =================================================================================

Mode: with ``c`` the record is predicted by Leviathan et al.'s abstract model (a draft forward costs c target
steps, verification one step), so only a speedup can be compared; otherwise ``hardware`` and ``target`` are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from speccascade import strategies as registry
from speccascade.costmodel.config import HeadsAccuracy
from speccascade.errors import InputError
from speccascade.readers import read_json
from speccascade.limits import MAX_BATCH, MAX_CHIPS, MAX_CONTEXT, MAX_FILTER_WIDTH, MAX_K, MAX_TREE_NODES
from speccascade.schema import Schema
from speccascade.strategy_names import StrategyName

Metric = Literal["speedup", "ms_per_token", "tokens_per_s"]
METRICS: tuple[str, ...] = ("speedup", "ms_per_token", "tokens_per_s")
Probability = Field(default=None, ge=0.0, le=1.0)


class _Frozen(Schema):  # finite numbers, no booleans for numbers (speccascade/schema.py)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Reported(_Frozen):
    """What the source measured (at least one): speedup over autoregressive decoding, ms/token, tokens/s."""

    speedup: float | None = Field(default=None, gt=0)
    ms_per_token: float | None = Field(default=None, gt=0)
    tokens_per_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_at_least(self) -> "Reported":
        if all(getattr(self, metric) is None for metric in METRICS):
            raise ValueError(f"reported needs at least one of {', '.join(METRICS)}")
        return self


class ReportedRecord(_Frozen):
    """One published row: configuration, acceptance, measured figure, and where it comes from."""

    name: str
    source: str
    unmodelled: str | None = None        # why the cost model cannot predict this row (kept, not predicted)
    hardware: str | None = None          # chip profile name or path
    chips: int = Field(default=1, ge=1, le=MAX_CHIPS)  # chips used
    tensor_parallel: int | None = Field(default=None, ge=1, le=MAX_CHIPS)  # chips one target is split over (default: chips)
    strategy: StrategyName | None = None
    target: str | None = None
    draft: str | None = None
    tiny: str | None = None
    k: int | None = Field(default=None, ge=1, le=MAX_K)
    k_tiny: int | None = Field(default=None, ge=1, le=64)
    filter_width: int | None = Field(default=None, ge=1, le=MAX_FILTER_WIDTH)
    tree_nodes: int | None = Field(default=None, ge=0, le=MAX_TREE_NODES)
    verify_tokens: int | None = Field(default=None, ge=1, le=MAX_TREE_NODES + 1)  # heads: tokens of the tree verification (nodes + 1)
    alpha: float | None = Probability
    alpha_tiny: float | None = Probability
    gammas: list[float] | None = Field(default=None, min_length=3, max_length=3)
    alphas: list[float] | None = Field(default=None, min_length=1)
    heads_accuracy: str | HeadsAccuracy | None = None
    tokens_per_step: float | None = Field(default=None, ge=1.0)
    c: float | None = Field(default=None, ge=0.0)
    c_tiny: float | None = Field(default=None, ge=0.0)
    verify_cost: float | None = Field(default=None, gt=0.0)
    batch: int = Field(default=1, ge=1, le=MAX_BATCH)
    context: int = Field(default=1024, ge=0, le=MAX_CONTEXT)
    reported: Reported
    compare: Metric | None = None        # which reported figure to compare (default: the first of METRICS given)
    assumed: list[str] = Field(default_factory=list)  # fields the source does not state (chosen here)
    notes: str = ""

    @property
    def abstract(self) -> bool:
        return self.c is not None

    @property
    def metric(self) -> str:
        return self.compare or next(m for m in METRICS if getattr(self.reported, m) is not None)

    def reported_value(self, metric: str | None = None) -> float:
        """The reported figure compared for ``metric`` (default: the record's own)."""
        metric = metric or self.metric
        problem = self._metric_problem(metric)
        if problem:
            raise InputError(f"record '{self.name}': {problem}")
        return getattr(self.reported, metric)

    def _metric_problem(self, metric: str) -> str | None:
        if getattr(self.reported, metric) is None:
            given = ", ".join(m for m in METRICS if getattr(self.reported, m) is not None)
            return f"reports no {metric} (it reports {given})"
        if self.abstract and metric != "speedup":
            return f"the abstract model (c given) predicts a speedup only, not {metric}"
        return None

    @model_validator(mode="after")
    def _describable(self) -> "ReportedRecord":
        if any(not 0.0 <= value <= 1.0 for value in (self.gammas or []) + (self.alphas or [])):
            raise ValueError("every acceptance in gammas and alphas must lie in [0, 1]")
        if self.unmodelled is not None:
            return self
        if self.strategy is None:
            raise ValueError("needs a strategy (or 'unmodelled': why the cost model cannot predict it)")
        problem = self._metric_problem(self.metric)
        if problem:
            raise ValueError(problem)
        spec = registry.get(self.strategy)
        if not self.abstract and (self.hardware is None or self.target is None):
            raise ValueError("needs hardware and target (or c, the abstract draft/target cost ratio)")
        for role, field, abstract_field in (("draft", "draft", "c"), ("tiny", "tiny", "c_tiny")):
            given = getattr(self, abstract_field if self.abstract else field)
            if role in spec.roles and given is None:
                raise ValueError(f"{spec.name} needs {abstract_field if self.abstract else field}")
        self._check_acceptance(spec)
        if self.verify_tokens is not None:
            if "heads" not in spec.roles:
                raise ValueError("verify_tokens is for heads (tree nodes + 1); other strategies' verification "
                                 "length follows from k")
            if self.tree_nodes is not None and self.tree_nodes != self.verify_tokens - 1:
                raise ValueError(f"verify_tokens {self.verify_tokens} disagrees with tree_nodes {self.tree_nodes}")
        return self

    def _check_acceptance(self, spec: registry.StrategySpec) -> None:
        """Each pair parameter of the strategy has exactly one source (see the module docstring)."""
        parameters = {pair.parameter for pair in spec.pairs}
        if not parameters:
            if self.tokens_per_step is not None and self.tokens_per_step != 1.0:
                raise ValueError(f"{spec.name} yields one token per step; tokens_per_step must be 1")
            return
        if "alpha_tiny" in parameters and self.alpha_tiny is None:
            raise ValueError(f"{spec.name} needs alpha_tiny (the Draft's acceptance of Tiny tokens)")
        sources = {"alpha": ("alpha", "tokens_per_step"), "gamma_total": ("alpha", "gammas", "tokens_per_step")}
        for parameter in parameters & set(sources):
            given = [name for name in sources[parameter] if getattr(self, name) is not None]
            if len(given) != 1:
                raise ValueError(f"{spec.name} needs exactly one of {', '.join(sources[parameter])} "
                                 f"(got {', '.join(given) or 'none'})")
        for parameter in parameters & {"alphas", "heads_accuracy"}:
            if getattr(self, parameter) is None:
                raise ValueError(f"{spec.name} needs {parameter}")


class ReportedFile(_Frozen):
    """A reported file: what it collects, and its records (at least one)."""

    description: str = ""
    records: list[ReportedRecord] = Field(min_length=1)


@dataclass(frozen=True)
class ReportedSet:
    """A loaded file: its records and the directory relative paths (heads accuracy files) resolve against."""

    path: Path
    records: tuple[ReportedRecord, ...]
    description: str = ""

    @property
    def base(self) -> Path:
        return self.path.parent

    def heads_accuracy(self, record: ReportedRecord) -> HeadsAccuracy | None:
        """The record's heads accuracies (a path is read relative to the reported file)."""
        value = record.heads_accuracy
        if value is None or isinstance(value, HeadsAccuracy):
            return value
        path = Path(value)
        return HeadsAccuracy.from_file(path if path.is_absolute() else self.base / path)


def _error_line(path: Path, data, error: ValidationError) -> str:
    """One line: the file, the record (number and name) and the first problem."""
    first = error.errors()[0]
    location = list(first["loc"])
    where = ""
    if len(location) >= 2 and location[0] == "records" and isinstance(location[1], int):
        index = location[1]
        raw = data.get("records", [])[index] if isinstance(data, dict) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"record {index + 1}" + (f" ('{name}')" if name else "") + ": "
        location = location[2:]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown field '{'.'.join(map(str, location))}'"
    elif first["type"] == "missing":
        message = f"missing field '{'.'.join(map(str, location))}'"
    elif location:
        message = f"field '{'.'.join(map(str, location))}': {message}"
    return f"{path}: {where}{message}"


def load_reported(path: str | Path) -> ReportedSet:
    """Read and validate a reported file; every problem becomes one :class:`InputError` line naming the file and
    the record. Heads accuracy files are read now, so a missing one fails here, not halfway through a table."""
    path = Path(path)
    data = read_json(path)
    try:
        parsed = ReportedFile.model_validate(data)
    except ValidationError as error:
        raise InputError(_error_line(path, data, error)) from None
    loaded = ReportedSet(path, tuple(parsed.records), parsed.description)
    for index, record in enumerate(loaded.records, 1):
        try:
            if record.unmodelled is None:
                loaded.heads_accuracy(record)
        except InputError as error:
            raise InputError(f"{path}: record {index} ('{record.name}'): {error}") from None
    return loaded
