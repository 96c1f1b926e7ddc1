"""What a prediction is asked for: one frozen, validated configuration (flags and TOML files both build it).

Two modes: *hardware* (``hardware`` + ``target`` [+ ``draft``, ``tiny``]: stage times come from the forward-time
model of each model on the chip) and *abstract* (``c`` given, no hardware: the draft costs ``c`` target steps and
verification costs one step, as in Leviathan et al. 2023 section 3.4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from speccascade import strategies as registry
from speccascade.acceptance_file import AcceptanceFile, fill_config, load_acceptance
from speccascade.errors import InputError
from speccascade.limits import (MAX_BATCH, MAX_CHIPS, MAX_CONTEXT, MAX_COST_RATIO, MAX_FILTER_WIDTH, MAX_K,
                                MAX_TREE_NODES)
from speccascade.strategy_names import StrategyNameOrAuto
from speccascade.readers import read_json, read_toml, validation_message
from speccascade.schema import Schema

from .tree import marginal_from_cumulative, validate_accuracies

Probability = Field(default=None, ge=0.0, le=1.0)


class HeadsAccuracy(Schema):
    """Per-head top-k accuracies: ``heads[h][r]`` for head h+1 and rank r (cumulative top-(r+1) when cumulative)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    cumulative: bool
    heads: list[list[float]] = Field(min_length=1)
    source: str = ""

    def marginal(self) -> list[list[float]]:
        rows = marginal_from_cumulative(self.heads) if self.cumulative else self.heads
        return validate_accuracies(rows)

    @classmethod
    def from_file(cls, path: str | Path) -> "HeadsAccuracy":
        path = Path(path)
        data = read_json(path)
        try:
            accuracy = cls.model_validate(data)
        except ValidationError as error:
            raise InputError(f"{path}: {validation_message(error)}") from None
        accuracy.marginal()  # validate ranges now, with the file named
        return accuracy


_NUMBER_FIELDS = ("chips", "k", "k_tiny", "k_draft", "filter_width", "batch", "context", "tree_nodes", "alpha",
                  "alpha_tiny", "gamma_tiny", "gamma_draft_given_tiny", "gamma_target_given_draft", "gamma_total", "c",
                  "c_tiny", "verify_cost")


class PredictConfig(BaseModel):
    """Everything ``speccascade predict`` takes. Unknown fields are an error (a typo must not be ignored); numbers
    must be finite, integers must not be booleans (``k = true`` in a TOML is refused), and physical quantities stay
    within :mod:`speccascade.limits`."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    strategy: StrategyNameOrAuto = "auto"
    hardware: str | None = None
    chips: int = Field(default=1, ge=1, le=MAX_CHIPS)
    target: str | None = None
    draft: str | None = None
    tiny: str | None = None
    k: int = Field(default=4, ge=1, le=MAX_K)
    k_tiny: int = Field(default=3, ge=1, le=64)
    alpha: float | None = Probability
    alpha_tiny: float | None = Probability
    alphas: list[float] | None = None                      # horizontal: acceptance per draft position
    k_draft: int | None = Field(default=None, ge=0, le=MAX_K)  # horizontal: positions the Draft drafts
    filter_width: int = Field(default=64, ge=1, le=MAX_FILTER_WIDTH)  # filtered: Tiny's top-m
    gamma_tiny: float = Field(default=0.95, ge=0.0, le=1.0)                 # seed eq. 6 gamma_0
    gamma_draft_given_tiny: float = Field(default=0.85, ge=0.0, le=1.0)     # gamma_1|0
    gamma_target_given_draft: float | None = Probability                   # gamma_2|1 (default: alpha)
    gamma_total: float | None = Probability  # filtered: measured gamma_0 gamma_1|0 gamma_2|1 (replaces the product)
    c: float | None = Field(default=None, ge=0.0, le=MAX_COST_RATIO)       # abstract: draft / target cost per forward
    c_tiny: float | None = Field(default=None, ge=0.0, le=MAX_COST_RATIO)  # abstract: tiny / target cost per forward
    batch: int = Field(default=1, ge=1, le=MAX_BATCH)
    context: int = Field(default=1024, ge=0, le=MAX_CONTEXT)
    combine: Literal["max", "sum"] = "max"
    heads_accuracy: HeadsAccuracy | None = None
    tree_nodes: int = Field(default=63, ge=0, le=MAX_TREE_NODES)
    verify_cost: float | None = Field(default=None, gt=0.0, le=MAX_COST_RATIO)  # heads: tree verification / one decode step
    onchip_weights: bool = True  # allow weights in on-chip memory (VMEM, L2) when they fit (the seed's eq. 4)
    # measured acceptance (speccascade.acceptance_file): fills alpha, alpha_tiny and gamma_total where no setting
    # of them is given; not dumped (the filled values are)
    acceptance: AcceptanceFile | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data):
        if isinstance(data, dict):
            for name in _NUMBER_FIELDS:
                if isinstance(data.get(name), bool):
                    raise ValueError(f"{name} must be a number, got {str(data[name]).lower()}")
            if isinstance(data.get("alphas"), list) and any(isinstance(value, bool) for value in data["alphas"]):
                raise ValueError("alphas must be numbers, not booleans")
        return data

    @model_validator(mode="before")
    @classmethod
    def _fill_from_acceptance(cls, data):
        if isinstance(data, dict) and data.get("acceptance") is not None:
            document = load_acceptance(data["acceptance"])
            data = fill_config({**data, "acceptance": document}, document)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "PredictConfig":
        if self.alphas is not None and any(not 0.0 <= value <= 1.0 for value in self.alphas):
            raise ValueError("every value of alphas must lie in [0, 1]")
        if self.hardware is not None and self.target is None:
            raise ValueError("hardware mode needs a target model (--target)")
        if self.hardware is not None and (self.c is not None or self.c_tiny is not None):
            raise ValueError("--c/--c-tiny are the abstract mode's cost ratios; with --hardware the costs come from "
                             "the profiles: give one or the other")
        roles = registry.get(self.strategy).roles if self.strategy != "auto" else ()
        if self.hardware is None and self.c is None and "heads" not in roles and self.heads_accuracy is None:
            if self.target is not None or self.draft is not None:
                raise ValueError("models need a chip: give --hardware (or --c for the abstract cost ratio)")
        if "heads" in roles and self.heads_accuracy is None:
            raise ValueError(f"the {self.strategy} strategy needs --heads-accuracy FILE.json")
        return self

    @property
    def abstract(self) -> bool:
        return self.hardware is None

    def resolved_strategy(self) -> str:
        """``auto`` picks the richest strategy the given inputs describe, in this order: heads (heads accuracies
        given), horizontal (per-position alphas), vertical (a Tiny), speculative (a Draft), autoregressive."""
        if self.strategy != "auto":
            return self.strategy
        inputs = ((self.heads_accuracy is not None, registry.HEADS), (self.alphas is not None, registry.HORIZONTAL),
                  (self.tiny is not None or self.c_tiny is not None, registry.VERTICAL),
                  (self.draft is not None or self.c is not None, registry.SPECULATIVE))
        return next((spec.name for given, spec in inputs if given), registry.AUTOREGRESSIVE.name)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides) -> "PredictConfig":
        """Read a TOML config (same names as the flags, with underscores); ``overrides`` win over the file."""
        path = Path(path)
        data = read_toml(path)
        if "heads_accuracy" in data and isinstance(data["heads_accuracy"], str):
            data["heads_accuracy"] = HeadsAccuracy.from_file(path.parent / data["heads_accuracy"])
        if isinstance(data.get("acceptance"), str):  # relative to the TOML
            data["acceptance"] = load_acceptance(data["acceptance"], base=path.parent)
        data.update(overrides)
        if data.get("acceptance") is not None:  # here, so that its errors stay one line naming the file
            data = fill_config(data, load_acceptance(data["acceptance"]))
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise InputError(f"{path}: {validation_message(error)}") from None


# The seed paper's headline setup (shared/seeds/000, section 4 and Table 1): TPU v5e, Gemma-7B bf16 target,
# Gemma-2B int8 draft, 10M Tiny. Acceptances are the paper's *claimed* gamma_2|1 = 0.90 and gamma_1|0 = 0.85.
HEADLINE = PredictConfig(hardware="tpu-v5e", chips=2, target="gemma-7b", draft="gemma-2b:int8", tiny="tiny-10m",
                         k=4, k_tiny=3, alpha=0.9, alpha_tiny=0.85)
