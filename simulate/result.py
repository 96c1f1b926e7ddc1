"""Statistics of a run: mean tokens per step with its standard error and 95% interval, the histogram next to the
exact distribution, ms per token (long-run mean and per-request percentiles) and N-token request latency."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel

from speccascade.costmodel.predict import Prediction

from .engine import RawRun
from .exact import ClosedForm
from .steps import StepModel

Z95 = 1.959963984540054


class Percentiles(BaseModel):
    mean: float | None
    stderr: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class SimulationResult(BaseModel):
    strategy: str
    process: dict[str, Any]
    units: str                                 # "ms", or "target steps" in abstract mode
    steps: int
    seed: int
    lanes: int
    mean_tokens_per_step: float
    stderr_tokens_per_step: float
    ci95_tokens_per_step: tuple[float, float]
    closed_form_tokens_per_step: float | None
    closed_form_source: str | None
    z_score: float | None                      # (simulated - closed form) / stderr
    predicted_tokens_per_step: float           # the cost model's (i.i.d.) value, for comparison
    predicted_ms_per_token: float
    step_ms: Percentiles
    ms_per_token: Percentiles                  # mean = total time / tokens; percentiles over N-token requests
    tokens_per_request: int
    requests: int
    request_latency_ms: Percentiles
    histogram: dict[str, list | None]
    seconds: float
    steps_per_s: float
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def lane_stderr(lane_values: np.ndarray, lane_steps: int) -> float:
    """Standard error of the mean per step from independent lanes of equal length."""
    if lane_values.size < 2:
        return math.nan
    return float(np.std(lane_values / lane_steps, ddof=1) / math.sqrt(lane_values.size))


def ratio_stderr(numerators: np.ndarray, denominators: np.ndarray) -> float:
    """Delta-method standard error of sum(numerators) / sum(denominators) over independent lanes."""
    count = numerators.size
    if count < 2 or denominators.sum() <= 0:
        return math.nan
    ratio = numerators.sum() / denominators.sum()
    residual = numerators - ratio * denominators
    return float(math.sqrt(np.sum(residual**2) / (count * (count - 1))) / denominators.mean())


def summarise(raw: RawRun, model: StepModel, prediction: Prediction, *, seed: int, tokens_per_request: int,
              closed: ClosedForm | None, warnings: list[str] | None = None) -> SimulationResult:
    warnings = list(warnings or [])
    total_tokens = float(raw.lane_tokens.sum())
    total_ms = float(raw.lane_ms.sum())
    mean = total_tokens / raw.steps
    stderr = lane_stderr(raw.lane_tokens, raw.rows)
    if not math.isfinite(stderr):
        warnings.append("one lane only: no standard error (simulate more steps)")
    z_score = None
    if closed is not None:
        z_score = 0.0 if stderr == 0 and abs(mean - closed.mean) < 1e-12 else (
            (mean - closed.mean) / stderr if stderr and math.isfinite(stderr) else None)
    tokens = np.arange(raw.histogram.size)
    counts = raw.histogram
    simulated_pmf = counts / max(counts.sum(), 1)
    exact_pmf = None
    if closed is not None:
        exact_pmf = np.zeros(tokens.size)
        size = min(tokens.size, closed.pmf.size)
        exact_pmf[:size] = closed.pmf[:size]
    keep = slice(1, None)                      # tokens per step >= 1
    histogram = {"tokens": tokens[keep].tolist(), "counts": counts[keep].tolist(),
                 "simulated_pmf": simulated_pmf[keep].tolist(),
                 "closed_form_pmf": exact_pmf[keep].tolist() if exact_pmf is not None else None}
    per_token = raw.request_ms / tokens_per_request
    if raw.request_ms.size == 0:
        warnings.append(f"no {tokens_per_request}-token request completed: simulate more steps or lower --tokens")
    ms_stderr = ratio_stderr(raw.lane_ms, raw.lane_tokens)
    step_ms_mean = total_ms / raw.steps
    return SimulationResult(
        strategy=model.name, process=model.describe(), units=prediction.units, steps=raw.steps, seed=seed,
        lanes=raw.lanes, mean_tokens_per_step=mean,
        stderr_tokens_per_step=stderr if math.isfinite(stderr) else 0.0,
        ci95_tokens_per_step=(mean - Z95 * stderr, mean + Z95 * stderr) if math.isfinite(stderr) else (mean, mean),
        closed_form_tokens_per_step=closed.mean if closed else None,
        closed_form_source=closed.source if closed else None, z_score=z_score,
        predicted_tokens_per_step=prediction.expected_tokens_per_step,
        predicted_ms_per_token=prediction.ms_per_token,
        step_ms=Percentiles(mean=step_ms_mean),
        ms_per_token=Percentiles(mean=total_ms / total_tokens,
                                 stderr=ms_stderr if math.isfinite(ms_stderr) else None, **_percentiles(per_token)),
        tokens_per_request=tokens_per_request, requests=int(raw.request_ms.size),
        request_latency_ms=Percentiles(mean=float(raw.request_ms.mean()) if raw.request_ms.size else None,
                                       **_percentiles(raw.request_ms)),
        histogram=histogram, seconds=raw.seconds, steps_per_s=raw.steps / max(raw.seconds, 1e-9),
        warnings=warnings)
