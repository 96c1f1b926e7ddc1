"""What the optimizer searches and what it returns per structure: the request, its candidates and defaults, a
structure (one discrete choice) and a choice (its best K, k_tiny with figures).

The strategies it can search come from the registry (Tiny/Draft/Target roles, scalar acceptance parameters) and
the cost model's implementations; defaults in hardware mode are the target family's smaller models as drafts, their
int8/int4 quantizations, the registry's Tiny models, and 1, 2, 4, 8 chips.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.limits import MAX_BATCH, MAX_CHIPS, MAX_CONTEXT, MAX_COST_RATIO, MAX_FILTER_WIDTH, MAX_K
from speccascade.hardware import list_models, load_model

from ..strategies import COSTMODEL

Objective = Literal["ms_per_token", "tokens_per_s_per_chip", "throughput"]
_SCALAR_PARAMETERS = {"alpha", "alpha_tiny", "gamma_total"}


def searchable() -> tuple[str, ...]:
    """Strategies the optimizer can search: over Tiny/Draft/Target models, acceptance given as numbers (not per
    position or per head), from the cost model's registered implementations."""
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

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    name: str
    alpha: float | None = Field(default=None, ge=0.0, le=1.0)


class OptimizeRequest(BaseModel):
    """What ``speccascade optimize`` searches. Hardware mode: ``hardware`` + ``target`` + candidate drafts and
    tinies. Abstract mode: ``c`` (and ``c_tiny``) instead of hardware, verification = one target step."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    hardware: str | None = None
    target: str | None = None
    drafts: list[Candidate] | None = None       # None: the target family's smaller models (hardware mode)
    tinies: list[Candidate] | None = None       # None: the registry's Tiny (projection) models
    quantizations: list[str] | None = None      # None: int8 and int4 of every draft
    strategies: list[str] = Field(default_factory=lambda: list(searchable()))
    alpha: float | None = Field(default=None, ge=0.0, le=1.0)
    alpha_tiny: float | None = Field(default=None, ge=0.0, le=1.0)
    c: float | None = Field(default=None, ge=0.0, le=MAX_COST_RATIO)
    c_tiny: float | None = Field(default=None, ge=0.0, le=MAX_COST_RATIO)
    gamma_tiny: float = Field(default=0.95, ge=0.0, le=1.0)
    gamma_draft_given_tiny: float = Field(default=0.85, ge=0.0, le=1.0)
    k_max: int = Field(default=32, ge=1, le=MAX_K)
    k_tiny_max: int = Field(default=8, ge=1, le=64)
    filter_widths: list[int] = Field(default_factory=lambda: [16, 64, 256, 1024])
    chips: list[int] | None = None              # None: 1, 2, 4, 8 (hardware mode)
    batches: list[int] = Field(default_factory=lambda: [1])
    context: int = Field(default=1024, ge=0, le=MAX_CONTEXT)
    combine: Literal["max", "sum"] = "max"
    objective: Objective = "ms_per_token"
    latency_limit_ms: float | None = Field(default=None, gt=0.0)
    top: int = Field(default=5, ge=1)
    max_configurations: int | None = Field(default=None, ge=1)  # default: limits.MAX_OPTIMIZE_CONFIGURATIONS

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
        if self.hardware is not None and (self.c is not None or self.c_tiny is not None):
            raise ValueError("--c/--c-tiny are the abstract mode's cost ratios; with --hardware the costs come from "
                             "the profiles: give one or the other")
        if self.objective == "throughput" and self.latency_limit_ms is None:
            raise ValueError("the throughput objective needs --latency-limit (ms per token)")
        for name, values, bound in (("chips", self.chip_counts, MAX_CHIPS), ("batch", self.batches, MAX_BATCH),
                                    ("filter widths", self.filter_widths, MAX_FILTER_WIDTH)):
            if values and max(values) > bound:
                raise ValueError(f"{name} must be at most {bound:,}, got {max(values):,}")
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
