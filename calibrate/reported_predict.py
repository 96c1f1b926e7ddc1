"""Predict a published record with the cost model and compare it with what the source measured (jax-free).

Each record becomes one :class:`~speccascade.costmodel.config.PredictConfig` and is evaluated by
``speccascade.costmodel.predict`` (hardware mode: chip and model profiles; abstract mode with ``c``: Leviathan et
al. 2023's model). The result is kept decomposed, as :class:`Parts`, so a correction can be applied without
predicting again:

    step = other + verify,   ms_per_token = (other + v * verify) / E,   speedup = t_T(1) / ms_per_token

``verify`` is the time per step of the target's forwards over more than one token (the verification), ``other``
the rest of the step (drafts, heads, decode forwards), ``t_T(1)`` one autoregressive target step and ``E`` the
expected tokens per step; ``v = 1`` is the uncorrected model (``reported_fit`` fits v).

``tokens_per_step``: many papers report the mean accepted tokens per step instead of alpha. For strategies whose
verifier pair has one acceptance (alpha; gamma_total for the filtered cascade), alpha is recovered by solving
E(alpha) = tokens_per_step with the strategy's own closed form (``costmodel/strategies.py get_form``,
``costmodel/acceptance.py``): E is increasing in alpha, so Brent's method on [0, 1] finds the unique root, and
a value outside [E(0), E(1)] (for speculative decoding [1, K + 1]) is an error. Heads and horizontal cascades have
no single alpha: the measured tokens per step replaces E and the step time still comes from the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq

from speccascade import strategies as registry
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import evaluate, timings_for
from speccascade.costmodel.strategies import get_form
from speccascade.errors import InputError

from .reported import ReportedRecord, ReportedSet

INVERTIBLE = ("alpha", "gamma_total")  # pair parameters tokens_per_step can be inverted into


def inverted_parameter(strategy: str) -> str | None:
    """The acceptance parameter of ``strategy``'s verifier pair that tokens_per_step determines, if one alpha does."""
    for pair in registry.get(strategy).pairs:
        if pair.verifier == "target" and pair.parameter in INVERTIBLE:
            return pair.parameter
    return None


def expected_tokens_at(strategy: str, config: PredictConfig, parameter: str, value: float) -> float:
    """E of ``strategy`` at ``parameter = value``, the other inputs from ``config`` (its closed form, compiled)."""
    form = get_form(strategy)
    get = lambda name: value if name == parameter else getattr(config, name, None)  # noqa: E731
    values = form.inputs(get, config).values
    compiled = form.compiled()
    return float(compiled(**{s.name: np.asarray(values[s.name], dtype=float) for s in compiled.arguments}))


def invert_tokens_per_step(strategy: str, config: PredictConfig, tokens_per_step: float) -> float:
    """The acceptance a such that E(a) = tokens_per_step (Brent's method; E is increasing in a on [0, 1])."""
    parameter = inverted_parameter(strategy)
    if parameter is None:
        raise InputError(f"{strategy} has no single acceptance that tokens_per_step determines")
    low, high = (expected_tokens_at(strategy, config, parameter, a) for a in (0.0, 1.0))
    if not low - 1e-9 <= tokens_per_step <= high + 1e-9:
        raise InputError(f"tokens_per_step {tokens_per_step:g} is outside [{low:.4g}, {high:.4g}], what {strategy} "
                         f"with k={config.k} can yield")
    if tokens_per_step >= high:
        return 1.0
    if tokens_per_step <= low:
        return 0.0
    return float(brentq(lambda a: expected_tokens_at(strategy, config, parameter, a) - tokens_per_step,
                        0.0, 1.0, xtol=1e-12))


@dataclass(frozen=True)
class Parts:
    """A prediction decomposed (ms, or target steps in abstract mode): see the module docstring."""

    mode: str
    t1: float           # one autoregressive target step
    verify: float       # per step: target forwards over more than one token (scaled by a verification factor)
    other: float        # per step: everything else
    expected: float     # tokens per step
    fits: bool = True
    acceptance: dict[str, Any] = field(default_factory=dict)

    def ms_per_token(self, verify_factor: float = 1.0) -> float:
        return (self.other + verify_factor * self.verify) / self.expected

    def value(self, metric: str, verify_factor: float = 1.0) -> float:
        """The predicted figure: speedup = t1 / ms, ms_per_token, or tokens_per_s = 1000 / ms."""
        ms = self.ms_per_token(verify_factor)
        if metric == "speedup":
            return self.t1 / ms
        if self.mode == "abstract":
            raise InputError(f"the abstract model predicts a speedup only, not {metric}")
        return ms if metric == "ms_per_token" else 1e3 / ms


def config_for(record: ReportedRecord, reported: ReportedSet) -> tuple[PredictConfig, dict[str, Any]]:
    """The record as a PredictConfig, and the acceptance it used (with what tokens_per_step was inverted into)."""
    strategy = registry.canonical(record.strategy)
    parameter = inverted_parameter(strategy)
    fields: dict[str, Any] = {
        "strategy": strategy, "hardware": None if record.abstract else record.hardware,
        "chips": record.tensor_parallel or record.chips, "target": record.target, "draft": record.draft,
        "tiny": record.tiny, "k": record.k, "k_tiny": record.k_tiny, "filter_width": record.filter_width,
        "alpha_tiny": record.alpha_tiny, "alphas": record.alphas, "c": record.c, "c_tiny": record.c_tiny,
        "verify_cost": record.verify_cost, "batch": record.batch, "context": record.context,
        "heads_accuracy": reported.heads_accuracy(record),
        "tree_nodes": record.verify_tokens - 1 if record.verify_tokens is not None else record.tree_nodes}
    acceptance: dict[str, Any] = {}
    if parameter == "gamma_total":  # eq. 6's stages, or the total alone (its stages then multiply to it)
        stages = record.gammas or [1.0, 1.0, record.alpha]
        fields.update(gamma_tiny=stages[0], gamma_draft_given_tiny=stages[1], alpha=stages[2])
        if record.gammas:
            acceptance["gamma_total"] = float(np.prod(record.gammas))
    else:
        fields["alpha"] = record.alpha
    config = PredictConfig(**{name: value for name, value in fields.items() if value is not None})
    if record.tokens_per_step is not None and parameter is not None:
        inverted = invert_tokens_per_step(strategy, config, record.tokens_per_step)
        acceptance[parameter] = inverted
        acceptance["from_tokens_per_step"] = record.tokens_per_step
        update = {"alpha": inverted} if parameter == "alpha" else {"gamma_tiny": 1.0, "gamma_draft_given_tiny": 1.0,
                                                                    "alpha": inverted}
        config = config.model_copy(update=update)
    elif parameter == "alpha" and record.alpha is not None:
        acceptance["alpha"] = record.alpha
    elif parameter == "gamma_total" and not record.gammas:
        acceptance["gamma_total"] = record.alpha
    return config, acceptance


def _scalar(value) -> float:
    return float(np.asarray(value, dtype=float).reshape(-1)[0])


def predict_parts(record: ReportedRecord, reported: ReportedSet) -> Parts:
    """Evaluate the record with the cost model (one call of ``evaluate``, the path ``predict`` takes)."""
    config, acceptance = config_for(record, reported)
    strategy = config.strategy
    timings = timings_for(config, strategy)
    result = evaluate(strategy, config, timings)
    explicit = "heads" in registry.get(strategy).roles and config.verify_cost is not None  # the source's own cost
    verify = sum(_scalar(forwards.count) * _scalar(ms) for forwards, ms in result["forwards"]
                 if forwards.role == "target" and _scalar(forwards.tokens) > 1 and not explicit)
    step = _scalar(result["step_ms"])
    expected = _scalar(result["expected_tokens"])
    if record.tokens_per_step is not None and inverted_parameter(strategy) is None:
        acceptance["tokens_per_step"] = record.tokens_per_step  # heads/horizontal: the measured E replaces the model's
        acceptance["model_tokens_per_step"] = expected
        expected = record.tokens_per_step
    return Parts(mode="abstract" if timings.abstract else "hardware", t1=_scalar(result["baseline_ms"]),
                 verify=verify, other=step - verify, expected=expected,
                 fits=timings.placement.fits if timings.placement is not None else True, acceptance=acceptance)


@dataclass(frozen=True)
class Comparison:
    """One record compared: its prediction (None when unmodelled) and the relative error predicted/reported - 1."""

    record: ReportedRecord
    metric: str
    reported: float | None
    parts: Parts | None = None

    def predicted(self, verify_factor: float = 1.0) -> float | None:
        return None if self.parts is None else self.parts.value(self.metric, verify_factor)

    def rel_error(self, verify_factor: float = 1.0) -> float | None:
        predicted = self.predicted(verify_factor)
        return None if predicted is None else predicted / self.reported - 1.0


def compare(reported: ReportedSet, metric: str | None = None) -> list[Comparison]:
    """Predict every record of the file (``metric`` overrides each record's compared figure); errors name the record."""
    comparisons = []
    for index, record in enumerate(reported.records, 1):
        if record.unmodelled is not None:
            value = getattr(record.reported, metric or record.metric)
            comparisons.append(Comparison(record, metric or record.metric, value))
            continue
        try:
            chosen = metric or record.metric
            comparisons.append(Comparison(record, chosen, record.reported_value(chosen), predict_parts(record, reported)))
        except InputError as error:
            message = str(error).removeprefix(f"record '{record.name}': ")
            raise InputError(f"{reported.path}: record {index} ('{record.name}'): {message}") from None
    return comparisons


def summarize(comparisons: list[Comparison], verify_factor: float = 1.0) -> dict[str, Any]:
    """median and max of |rel_error| over the predicted records, their count, and how many are unmodelled."""
    errors = [abs(c.rel_error(verify_factor)) for c in comparisons if c.parts is not None]
    return {"median_rel_error": float(np.median(errors)) if errors else None,
            "max_rel_error": float(np.max(errors)) if errors else None, "n": len(errors),
            "unmodelled": sum(1 for c in comparisons if c.parts is None)}
