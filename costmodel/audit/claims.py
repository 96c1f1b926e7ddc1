"""The CLAIM file: a reported speculative-decoding result, in a form the audit can check.

A claim names the setup (hardware profile or an inline profile, chips, strategy, target/draft/tiny models with an
optional quantization suffix, K per stage), the stated acceptance rates, what the source says about sizes,
placement and hardware, and the reported figures. Every field the source does not state stays absent: the audit
checks only what is there. The JSON Schema is exported to ``docs/claim.schema.json`` by
``python3 -m speccascade.costmodel.audit.claim_schema docs/claim.schema.json --force``.

Keys of ``stated_sizes_gb``, ``stated_params``, ``placement`` and ``quantization_reduction`` may be a role
(``target``, ``draft``, ``tiny``) or the model name used for that role (with or without its suffix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from speccascade.hardware import ChipProfile, InputError, ModelProfile
from speccascade.readers import read_json, validation_message
from speccascade.limits import MAX_BATCH, MAX_CHIPS, MAX_CONTEXT, MAX_FILTER_WIDTH, MAX_K
from speccascade.schema import Schema
from speccascade.strategy_names import StrategyName

Role = Literal["target", "draft", "tiny"]
ROLES: tuple[str, ...] = ("target", "draft", "tiny")


class _Frozen(Schema):  # finite numbers, no booleans for numbers (speccascade/schema.py)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Acceptance(_Frozen):
    """Stated acceptance rates. ``stages`` multiply to ``total`` (the seed's eq. 6: gamma_total = prod gamma_i)."""

    total: float | None = Field(default=None, ge=0, le=1, description="acceptance of the final draft tokens")
    stages: list[float] = Field(default_factory=list, description="per-stage (conditional) acceptance rates")
    stage_names: list[str] = Field(default_factory=list)
    speculative_total: float | None = Field(default=None, ge=0, le=1,
                                            description="acceptance of the standard 2-model baseline")

    @model_validator(mode="after")
    def _stages_in_range(self) -> "Acceptance":
        for index, value in enumerate(self.stages):
            if not 0 <= value <= 1:
                raise ValueError(f"acceptance stage {index} = {value} is outside [0, 1]")
        if self.stage_names and len(self.stage_names) != len(self.stages):
            raise ValueError("stage_names and stages differ in length")
        return self


class StatedHardware(_Frozen):
    """What the source says about the hardware (compared with the profile)."""

    chips: int | None = Field(default=None, ge=1, le=MAX_CHIPS)
    cores_total: int | None = Field(default=None, ge=1)
    memory_capacity_gb: dict[str, float] = Field(
        default_factory=dict, description="level -> GB (10^9 bytes), per core for core-scoped levels, else per chip")
    memory_bandwidth_gb_s: dict[str, float] = Field(default_factory=dict, description="level -> GB/s per chip")
    interconnect_gbit_s: float | None = Field(default=None, gt=0, description="chip-to-chip, Gbit/s as stated")

    @model_validator(mode="after")
    def _positive(self) -> "StatedHardware":
        for table in (self.memory_capacity_gb, self.memory_bandwidth_gb_s):
            for level, value in table.items():
                if value <= 0:
                    raise ValueError(f"stated value for {level} must be > 0, got {value}")
        return self


class Reported(_Frozen):
    """Reported figures. ``speedup`` is over autoregressive decoding of the same target."""

    tokens_per_s: float | None = Field(default=None, gt=0)
    ms_per_token: float | None = Field(default=None, gt=0)
    speedup: float | None = Field(default=None, gt=0)
    baseline_tokens_per_s: float | None = Field(default=None, gt=0, description="autoregressive")
    baseline_ms_per_token: float | None = Field(default=None, gt=0)
    speculative_tokens_per_s: float | None = Field(default=None, gt=0, description="standard 2-model speculation")
    speculative_ms_per_token: float | None = Field(default=None, gt=0)
    speculative_speedup: float | None = Field(default=None, gt=0)
    speedup_over_speculative: float | None = Field(default=None, gt=0)
    memory_gb: float | None = Field(default=None, gt=0, description="memory used by the method (per chip)")
    baseline_memory_gb: float | None = Field(default=None, gt=0)


class Claim(_Frozen):
    """A reported result to audit."""

    name: str
    hardware: str | ChipProfile = Field(description="a profile name (speccascade hardware list) or a profile")
    chips: int = Field(default=1, ge=1, le=MAX_CHIPS)
    tensor_parallel: int | None = Field(default=None, ge=1, le=MAX_CHIPS, description="chips one model is split over; "
                                        "default: all chips (1 when the source replicates the model)")
    strategy: StrategyName = "speculative"  # a registry name or alias ("cascade" = vertical)
    target: str | ModelProfile
    draft: str | ModelProfile | None = None
    tiny: str | ModelProfile | None = None
    k: int | None = Field(default=None, ge=1, le=MAX_K)
    k_tiny: int | None = Field(default=None, ge=1, le=64)
    filter_width: int | None = Field(default=None, ge=1, le=MAX_FILTER_WIDTH)
    batch: int = Field(default=1, ge=1, le=MAX_BATCH)
    context: int = Field(default=0, ge=0, le=MAX_CONTEXT)
    acceptance: Acceptance = Acceptance()
    stated_sizes_gb: dict[str, float] = Field(default_factory=dict, description="model or role -> GB")
    stated_params: dict[str, float] = Field(default_factory=dict, description="model or role -> parameters")
    placement: dict[str, str] = Field(default_factory=dict, description="model or role -> memory level")
    quantization_reduction: dict[str, float] = Field(
        default_factory=dict, description="model or role -> stated memory reduction factor of its quantization")
    stated_hardware: StatedHardware = StatedHardware()
    reported: Reported = Reported()
    source: str = ""

    @model_validator(mode="after")
    def _check(self) -> "Claim":
        for table_name in ("stated_sizes_gb", "stated_params", "quantization_reduction"):
            for key, value in getattr(self, table_name).items():
                if value <= 0:
                    raise ValueError(f"{table_name}[{key}] must be > 0, got {value}")
        if self.tensor_parallel is not None and self.tensor_parallel > self.chips:
            raise ValueError(f"tensor_parallel {self.tensor_parallel} exceeds chips {self.chips}")
        return self

    @property
    def tp(self) -> int:
        return self.tensor_parallel if self.tensor_parallel is not None else self.chips

    def model_names(self) -> dict[str, str]:
        """role -> model name as given (inline profiles by their name)."""
        names = {}
        for role in ROLES:
            value = getattr(self, role)
            if value is not None:
                names[role] = value if isinstance(value, str) else value.name
        return names

    def role_of(self, key: str) -> str:
        """The role a table key refers to: a role name, or the model name of a role (suffix optional)."""
        if key in ROLES:
            if key not in self.model_names():
                raise InputError(f"claim '{self.name}': '{key}' is named but the claim has no {key} model")
            return key
        for role, name in self.model_names().items():
            if key in (name, name.split(":")[0]):
                return role
        raise InputError(f"claim '{self.name}': '{key}' is neither a role (target, draft, tiny) "
                         f"nor one of its models ({', '.join(self.model_names().values())})")

    def by_role(self, table_name: str) -> dict[str, float | str]:
        return {self.role_of(key): value for key, value in getattr(self, table_name).items()}


def load_claim(path: str | Path) -> Claim:
    """Read and validate a CLAIM.json; any problem is one :class:`InputError` line naming the file."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: a claim must be a JSON object")
    data.pop("$schema", None)
    try:
        return Claim.model_validate(data)
    except ValidationError as error:
        raise InputError(f"{path}: {validation_message(error)}") from None


def claim_json_schema() -> dict:
    schema = Claim.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "speccascade claim"
    return schema
