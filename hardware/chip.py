"""Chip profiles: datasheet peaks kept apart from empirical corrections.

A profile is one TOML file (``hardware/chips/NAME.toml``) validated by :class:`ChipProfile`. Datasheet numbers
(memory levels, peak FLOP/s, interconnect) live in ``[memory]``, ``[compute]`` and ``[interconnect]``; what only
measurement can tell (achieved-bandwidth fraction per level, compute efficiency, fixed per-forward overhead)
lives in ``[corrections]``, which ``speccascade hardware probe`` and calibration fill in. Uncalibrated profiles
keep the identity corrections and say so (``corrections.calibrated = false``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DType = Literal["fp32", "bf16", "fp16", "int8", "int4"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemoryLevel(_Frozen):
    """One level of the memory hierarchy (per chip).

    ``capacity_bytes`` and ``bandwidth_bytes_per_s`` are per chip: for a per-core scratchpad (TPU VMEM) the
    TOML gives the per-core value and ``scope = "core"``; :meth:`chip_capacity_bytes` multiplies by the cores.
    """

    name: str
    capacity_bytes: float = Field(gt=0)
    bandwidth_bytes_per_s: float = Field(gt=0)
    scope: Literal["core", "chip"] = "chip"
    holds_weights: bool = True
    source: str = ""

    def chip_capacity_bytes(self, cores_per_chip: int) -> float:
        return self.capacity_bytes * (cores_per_chip if self.scope == "core" else 1)


class Interconnect(_Frozen):
    """Chip-to-chip links. ``link_bandwidth_bytes_per_s`` is one direction of one link."""

    name: str
    link_bandwidth_bytes_per_s: float = Field(ge=0)
    links_per_chip: int = Field(ge=0)
    topology: str
    latency_s: float = Field(default=5e-6, ge=0)
    source: str = ""

    @property
    def chip_bandwidth_bytes_per_s(self) -> float:
        """One-direction bandwidth out of one chip over all its links."""
        return self.link_bandwidth_bytes_per_s * self.links_per_chip


class Corrections(_Frozen):
    """Empirical corrections applied on top of the datasheet peaks (identity when uncalibrated)."""

    bandwidth_fraction: dict[str, float] = Field(default_factory=dict)
    compute_efficiency: float = Field(default=1.0, gt=0, le=1.0)
    overhead_s: float = Field(default=0.0, ge=0)
    calibrated: bool = False
    source: str = "uncalibrated: datasheet peaks, no per-forward overhead"

    @model_validator(mode="after")
    def _fractions_in_range(self) -> "Corrections":
        for level, fraction in self.bandwidth_fraction.items():
            if not 0 < fraction <= 1:
                raise ValueError(f"bandwidth_fraction[{level}] = {fraction} is outside (0, 1]")
        return self


class ChipProfile(_Frozen):
    """A chip: memory levels fastest first, peak FLOP/s per dtype, cores, interconnect, corrections."""

    name: str
    vendor: str
    description: str = ""
    cores_per_chip: int = Field(ge=1)
    memory: list[MemoryLevel] = Field(min_length=1)
    peak_flops: dict[str, float]
    peak_flops_source: str = ""
    interconnect: Interconnect | None = None
    corrections: Corrections = Corrections()
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "ChipProfile":
        bandwidths = [level.bandwidth_bytes_per_s for level in self.memory]
        if bandwidths != sorted(bandwidths, reverse=True):
            raise ValueError("memory levels must be ordered fastest first")
        names = [level.name for level in self.memory]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate memory level names: {names}")
        for dtype, flops in self.peak_flops.items():
            if dtype not in ("fp32", "bf16", "fp16", "int8", "int4"):
                raise ValueError(f"unknown dtype '{dtype}' in peak_flops")
            if flops <= 0:
                raise ValueError(f"peak_flops[{dtype}] must be > 0")
        if "bf16" not in self.peak_flops:
            raise ValueError("peak_flops needs at least a bf16 entry")
        unknown = set(self.corrections.bandwidth_fraction) - set(names)
        if unknown:
            raise ValueError(f"corrections name unknown memory levels: {sorted(unknown)}")
        return self

    def flops_for(self, dtype: str) -> float:
        """Peak FLOP/s for a compute dtype; int4 falls back to int8, fp16 to bf16, missing int8 to bf16."""
        fallbacks = {"int4": ["int4", "int8", "bf16"], "int8": ["int8", "bf16"], "fp16": ["fp16", "bf16"],
                     "fp32": ["fp32", "bf16"], "bf16": ["bf16"]}
        for candidate in fallbacks[dtype]:
            if candidate in self.peak_flops:
                return self.peak_flops[candidate]
        raise KeyError(dtype)

    def level(self, name: str) -> MemoryLevel:
        for level in self.memory:
            if level.name == name:
                return level
        raise KeyError(name)

    def bandwidth_fraction(self, level_name: str) -> float:
        return self.corrections.bandwidth_fraction.get(level_name, 1.0)
