"""Chip profiles: datasheet peaks kept apart from empirical corrections.

A profile is one TOML file (``hardware/chips/NAME.toml``) validated by :class:`ChipProfile`. Datasheet numbers
(memory levels, peak FLOP/s, interconnect) live in ``[memory]``, ``[compute]`` and ``[interconnect]``; what only
measurement can tell (achieved-bandwidth fraction per level, compute efficiency, fixed per-forward overhead)
lives in ``[corrections]``, which ``speccascade hardware probe`` and ``speccascade calibrate`` fill in (calibration
adds per-dtype compute efficiency, a per-token slope, a context slope and its provenance: traces, points,
residuals, uncertainties). Uncalibrated profiles keep the identity corrections and say so
(``corrections.calibrated = false``); calibration never edits the peaks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from speccascade.schema import Schema

DType = Literal["fp32", "bf16", "fp16", "int8", "int4"]
DTYPES: tuple[str, ...] = DType.__args__


class _Frozen(Schema):  # finite numbers, no booleans for numbers (speccascade/schema.py)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


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


class TraceSource(_Frozen):
    """One trace file a calibration read: its path as given, its SHA-256 and its header's identity."""

    path: str
    sha256: str
    run_id: str = ""
    created_utc: str = ""


class ParameterEstimate(_Frozen):
    """A fitted correction with its uncertainty.

    ``std_error`` is the standard error (Jacobian: sqrt(diag(s^2 (J^T J)^-1)), s^2 = SSR / (n - p); or the
    bootstrap's standard deviation); ``low``/``high`` the 95% interval. ``status``: ``fitted``; ``at-bound``
    (the fit ended on a bound: no symmetric interval, ``low``/``high`` say which side is open); ``held`` (not
    fitted: fixed by the user or not identifiable from the records, ``note`` says which)."""

    value: float
    std_error: float | None = None
    low: float | None = None
    high: float | None = None
    status: Literal["fitted", "at-bound", "held"] = "fitted"
    note: str = ""


class Residuals(_Frozen):
    """Relative residuals (predicted - measured) / measured of the points a calibration used."""

    points: int = Field(ge=0)
    rms: float = Field(ge=0)
    median_abs: float = Field(ge=0)
    max_abs: float = Field(ge=0)


class CalibrationProvenance(_Frozen):
    """Where calibrated corrections came from: the traces (with SHA-256), when, how, on how many points, how well
    the model then fits them (``residuals``) and each parameter's uncertainty."""

    method: str
    date_utc: str
    traces: list[TraceSource] = Field(default_factory=list)
    points_used: int = Field(default=0, ge=0)
    points_unused: int = Field(default=0, ge=0)
    residuals: Residuals | None = None
    parameters: dict[str, ParameterEstimate] = Field(default_factory=dict)
    combine: Literal["max", "sum"] = "max"
    notes: list[str] = Field(default_factory=list)


class Corrections(_Frozen):
    """Empirical corrections applied on top of the datasheet peaks (identity when uncalibrated).

    How ``costmodel/forward.py`` applies them to one forward (T new tokens, context S, batch B, tensor parallel P):

    * ``bandwidth_fraction[level]`` f: achieved share of a level's bandwidth (weights from their level, KV from main
      memory): memory_s = W / (P BW_w f_w g) + B S kv / (P BW_kv f_kv);
    * ``weight_efficiency[dtype]`` g: the share of the level's achieved bandwidth at which the matmul kernels
      consume weights stored in ``dtype`` (identity 1 when absent): where a format's kernels convert or unpack
      weights slower than memory delivers them (XLA:CPU's bfloat16 and int8 matmuls over a few rows), a model in
      that format streams slower than one of the reference format on the same level. Fitted relative to the
      reference format of the calibration (the one most forwards used, usually fp32), which keeps g = 1;
    * ``compute_efficiency`` eta: achieved share of the peak FLOP/s, per compute dtype in
      ``compute_efficiency_by_dtype`` (a dtype not listed takes the scalar): compute_s = FLOPs / (P peak eta);
    * ``overhead_s``: fixed seconds per forward (launch, dispatch, fixed per-call work);
    * ``token_slope``: extra seconds per new token beyond the first (B T - 1 of them), in multiples of that token's
      roofline matmul time 2 N / (P peak): token_s = token_slope (B T - 1)^+ 2 N / (P peak). Zero on the pure
      roofline; positive where a forward over several tokens costs more than its roofline (e.g. XLA:CPU's
      matrix-matrix kernels streaming slower than matrix-vector ones); per weight format in
      ``token_slope_by_dtype`` (a format not listed takes the scalar), since formats' kernels differ (XLA:CPU pads a
      bfloat16 matmul to 8 rows, so its forwards over 1..8 tokens cost alike);
    * ``context_slope``: extra seconds per cached position, in multiples of its datasheet KV read time:
      context_s = context_slope B S kv / (P BW_kv) (attention work growing with the context beyond the KV read).

    * ``step_overhead_s[strategy]``: host seconds per decoding step beyond its forwards (sampling, verification,
      buffer updates, the loop and the statistics transfer), per registry strategy name, ``"*"`` for any other;
      added once per target step by ``costmodel/predict.py`` (measured by ``calibrate/overhead.py`` as the fused
      step's time minus its forwards).

    ``provenance`` records a calibration's traces, points, residuals and parameter uncertainties.
    """

    bandwidth_fraction: dict[str, float] = Field(default_factory=dict)
    compute_efficiency: float = Field(default=1.0, gt=0, le=1.0)
    compute_efficiency_by_dtype: dict[str, float] = Field(default_factory=dict)
    weight_efficiency: dict[str, float] = Field(default_factory=dict)
    overhead_s: float = Field(default=0.0, ge=0)
    token_slope: float = Field(default=0.0, ge=0)
    token_slope_by_dtype: dict[str, float] = Field(default_factory=dict)
    context_slope: float = Field(default=0.0, ge=0)
    step_overhead_s: dict[str, float] = Field(default_factory=dict)
    calibrated: bool = False
    source: str = "uncalibrated: datasheet peaks, no per-forward overhead"
    provenance: CalibrationProvenance | None = None

    @model_validator(mode="after")
    def _fractions_in_range(self) -> "Corrections":
        for level, fraction in self.bandwidth_fraction.items():
            if not 0 < fraction <= 1:
                raise ValueError(f"bandwidth_fraction[{level}] = {fraction} is outside (0, 1]")
        for strategy, seconds in self.step_overhead_s.items():
            if not (seconds >= 0 and seconds < 3600):
                raise ValueError(f"step_overhead_s[{strategy}] = {seconds} is outside [0, 3600) seconds")
        for dtype, slope in self.token_slope_by_dtype.items():
            if dtype not in DTYPES:
                raise ValueError(f"unknown dtype '{dtype}' in token_slope_by_dtype")
            if not 0 <= slope < float("inf"):
                raise ValueError(f"token_slope_by_dtype[{dtype}] = {slope} must be finite and >= 0")
        for dtype, efficiency in self.weight_efficiency.items():
            if dtype not in DTYPES:
                raise ValueError(f"unknown dtype '{dtype}' in weight_efficiency")
            if not 0 < efficiency <= 1:
                raise ValueError(f"weight_efficiency[{dtype}] = {efficiency} is outside (0, 1]")
        for dtype, efficiency in self.compute_efficiency_by_dtype.items():
            if dtype not in DTYPES:
                raise ValueError(f"unknown dtype '{dtype}' in compute_efficiency_by_dtype")
            if not 0 < efficiency <= 1:
                raise ValueError(f"compute_efficiency_by_dtype[{dtype}] = {efficiency} is outside (0, 1]")
        return self

    def token_slope_for(self, dtype: str) -> float:
        """The token slope for weights stored in ``dtype``: its entry, else the scalar ``token_slope``."""
        return self.token_slope_by_dtype.get(dtype, self.token_slope)

    def weight_efficiency_for(self, dtype: str) -> float:
        """g for weights stored in ``dtype``: its entry, else 1 (the level's fraction alone)."""
        return self.weight_efficiency.get(dtype, 1.0)

    def compute_efficiency_for(self, dtype: str) -> float:
        """eta for a compute dtype: its own entry, else the scalar ``compute_efficiency``."""
        return self.compute_efficiency_by_dtype.get(dtype, self.compute_efficiency)


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
            if dtype not in DTYPES:
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

    def step_overhead_s(self, strategy: str) -> float:
        """Host seconds per decoding step of ``strategy`` (its calibrated entry, else ``"*"``, else 0)."""
        overheads = self.corrections.step_overhead_s
        return overheads.get(strategy, overheads.get("*", 0.0))
