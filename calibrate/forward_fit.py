"""Fit a chip's forward-time corrections to measured forwards (``forward`` trace records).

The model is the cost model's own forward time (:mod:`speccascade.costmodel.forward`), evaluated with trial
corrections, so what is fitted is exactly what ``predict`` later applies:

    t(T, S) = max(memory_s, compute_s) + token_s + context_s + overhead_s
    memory_s  = W / (BW_w f_w g) + S kv / (BW_kv f_kv)           compute_s = (2 N T + A (S + T) T) / (peak eta)
    token_s   = token_slope (T - 1) 2 N / peak                  context_s = context_slope S kv / BW_kv

(batch 1, one device: the microbenchmark's setting). Parameters, each bounded: ``bandwidth_fraction.LEVEL`` in
[1e-4, 1] for each level holding some model's weights; ``compute_efficiency.DTYPE`` in [1e-4, 1] for each
compute dtype among the models; ``weight_efficiency.DTYPE`` (g) in [1e-4, 1] for each weight format other than
the reference one (the format most points use) that shares a level with it; ``overhead_s`` in [0, 10 max(ms)]; ``token_slope`` in [0, 1e4] (when some
forward has T > 1; one ``token_slope.DTYPE`` per weight format when several formats have such forwards); ``context_slope`` in [0, 1e7] (when the context varies for a model with a KV cache).
Main memory's fraction is fitted only when it holds weights: KV reads alone cannot be told apart from the context
slope (both scale with S kv).

Objective: relative residuals r_i = t_i(theta) / ms_i - 1, minimized with ``scipy.optimize.least_squares``
(trust-region reflective, bounded; the best of a few starts: three fixed ones and one from the memory-bound model,
which is linear in 1/f, the overhead and the slopes, solved by nonnegative least squares). A parameter the records do not constrain (zero
sensitivity at the fit, e.g. compute efficiency when no forward is compute-bound) is held at its identity value
and said so; parameters the records cannot tell apart (a near-singular Jacobian, e.g. a level's bandwidth fraction
and the per-forward overhead when one model is all that level holds) are an :class:`InputError` naming them (hold
one with ``hold={"overhead_s": 0}``). Uncertainties: cov = s^2 (J^T J)^-1 with s^2 = sum r^2 / (n - p) over the
free parameters not on a bound; 95% intervals value +- t_{0.975, n-p} se (Student t). Or, with ``bootstrap = B``:
B refits on points resampled with replacement, se their standard deviation, the interval their 2.5-97.5
percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize, stats

from speccascade.costmodel.forward import compiled, forward_inputs
from speccascade.errors import InputError
from speccascade.hardware.chip import ChipProfile, Corrections, ParameterEstimate, Residuals

from .points import ForwardPoint

CONFIDENCE = 0.95
STARTS = ((0.5, 0.5, 0.5, 1.0), (0.1, 0.1, 0.1, 0.1), (0.9, 0.9, 0.9, 10.0))  # (fraction, eta, overhead, slope)
DEGENERATE_CONDITION = 1e-6  # smallest / largest singular value of the column-normalized Jacobian (exact
# collinearity measures ~1e-8 through finite differences; near-collinear designs show as large standard errors)


@dataclass(frozen=True)
class Parameter:
    """One correction: its name (``bandwidth_fraction.L2``, ``compute_efficiency.fp32``, ``overhead_s``,
    ``token_slope``, ``context_slope``), bounds, identity value (the uncalibrated one) and the scale the optimizer
    works in (so every internal variable is of order one)."""

    name: str
    lower: float
    upper: float
    identity: float
    scale: float = 1.0


@dataclass(frozen=True)
class ForwardFit:
    """A fitted forward-time model: corrections, their estimates and the residuals on the points used."""

    chip: ChipProfile                      # the input profile (peaks untouched), corrections fitted
    parameters: dict[str, ParameterEstimate]
    residuals: Residuals
    relative_residuals: np.ndarray         # per point, (predicted - measured) / measured
    points: tuple[ForwardPoint, ...]
    uncertainty: str                       # "jacobian" or "bootstrap (B resamples)"
    notes: tuple[str, ...] = ()
    combine: str = "max"

    @property
    def corrections(self) -> Corrections:
        return self.chip.corrections

    def predict_ms(self, points: Sequence[ForwardPoint]) -> np.ndarray:
        return predict_ms(self.chip, points, self.combine)


@dataclass
class _Problem:
    chip: ChipProfile
    points: Sequence[ForwardPoint]
    measured: np.ndarray
    parameters: list[Parameter]
    fixed: dict[str, float] = field(default_factory=dict)
    combine: str = "max"

    def values(self, x: np.ndarray) -> dict[str, float]:
        return {**self.fixed, **{p.name: float(v) * p.scale for p, v in zip(self.parameters, x)}}

    def residuals(self, x: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        chip = with_corrections(self.chip, self.values(x), validate=False)
        points = self.points if index is None else [self.points[i] for i in index]
        measured = self.measured if index is None else self.measured[index]
        return predict_ms(chip, points, self.combine) / measured - 1.0


# --- pure helpers ------------------------------------------------------------------------------------------
def with_corrections(chip: ChipProfile, values: Mapping[str, float], validate: bool = True) -> ChipProfile:
    """``chip`` with the named correction values set (others kept). Peaks are never touched."""
    base = chip.corrections
    fractions, by_dtype, scalars = dict(base.bandwidth_fraction), dict(base.compute_efficiency_by_dtype), {}
    formats, slopes = dict(base.weight_efficiency), dict(base.token_slope_by_dtype)
    for name, value in values.items():
        head, _, key = name.partition(".")
        if head == "bandwidth_fraction":
            fractions[key] = value
        elif head == "weight_efficiency":
            formats[key] = value
        elif head == "token_slope" and key:
            slopes[key] = value
        elif head == "compute_efficiency" and key:
            by_dtype[key] = value
        else:
            scalars[head] = value
    update = {"bandwidth_fraction": fractions, "compute_efficiency_by_dtype": by_dtype, "weight_efficiency": formats,
              "token_slope_by_dtype": slopes, **scalars}
    if not validate:
        return chip.model_copy(update={"corrections": base.model_copy(update=update)})
    corrections = Corrections.model_validate({**base.model_dump(), **update})
    return ChipProfile.model_validate({**chip.model_dump(), "corrections": corrections.model_dump()})


def predict_ms(chip: ChipProfile, points: Sequence[ForwardPoint], combine: str = "max",
               output_columns: Sequence[float | None] | None = None) -> np.ndarray:
    """The cost model's milliseconds for each point (batch 1, tensor parallel 1), grouped per model and level
    so each group is one vectorized evaluation."""
    result = np.empty(len(points))
    groups: dict[tuple[str, str, float | None], list[int]] = {}
    for i, point in enumerate(points):
        columns = None if output_columns is None else output_columns[i]
        groups.setdefault((point.model_key, point.level, columns), []).append(i)
    for (_, level, columns), members in groups.items():
        model = points[members[0]].model
        values = forward_inputs(chip, model, level=level, tokens=[points[i].tokens for i in members],
                                context=[points[i].context for i in members], batch=1, tp=1,
                                output_columns=columns)
        result[members] = 1e3 * np.broadcast_to(compiled(combine)(**values), (len(members),))
    return result


def residual_summary(relative: np.ndarray) -> Residuals:
    absolute = np.abs(np.asarray(relative, dtype=float))
    if absolute.size == 0:
        return Residuals(points=0, rms=0.0, median_abs=0.0, max_abs=0.0)
    return Residuals(points=int(absolute.size), rms=float(np.sqrt(np.mean(absolute ** 2))),
                     median_abs=float(np.median(absolute)), max_abs=float(np.max(absolute)))


def candidate_parameters(chip: ChipProfile, points: Sequence[ForwardPoint]) -> tuple[list[Parameter], list[str]]:
    """The corrections these points can inform, and a note for each one left out (and why)."""
    main = chip.memory[-1].name
    max_ms = max(point.ms for point in points) * 1e-3
    parameters = [Parameter(f"bandwidth_fraction.{level}", 1e-4, 1.0, 1.0)
                  for level in sorted({point.level for point in points}, key=[l.name for l in chip.memory].index)]
    notes = []
    if main not in {point.level for point in points} and any(p.model.kv_bytes_per_token > 0 for p in points):
        notes.append(f"bandwidth_fraction.{main}: no model's weights are in {main}, so only KV reads use it; they "
                     f"cannot be told apart from context_slope, which takes the KV cost (the fraction is kept)")
    _, formats, format_notes = weight_formats(points)
    parameters += [Parameter(f"weight_efficiency.{dtype}", 1e-4, 1.0, 1.0) for dtype in formats]
    notes += format_notes
    parameters += [Parameter(f"compute_efficiency.{dtype}", 1e-4, 1.0, 1.0)
                   for dtype in sorted({point.model.compute_dtype for point in points})]
    parameters.append(Parameter("overhead_s", 0.0, 10 * max_ms, 0.0, scale=max(1e-6, 0.1 * max_ms)))
    multi = sorted({point.model.dtype for point in points if point.tokens > 1})
    if len(multi) > 1:  # one slope per weight format (their kernels differ)
        parameters += [Parameter(f"token_slope.{dtype}", 0.0, 1e4, 0.0) for dtype in multi]
    elif multi:
        parameters.append(Parameter("token_slope", 0.0, 1e4, 0.0))
    else:
        notes.append("token_slope: every forward is over 1 token, so nothing measures the per-token slope (kept)")
    contexts: dict[str, set[int]] = {}
    for point in points:
        if point.model.kv_bytes_per_token > 0:
            contexts.setdefault(point.model_key, set()).add(point.context)
    if any(len(values) > 1 for values in contexts.values()):
        parameters.append(Parameter("context_slope", 0.0, 1e7, 0.0))
    else:
        notes.append("context_slope: no model with a KV cache was measured at two contexts (kept)")
    tokens = [point.tokens for point in points]
    context = [point.context for point in points]
    notes.append(f"measured range: {min(tokens)}-{max(tokens)} tokens per forward, contexts {min(context)}-"
                 f"{max(context)}; predictions outside it extrapolate the fitted terms (token_slope, context_slope)")
    return parameters, notes


def weight_formats(points: Sequence[ForwardPoint]) -> tuple[str, list[str], list[str]]:
    """(reference weight format, the formats whose efficiency g the points determine, notes). The reference is the
    format most points use, the widest on a tie (g = 1; its level fractions describe it); another format's g is fitted when some level
    holds weights of both it and the reference (otherwise g and that level's fraction change the times alike)."""
    counts: dict[str, int] = {}
    levels: dict[str, set[str]] = {}
    for point in points:
        counts[point.model.dtype] = counts.get(point.model.dtype, 0) + 1
        levels.setdefault(point.model.dtype, set()).add(point.level)
    width = {point.model.dtype: point.model.bytes_per_param for point in points}
    reference = max(sorted(counts), key=lambda dtype: (counts[dtype], width[dtype]))  # ties: the widest format
    fitted = [dtype for dtype in sorted(counts) if dtype != reference and levels[dtype] & levels[reference]]
    notes = [f"weight_efficiency.{dtype}: no level holds both {dtype} and {reference} weights, so the format's "
             f"efficiency cannot be told apart from the level's fraction (kept at 1)"
             for dtype in sorted(counts) if dtype != reference and dtype not in fitted]
    if len(counts) > 1:
        notes.append(f"weight formats: {reference} is the reference (weight_efficiency 1); "
                     + (", ".join(f"{dtype} fitted" for dtype in fitted) or "no other format fitted"))
    return reference, fitted, notes


def _start(parameters: Sequence[Parameter], start: tuple[float, float, float, float]) -> np.ndarray:
    fraction, eta, overhead, slope = start
    x = []
    for p in parameters:
        value = {"bandwidth_fraction": fraction, "compute_efficiency": eta,
                 "weight_efficiency": fraction}.get(p.name.partition(".")[0])
        if value is None:
            value = overhead * p.upper / 10 if p.name == "overhead_s" else slope
        x.append(np.clip(value, p.lower + 1e-9 * (p.upper - p.lower), p.upper) / p.scale)
    return np.asarray(x, dtype=float)


def _linear_start(problem: _Problem) -> np.ndarray:
    """A start from the memory-bound model, linear in (1/f per level, overhead, slopes): nonnegative least squares
    on relative errors (rows divided by the measured time), compute efficiencies at 0.9. It finds the basin the
    fixed starts may miss when several terms compete (e.g. a level's fraction against the context slope)."""
    chip = with_corrections(problem.chip, problem.values(np.zeros(len(problem.parameters))), validate=False)
    main = chip.memory[-1]
    columns, offsets = [], np.zeros(len(problem.points))
    for i, point in enumerate(problem.points):
        values = forward_inputs(chip, point.model, level=point.level, tokens=point.tokens, context=point.context,
                                batch=1, tp=1)
        weights_s = float(values["weight_bytes"]) / chip.level(point.level).bandwidth_bytes_per_s
        kv_s = point.context * point.model.kv_bytes_per_token / main.bandwidth_bytes_per_s
        row = []
        for p in problem.parameters:
            head, _, key = p.name.partition(".")
            if head == "bandwidth_fraction":
                row.append((weights_s if point.level == key else 0.0) + (kv_s if key == main.name else 0.0))
            elif p.name == "overhead_s":
                row.append(1.0)
            elif head == "token_slope" and (not key or key == point.model.dtype):
                row.append((point.tokens - 1) * 2 * float(values["matmul_params"]) / float(values["peak_flops"]))
            elif p.name == "context_slope":
                row.append(kv_s)
            else:
                row.append(0.0)
        if f"bandwidth_fraction.{main.name}" not in {p.name for p in problem.parameters}:
            offsets[i] = kv_s / chip.bandwidth_fraction(main.name)
        columns.append(row)
    measured_s = problem.measured * 1e-3
    design = np.array(columns) / measured_s[:, None]
    coefficients, _ = optimize.nnls(design, 1.0 - offsets / measured_s)
    x = []
    for p, c in zip(problem.parameters, coefficients):
        head = p.name.partition(".")[0]
        value = {"bandwidth_fraction": 1.0 / c if c > 0 else 1.0, "compute_efficiency": 0.9,
                 "weight_efficiency": 1.0}.get(head, c)
        x.append(np.clip(value, p.lower + 1e-6 * (p.upper - p.lower), p.upper - 1e-6 * (p.upper - p.lower))
                 / p.scale)
    return np.asarray(x, dtype=float)


def _solve(problem: _Problem, index: np.ndarray | None = None, x0: np.ndarray | None = None):
    lower = np.array([p.lower / p.scale for p in problem.parameters])
    upper = np.array([p.upper / p.scale for p in problem.parameters])
    starts = [x0] if x0 is not None else [_linear_start(problem)] + [_start(problem.parameters, s) for s in STARTS]
    best = None
    for start in starts:
        result = optimize.least_squares(problem.residuals, np.clip(start, lower, upper), bounds=(lower, upper),
                                        method="trf", kwargs={"index": index}, max_nfev=2000)
        if best is None or result.cost < best.cost:
            best = result
    best.x = np.where(best.active_mask < 0, lower, np.where(best.active_mask > 0, upper, best.x))  # on the bound
    return best


def _degenerate_message(names: Sequence[str], jacobian: np.ndarray) -> str | None:
    norms = np.linalg.norm(jacobian, axis=0)
    _, singular, vt = np.linalg.svd(jacobian / norms, full_matrices=False)
    if singular[-1] >= DEGENERATE_CONDITION * singular[0]:
        return None
    null = vt[-1]
    involved = [name for name, weight in zip(names, null) if abs(weight) > 0.2]
    return (f"degenerate design: the forward records cannot tell {' and '.join(involved)} apart (they change the "
            f"predicted times alike); add records that separate them (another model size, other token counts or "
            f"contexts) or hold one, e.g. --hold {involved[-1]}=VALUE")


# --- the fit -----------------------------------------------------------------------------------------------
def fit_forwards(chip: ChipProfile, points: Sequence[ForwardPoint], *, hold: Mapping[str, float] | None = None,
                 bootstrap: int = 0, seed: int = 0, combine: str = "max") -> ForwardFit:
    """Fit the corrections of ``chip`` to ``points`` (see the module docstring). ``hold`` fixes parameters at
    given values; ``bootstrap`` > 0 replaces the Jacobian intervals by bootstrap ones."""
    if not points:
        raise InputError("no usable forward records to fit")
    candidates, notes = candidate_parameters(chip, points)
    by_name = {p.name: p for p in candidates}
    hold = dict(hold or {})
    for name, value in hold.items():
        if name not in by_name:
            raise InputError(f"--hold {name}: not a parameter of this fit; its parameters: {', '.join(by_name)}")
        if not by_name[name].lower <= value <= by_name[name].upper:
            raise InputError(f"--hold {name}={value}: outside [{by_name[name].lower:g}, {by_name[name].upper:g}]")
    held_notes = {name: "held by the user" for name in hold}
    free = [p for p in candidates if p.name not in hold]
    measured = np.array([point.ms for point in points], dtype=float)
    while True:
        if not free:
            raise InputError("nothing to fit: every parameter is held")
        problem = _Problem(chip, points, measured, free, dict(hold), combine)
        result = _solve(problem)
        sensitivity = np.linalg.norm(result.jac, axis=0)
        dead = [p for p, s in zip(free, sensitivity) if s <= 1e-9 * max(sensitivity.max(), 1e-300)]
        if not dead:
            break
        for p in dead:
            hold[p.name] = p.identity
            held_notes[p.name] = (f"no forward is sensitive to it at the fit (e.g. none compute-bound): held at "
                                  f"{p.identity:g}")
        free = [p for p in free if p not in dead]
    if len(points) <= len(free):
        raise InputError(f"too few forward points to fit: {len(points)} usable for {len(free)} parameters "
                         f"({', '.join(p.name for p in free)}); need at least {len(free) + 1}")
    at_bound = result.active_mask != 0
    interior = [i for i in range(len(free)) if not at_bound[i]]
    message = _degenerate_message([free[i].name for i in interior], result.jac[:, interior]) if interior else None
    if message:
        raise InputError(message)
    estimates = _jacobian_estimates(free, result, interior, len(points))
    uncertainty = "jacobian"
    if bootstrap:
        estimates = _bootstrap_estimates(problem, result.x, bootstrap, seed)
        uncertainty = f"bootstrap ({bootstrap} resamples)"
    for name, value in hold.items():
        estimates[name] = ParameterEstimate(value=value, status="held", note=held_notes[name])
    vague = [name for name, e in estimates.items() if e.std_error is not None and e.std_error > abs(e.value)]
    if vague:
        notes.append(f"poorly determined (standard error above the value): {', '.join(vague)}; the records barely "
                     f"separate them from the other terms")
    fitted_chip = with_corrections(chip, problem.values(result.x))
    relative = problem.residuals(result.x)
    order = [p.name for p in candidates]
    return ForwardFit(fitted_chip, {name: estimates[name] for name in order}, residual_summary(relative), relative,
                      tuple(points), uncertainty, tuple(notes), combine)


def _jacobian_estimates(free: Sequence[Parameter], result, interior: Sequence[int], n: int
                        ) -> dict[str, ParameterEstimate]:
    dof = n - len(interior)
    s2 = 2.0 * result.cost / max(dof, 1)
    jacobian = result.jac[:, list(interior)]
    covariance = s2 * np.linalg.pinv(jacobian.T @ jacobian) if interior else np.zeros((0, 0))
    quantile = float(stats.t.ppf(0.5 + CONFIDENCE / 2, max(dof, 1)))
    estimates = {}
    for position, i in enumerate(interior):
        p = free[i]
        value = float(result.x[i] * p.scale)
        se = float(np.sqrt(max(covariance[position, position], 0.0)) * p.scale)
        estimates[p.name] = ParameterEstimate(value=value, std_error=se, low=max(p.lower, value - quantile * se),
                                              high=min(p.upper, value + quantile * se))
    for i, p in enumerate(free):
        if i in interior:
            continue
        value = float(result.x[i] * p.scale)
        side = "lower" if result.active_mask[i] < 0 else "upper"
        estimates[p.name] = ParameterEstimate(
            value=value, status="at-bound", low=value if side == "lower" else None,
            high=value if side == "upper" else None,
            note=f"on its {side} bound {value:g}: the data push past it (no symmetric interval)")
    return estimates


def _bootstrap_estimates(problem: _Problem, solution: np.ndarray, resamples: int, seed: int
                         ) -> dict[str, ParameterEstimate]:
    rng = np.random.default_rng(seed)
    n = len(problem.points)
    draws = np.array([_solve(problem, rng.integers(0, n, n), solution).x for _ in range(resamples)])
    tail = 100 * (1 - CONFIDENCE) / 2
    estimates = {}
    for i, p in enumerate(problem.parameters):
        values = draws[:, i] * p.scale
        estimates[p.name] = ParameterEstimate(
            value=float(solution[i] * p.scale), std_error=float(np.std(values, ddof=1)),
            low=float(np.percentile(values, tail)), high=float(np.percentile(values, 100 - tail)))
    return estimates
