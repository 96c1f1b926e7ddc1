"""Find the best decoding configuration: exhaustive and vectorized over the integer grid.

A *structure* is one discrete choice: strategy, draft model (with quantization) and its acceptance, whether a Tiny
stage is added (and which), the filter width m, chips (tensor parallelism of the target) and batch size. For each
structure the profiles are placed once (``stage_timings``) and ``predict.evaluate`` runs once over the whole
(K, k_tiny) grid as broadcast arrays; the best cell per structure is kept. Objectives:

- ``ms_per_token`` (default): minimize the time per generated token of one sequence;
- ``tokens_per_s_per_chip``: maximize batch x 1000 / ms_per_token / chips;
- ``throughput``: maximize batch x 1000 / ms_per_token subject to ms_per_token <= ``latency_limit_ms``.

Configurations that do not fit (any memory level's capacity, via ``placement.place``) or break the latency limit
are infeasible. Each losing structure gets a reason: memory, latency, cost ratio (its steps cost more), or
acceptance (its steps yield fewer tokens), whichever explains more of its gap to the winner.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.hardware import list_models, load_chip, load_model

from .config import PredictConfig
from .predict import evaluate
from .optimize_result import OptimizeResult, why_loses  # noqa: F401  (re-exported)
from .timings import StageTimings, stage_timings

Objective = Literal["ms_per_token", "tokens_per_s_per_chip", "throughput"]
_SCALAR_PARAMETERS = {"alpha", "alpha_tiny", "gamma_total"}


def searchable() -> tuple[str, ...]:
    """Strategies the optimizer can search: over Tiny/Draft/Target models, acceptance given as numbers (not per
    position or per head), from the cost model's registered implementations."""
    from .strategies import COSTMODEL

    return tuple(name for name in COSTMODEL.names()
                 if set(registry.get(name).roles) <= {"tiny", "draft", "target"}
                 and {pair.parameter for pair in registry.get(name).pairs} <= _SCALAR_PARAMETERS)


DEFAULT_CHIPS = [1, 2, 4, 8]
DEFAULT_QUANTIZATIONS = ["int8", "int4"]


def family_drafts(target: str) -> list[str]:
    """The registry's models of the target's family with fewer parameters (the default draft candidates)."""
    profile = load_model(target)
    return [name for name in list_models() if name != profile.name.split(":")[0]
            and (other := load_model(name)).family == profile.family and other.architecture == profile.architecture
            and other.params_total < profile.params_total]


def registry_tinies() -> list[str]:
    """The registry's projection models (the seed's Tiny): the default Tiny candidates."""
    return [name for name in list_models() if load_model(name).architecture == "projection"]


class Candidate(BaseModel):
    """A candidate model with its acceptance rate (alpha for drafts, alpha_tiny for tiny models)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    alpha: float | None = Field(default=None, ge=0.0, le=1.0)


class OptimizeRequest(BaseModel):
    """What ``speccascade optimize`` searches. Hardware mode: ``hardware`` + ``target`` + candidate drafts and
    tinies. Abstract mode: ``c`` (and ``c_tiny``) instead of hardware, verification = one target step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hardware: str | None = None
    target: str | None = None
    drafts: list[Candidate] | None = None       # None: the target family's smaller models (hardware mode)
    tinies: list[Candidate] | None = None       # None: the registry's Tiny (projection) models
    quantizations: list[str] | None = None      # None: int8 and int4 of every draft
    strategies: list[str] = Field(default_factory=lambda: list(searchable()))
    alpha: float | None = Field(default=None, ge=0.0, le=1.0)
    alpha_tiny: float | None = Field(default=None, ge=0.0, le=1.0)
    c: float | None = Field(default=None, ge=0.0)
    c_tiny: float | None = Field(default=None, ge=0.0)
    gamma_tiny: float = Field(default=0.95, ge=0.0, le=1.0)
    gamma_draft_given_tiny: float = Field(default=0.85, ge=0.0, le=1.0)
    k_max: int = Field(default=32, ge=1, le=4096)
    k_tiny_max: int = Field(default=8, ge=1, le=64)
    filter_widths: list[int] = Field(default_factory=lambda: [16, 64, 256, 1024])
    chips: list[int] | None = None              # None: 1, 2, 4, 8 (hardware mode)
    batches: list[int] = Field(default_factory=lambda: [1])
    context: int = Field(default=1024, ge=0)
    combine: Literal["max", "sum"] = "max"
    objective: Objective = "ms_per_token"
    latency_limit_ms: float | None = Field(default=None, gt=0.0)
    top: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> "OptimizeRequest":
        try:
            names = [registry.canonical(name) for name in self.strategies]
        except InputError as error:
            raise ValueError(str(error)) from None
        unknown = [name for name in names if name not in searchable()]
        if unknown:
            raise ValueError(f"the optimizer does not search {', '.join(unknown)}; it searches {', '.join(searchable())}")
        object.__setattr__(self, "strategies", list(dict.fromkeys(names)))
        if self.abstract:
            if self.c is None:
                raise ValueError("give --hardware and --target, or --c for the abstract cost ratio")
            if self.alpha is None:
                raise ValueError("the abstract mode needs --alpha")
        elif self.target is None:
            raise ValueError("hardware mode needs --target")
        if self.objective == "throughput" and self.latency_limit_ms is None:
            raise ValueError("the throughput objective needs --latency-limit (ms per token)")
        for name, values in (("chips", self.chip_counts), ("batch", self.batches), ("filter widths", self.filter_widths)):
            if not values or min(values) < 1:
                raise ValueError(f"{name} must be a non-empty list of integers >= 1")
        return self

    @property
    def abstract(self) -> bool:
        return self.hardware is None

    @property
    def chip_counts(self) -> list[int]:
        return self.chips if self.chips is not None else ([1] if self.abstract else DEFAULT_CHIPS)

    def draft_candidates(self) -> list[Candidate]:
        if self.drafts is not None or self.abstract:
            return list(self.drafts or [])
        return [Candidate(name=name) for name in family_drafts(self.target)]

    def tiny_candidates(self) -> list[Candidate]:
        if self.tinies is not None or self.abstract:
            return list(self.tinies or [])
        return [Candidate(name=name) for name in registry_tinies()]

    def quantization_list(self) -> list[str]:
        return self.quantizations if self.quantizations is not None else DEFAULT_QUANTIZATIONS


@dataclass(frozen=True)
class Structure:
    """One discrete choice of the search (everything but K and k_tiny)."""

    strategy: str
    draft: str | None = None
    alpha: float | None = None
    tiny: str | None = None
    alpha_tiny: float | None = None
    filter_width: int | None = None
    chips: int = 1
    batch: int = 1

    @property
    def family(self) -> tuple:
        return (self.strategy, self.draft, self.tiny)

    def label(self) -> str:
        parts = [self.strategy]
        if self.draft:
            parts.append(f"draft {self.draft} (a={self.alpha:g})" if self.alpha is not None else f"draft {self.draft}")
        if self.tiny:
            parts.append(f"tiny {self.tiny}")
        if self.filter_width:
            parts.append(f"m={self.filter_width}")
        parts.append(f"chips {self.chips}, batch {self.batch}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Choice:
    """The best (K, k_tiny) of one structure, with its figures."""

    structure: Structure
    k: int | None
    k_tiny: int | None
    ms_per_token: float
    expected_tokens: float
    step_ms: float
    speedup: float
    fits: bool
    objective_value: float
    feasible: bool
    units: str
    memory_per_chip_gb: dict[str, float] = field(default_factory=dict)
    placement: dict[str, str] = field(default_factory=dict)
    configurations: int = 1
    note: str = ""
    acceptance: float | None = None      # per-token acceptance by the target (filtered: gamma_total, eq. 6)
    cost_ratio: float | None = None      # t_draft(1) / t_target(1)

    @property
    def tokens_per_s(self) -> float | None:
        return None if self.units != "ms" else 1e3 / self.ms_per_token

    def to_json(self) -> dict:
        out = asdict(self.structure) | {"k": self.k, "k_tiny": self.k_tiny, "ms_per_token": self.ms_per_token,
                                        "units": self.units, "speedup": self.speedup,
                                        "expected_tokens_per_step": self.expected_tokens, "step_ms": self.step_ms,
                                        "fits": self.fits, "feasible": self.feasible,
                                        "acceptance": self.acceptance, "cost_ratio": self.cost_ratio,
                                        "objective_value": self.objective_value}
        if self.tokens_per_s is not None:
            out |= {"tokens_per_s": self.tokens_per_s,
                    "tokens_per_s_per_chip": self.structure.batch * self.tokens_per_s / self.structure.chips,
                    "throughput_tokens_per_s": self.structure.batch * self.tokens_per_s}
        out |= {"memory_per_chip_gb": self.memory_per_chip_gb, "placement": self.placement}
        return out


# --- enumeration -----------------------------------------------------------------------------------------

def _expand_quantized(request: OptimizeRequest) -> list[Candidate]:
    drafts = []
    for candidate in request.draft_candidates():
        alpha = candidate.alpha if candidate.alpha is not None else request.alpha
        if alpha is None:
            raise InputError(f"draft {candidate.name} has no acceptance: give NAME=ALPHA or --alpha")
        names = [candidate.name]
        if ":" not in candidate.name:
            names += [f"{candidate.name}:{dtype}" for dtype in request.quantization_list()]
        for name in names:
            load_model(name)  # unknown names and quantizations fail here, listing the known ones
            drafts.append(Candidate(name=name, alpha=alpha))
    return list(dict.fromkeys(drafts))


def _tinies(request: OptimizeRequest) -> list[Candidate]:
    tinies = []
    for candidate in request.tiny_candidates():
        alpha = candidate.alpha if candidate.alpha is not None else request.alpha_tiny
        load_model(candidate.name)
        tinies.append(Candidate(name=candidate.name, alpha=alpha))
    return tinies


def _structures_of(strategy: str, request: OptimizeRequest, drafts: list[Candidate], tinies: list[Candidate],
                   common: dict) -> list[Structure]:
    """The structures of one strategy: its roles pick the draft and tiny candidates, its knobs the filter widths;
    a strategy whose Tiny pair needs alpha_tiny skips tinies without one."""
    spec = registry.get(strategy)
    parameters = {pair.parameter for pair in spec.pairs}
    draft_options = [(d.name, d.alpha) for d in drafts] if "draft" in spec.roles else [(None, None)]
    tiny_options = [(t.name, t.alpha) for t in tinies] if "tiny" in spec.roles else [(None, None)]
    widths = request.filter_widths if "filter_width" in spec.knob_names else [None]
    out = []
    for draft, alpha in draft_options:
        for tiny, alpha_tiny in tiny_options:
            if "alpha_tiny" in parameters and alpha_tiny is None:
                continue
            out += [Structure(strategy, draft, alpha, tiny, alpha_tiny if "alpha_tiny" in parameters else None,
                              width, **common) for width in widths]
    return out


def structures(request: OptimizeRequest) -> list[Structure]:
    """Every discrete choice the request allows."""
    if not request.abstract:  # unknown chip or target: one line before anything else
        load_chip(request.hardware)
        load_model(request.target)
    if request.abstract:  # one draft of cost c (and a Tiny of cost c_tiny when given)
        drafts = [Candidate(name="draft", alpha=request.alpha)]
        tinies = [Candidate(name="tiny", alpha=request.alpha_tiny)] if request.c_tiny is not None else []
        out = [replace(structure, draft=None, tiny=None)
               for strategy in request.strategies
               for structure in _structures_of(strategy, request, drafts, tinies, {})
               if "tiny" not in registry.get(strategy).roles or tinies]
        return out
    drafts, tinies = _expand_quantized(request), _tinies(request)
    out = []
    for chips in request.chip_counts:
        for batch in request.batches:
            for strategy in request.strategies:
                spec = registry.get(strategy)
                if ("draft" in spec.roles and not drafts) or ("tiny" in spec.roles and not tinies):
                    continue
                out += _structures_of(strategy, request, drafts, tinies, {"chips": chips, "batch": batch})
    if not out:
        raise InputError("nothing to search: give --draft candidates (and --tiny for cascades) or other --strategies")
    return out


# --- evaluation ------------------------------------------------------------------------------------------

def _config(request: OptimizeRequest, structure: Structure, k: int, k_tiny: int) -> PredictConfig:
    fields = {"strategy": structure.strategy, "k": k, "k_tiny": k_tiny, "batch": structure.batch,
              "context": request.context, "combine": request.combine, "gamma_tiny": request.gamma_tiny,
              "gamma_draft_given_tiny": request.gamma_draft_given_tiny}
    if structure.alpha is not None:
        fields["alpha"] = structure.alpha
    if structure.alpha_tiny is not None:
        fields["alpha_tiny"] = structure.alpha_tiny
    if structure.filter_width is not None:
        fields["filter_width"] = structure.filter_width
    if request.abstract:
        return PredictConfig(**fields, c=request.c, c_tiny=request.c_tiny)
    roles = {"draft": structure.draft, "tiny": structure.tiny}
    return PredictConfig(**fields, hardware=request.hardware, chips=structure.chips, target=request.target,
                         **{role: name for role, name in roles.items() if name is not None})


def k_grid(request: OptimizeRequest, structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """Broadcastable K and k_tiny arrays for a structure (k_tiny only where the strategy uses it)."""
    k_max = request.k_max
    knobs = registry.get(structure.strategy).knob_names
    if request.abstract and knobs == ("k",) and not registry.get(structure.strategy).roles.count("tiny") \
            and request.c > 0 and request.alpha < 1:
        from .optimal import continuous_optimal_k

        k_star = float(continuous_optimal_k(request.alpha, request.c))
        if np.isfinite(k_star):
            k_max = int(min(4096, max(k_max, math.ceil(k_star) + 1)))
    ks = np.arange(1, k_max + 1, dtype=float)[:, None] if "k" in knobs else np.array([[1.0]])
    k_tinies = np.arange(1, request.k_tiny_max + 1, dtype=float)[None, :] if "k_tiny" in knobs else np.array([[1.0]])
    return ks, k_tinies


def objective_values(request: OptimizeRequest, structure: Structure, ms_per_token: np.ndarray) -> np.ndarray:
    """Larger is better: -ms/token, tokens/s per chip, or throughput (-inf over the latency limit)."""
    if request.objective == "ms_per_token":
        values = -ms_per_token
    else:
        per_second = 1e3 / ms_per_token * structure.batch
        values = per_second / structure.chips if request.objective == "tokens_per_s_per_chip" else per_second
    if request.latency_limit_ms is not None:
        values = np.where(ms_per_token <= request.latency_limit_ms, values, -np.inf)
    return values


def best_of(request: OptimizeRequest, structure: Structure, keep: int = 1) -> tuple[list[Choice], StageTimings]:
    """Evaluate one structure over its whole (K, k_tiny) grid at once; the ``keep`` best cells, best first."""
    ks, k_tinies = k_grid(request, structure)
    config = _config(request, structure, int(ks.max()), int(k_tinies.max()))
    spec = registry.get(structure.strategy)
    verify = int(spec.step_shape({"k": int(ks.max()), "k_tiny": int(k_tinies.max())}).verify_tokens())
    timings = stage_timings(config, verify_tokens=verify)
    result = evaluate(structure.strategy, config, timings, k=ks, k_tiny=k_tinies)
    shape = np.broadcast_shapes(ks.shape, k_tinies.shape)
    flat = lambda name: np.broadcast_to(np.asarray(result[name], float), shape).ravel()  # noqa: E731
    ms = flat("ms_per_token")
    values = objective_values(request, structure, ms)
    fits = timings.placement.fits if timings.placement is not None else True
    placement = timings.placement
    k_flat, k_tiny_flat = np.broadcast_to(ks, shape).ravel(), np.broadcast_to(k_tinies, shape).ravel()
    order = np.lexsort((k_tiny_flat, k_flat, -values))[:keep]
    acceptance = structure.alpha
    if "gamma_total" in {pair.parameter for pair in spec.pairs} and structure.alpha is not None:
        acceptance = request.gamma_tiny * request.gamma_draft_given_tiny * structure.alpha
    cost_ratio = (float(timings.forward_ms("draft", 1)) / float(timings.forward_ms("target", 1))
                  if "draft" in spec.roles else None)
    choices = [Choice(
        structure=structure, k=int(k_flat[i]) if "k" in spec.knob_names else None,
        k_tiny=int(k_tiny_flat[i]) if "k_tiny" in spec.knob_names else None,
        ms_per_token=float(ms[i]), expected_tokens=float(flat("expected_tokens")[i]),
        step_ms=float(flat("step_ms")[i]), speedup=float(flat("speedup")[i]), fits=fits,
        objective_value=float(values[i]), feasible=fits and bool(np.isfinite(values[i])), units=timings.unit,
        memory_per_chip_gb={level: used / 1e9 for level, used in placement.bytes_per_chip.items()} if placement else {},
        placement=dict(placement.levels) if placement else {}, configurations=int(np.prod(shape)),
        note="; ".join(placement.warnings) if placement else "", acceptance=acceptance, cost_ratio=cost_ratio)
        for i in order]
    return choices, timings


def optimize(request: OptimizeRequest) -> OptimizeResult:
    """Search every structure; rank feasible choices by the objective (ties: fewer chips, smaller K)."""
    from .optimize_extras import closed_form_extras

    choices, total, evaluated = [], 0, {}
    for structure in structures(request):
        kept, timings = best_of(request, structure, keep=request.top)
        choices += kept
        evaluated[structure] = timings
        total += kept[0].configurations
    ranked = sorted(choices, key=lambda ch: (not ch.feasible, -ch.objective_value, ch.structure.chips,
                                             ch.k or 0, ch.k_tiny or 0))
    result = OptimizeResult(request, ranked, total)
    return replace(result, extras=closed_form_extras(result, evaluated))
