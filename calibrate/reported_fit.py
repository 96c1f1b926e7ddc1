"""One shared correction fitted to a table of published results, and what it buys on rows it has not seen.

The correction is a **verification cost factor** v: every target forward over more than one token (the
verification of K + 1 draft tokens, or of a Medusa tree) costs v times what the cost model predicts, so

    ms_per_token(v) = (other + v * verify) / E,     speedup(v) = t_T(1) / ms_per_token(v)

(:class:`calibrate.reported_predict.Parts`). Why this one: it is the quantity papers measure and models get wrong
most. Medusa (Cai et al. 2024) reports it directly as the "overhead" of a tree step over a decode step; REFERENCE.md
section 3 notes that verifying K + 1 tokens costs more than one decode step once compute, attention over the tree,
or framework overhead matter, while the roofline charges little more than the weights streamed once. A draft cost
multiplier is the other candidate, but it cannot move heads (no draft model) and its effect on speculative rows
is confounded with acceptance. v has a physical floor: verification cannot be cheaper than the model's roofline
(which already streams the weights once), so v is bounded to [1, 10]; it does not change autoregressive rows or
records whose source gives its own verification cost (``verify_cost``).

The fit minimises sum_i log(predicted_i(v) / reported_i)^2 (relative errors, symmetric in over- and
under-prediction) with ``scipy.optimize.least_squares``; its standard error is s / sqrt(J^T J) from the Jacobian,
s^2 = sum r^2 / (n - 1). Leave-one-out: for each record i, v is fitted on the others and record i predicted with
it, which is what calibrating on part of a paper's table buys on the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from speccascade.errors import InputError

from .reported_predict import Comparison

NAME = "verify_factor"
BOUNDS = (1.0, 10.0)
DESCRIPTION = "verification cost factor v: target forwards over more than one token cost v x the model's time"


@dataclass(frozen=True)
class Fit:
    """The fitted factor, its standard error (None with one record or at a bound), and whether it sits at a bound."""

    value: float
    stderr: float | None
    at_bound: bool
    n: int


def _residuals(comparisons: list[Comparison], v: float) -> np.ndarray:
    return np.array([math.log(c.predicted(v) / c.reported) for c in comparisons])


def fit_factor(comparisons: list[Comparison]) -> Fit:
    """Least-squares v over ``comparisons`` (predicted ones only), bounded to BOUNDS."""
    used = [c for c in comparisons if c.parts is not None]
    if not used:
        raise InputError("nothing to fit: no record is predicted")
    result = least_squares(lambda x: _residuals(used, float(x[0])), x0=[1.5], bounds=([BOUNDS[0]], [BOUNDS[1]]),
                           x_scale=[1.0])
    value = float(result.x[0])
    at_bound = bool(np.isclose(value, BOUNDS[0], atol=1e-6) or np.isclose(value, BOUNDS[1], atol=1e-6))
    jtj = float(result.jac[:, 0] @ result.jac[:, 0])
    stderr = None
    if len(used) > 1 and jtj > 0 and not at_bound:
        stderr = math.sqrt(float(result.fun @ result.fun) / (len(used) - 1) / jtj)
    return Fit(value, stderr, at_bound, len(used))


@dataclass(frozen=True)
class LeaveOneOut:
    """For each predicted record (in file order): v fitted without it, its prediction and error with that v."""

    values: tuple[float, ...]
    predicted: tuple[float, ...]
    rel_errors: tuple[float, ...]

    @property
    def median_rel_error(self) -> float:
        return float(np.median(np.abs(self.rel_errors)))

    @property
    def max_rel_error(self) -> float:
        return float(np.max(np.abs(self.rel_errors)))


def leave_one_out(comparisons: list[Comparison]) -> LeaveOneOut:
    """Fit v on all predicted records but one and predict that one, for each (needs at least 2 records)."""
    used = [c for c in comparisons if c.parts is not None]
    if len(used) < 2:
        raise InputError(f"--fit needs at least 2 predicted records for leave-one-out; the file has {len(used)}")
    values, predicted, errors = [], [], []
    for index, held_out in enumerate(used):
        value = fit_factor(used[:index] + used[index + 1:]).value
        values.append(value)
        predicted.append(held_out.predicted(value))
        errors.append(held_out.rel_error(value))
    return LeaveOneOut(tuple(values), tuple(predicted), tuple(errors))
