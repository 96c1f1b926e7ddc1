"""The trace records (schema version 2): header, step, forward and compile records, pydantic-validated, frozen.

The package docstring (:mod:`speccascade.traces`) describes each record; this module defines them and the
discriminated union :data:`Record` the reader validates every line against.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_serializer, model_validator

from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.hardware.chip import ChipProfile
from speccascade.hardware.model import ModelProfile

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
