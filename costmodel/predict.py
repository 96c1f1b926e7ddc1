"""Predict one strategy's speed: ms/token, tokens/s, expected tokens per step, speedup, stages, bound, placement.

:func:`evaluate` is the vectorized core: every input may be an array (broadcast together), so sweeps and the
optimizer call it once over millions of configurations; :func:`predict` is the same call on one configuration plus
the per-stage breakdown, placement and warnings a user reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel

from speccascade.hardware import ChipProfile

from speccascade import strategies as registry

from .config import PredictConfig
from .strategies import COSTMODEL, Inputs, get_form
from .timings import StageTimings, stage_timings


class StageTime(BaseModel):
    name: str
    model: str
    ms: float                 # per target step (target steps in abstract mode)
    forwards: float           # forwards of this model per target step
    tokens_per_forward: float
    level: str = "-"


class Prediction(BaseModel):
    strategy: str
    mode: str                 # "hardware" or "abstract"
    units: str                # "ms", or "target steps" in abstract mode
    ms_per_token: float
    tokens_per_s: float | None
    speedup: float
    expected_tokens_per_step: float
    step_ms: float
    baseline_ms_per_token: float
    bound_ms_per_token: float
    max_tokens_per_step: float
    stages: list[StageTime]
    fits: bool
    placement: dict[str, str]
    memory_per_chip_gb: dict[str, float]
    warnings: list[str]
    alternatives: list[dict[str, Any]] = []
    tree: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


def knobs_of(strategy: str, config: PredictConfig) -> dict[str, Any]:
    """The registry knobs of ``strategy`` read from ``config`` (horizontal's k is the number of alphas; heads'
    tree_nodes the built tree's size), for step shapes and placement."""
    spec = registry.get(strategy)
    knobs = {name: getattr(config, name, None) for name in spec.knob_names}
    if "k_draft" in knobs and config.alphas:
        knobs["k"] = len(config.alphas)
    return {name: value for name, value in knobs.items() if value is not None}


def verify_tokens_for(strategy: str, config: PredictConfig) -> int:
    """Tokens one target verification forward covers (sizes the KV cache in placement): the registry's shape."""
    return int(registry.get(strategy).step_shape(knobs_of(strategy, config)).verify_tokens())


def timings_for(config: PredictConfig, strategy: str | None = None, *, chip: ChipProfile | None = None,
                models: dict | None = None) -> StageTimings:
    """The stage timings ``strategy`` needs for ``config`` (verify length and Medusa heads placed); ``chip`` and
    ``models`` (role -> ModelProfile) replace the named profiles."""
    strategy = registry.canonical(strategy or config.resolved_strategy())
    roles = registry.get(strategy).roles
    heads = len(config.heads_accuracy.heads) if "heads" in roles and config.heads_accuracy and not config.verify_cost else 0
    return stage_timings(config, verify_tokens=verify_tokens_for(strategy, config), chip=chip, heads=heads,
                         models=models)


def _forward_ms(forwards: registry.Forwards, spec: registry.StrategySpec, knobs: dict[str, Any], inputs: Inputs,
                config: PredictConfig, timings: StageTimings, t_target_1) -> np.ndarray:
    """Milliseconds (target steps in abstract mode) of one forward of ``forwards``' role over its tokens. With
    heads and ``--verify-cost``, the tree's verification costs that many decode steps and the heads nothing."""
    explicit_verify = "heads" in spec.roles and config.verify_cost
    if forwards.role == "heads":  # the heads' weights, streamed once per step
        return np.asarray(0.0 if explicit_verify or inputs.tree is None else timings.heads_ms(inputs.tree.heads))
    if forwards.role == "target" and explicit_verify:
        return np.asarray(config.verify_cost * (1.0 if timings.abstract else t_target_1))
    columns = None if forwards.columns is None else np.asarray(knobs[forwards.columns], dtype=float)
    return timings.forward_ms(forwards.role, np.asarray(forwards.tokens, dtype=float), output_columns=columns)


def evaluate(strategy: str, config: PredictConfig, timings: StageTimings | None = None, **arrays) -> dict[str, Any]:
    """Vectorized prediction. ``arrays`` override config fields (alpha, alpha_tiny, k, k_tiny, gamma_total, ...)
    with arrays that broadcast together. The step time is the registry's step shape charged forward by forward
    (``forwards``: each forward group with its ms per forward); E comes from the strategy's compiled closed form.
    Returns expected_tokens, step_ms, ms_per_token, speedup, bound_ms, baseline_ms, verify_tokens, max_tokens,
    forwards, values (the closed form's inputs) and the heads tree (None otherwise)."""
    strategy = registry.canonical(strategy)
    form = get_form(strategy)
    timings = timings or stage_timings(config)
    get = lambda name: arrays.get(name, getattr(config, name, None))  # noqa: E731
    inputs = form.inputs(get, config)
    knobs = {name: np.asarray(get(name), dtype=float) for name in form.spec.knob_names if get(name) is not None}
    knobs.update({name: np.asarray(value, dtype=float) for name, value in inputs.knobs.items()})
    shape = form.spec.step_shape(knobs)
    reviews = shape.reviews if shape.reviews is not None else inputs.values["expected_reviews"]
    t_target_1 = timings.forward_ms("target", 1)

    def charge(group):  # (forwards, ms per forward) for each forward group with forwards to run
        return [(forwards, _forward_ms(forwards, form.spec, knobs, inputs, config, timings, t_target_1))
                for forwards in group if not registry.is_zero(forwards.count)]

    per_review, fixed = charge(shape.per_review), charge(shape.fixed)
    review_ms = sum((np.asarray(f.count, dtype=float) * ms for f, ms in per_review), np.zeros(()))
    fixed_ms = sum((np.asarray(f.count, dtype=float) * ms for f, ms in fixed), np.zeros(()))
    # host time per step beyond the forwards (a calibrated chip's step_overhead_s; 0 on datasheet profiles)
    host_ms = 0.0 if timings.abstract else 1e3 * timings.chip.step_overhead_s(strategy)
    fixed_ms = fixed_ms + host_ms
    step = np.asarray(reviews, dtype=float) * review_ms + fixed_ms
    charged = [(registry.Forwards(f.role, f.count * reviews, f.tokens, f.columns, f.label), ms)
               for f, ms in per_review] + fixed
    verify = np.asarray(shape.verify_tokens(), dtype=float)
    compiled = form.compiled()
    expected = np.asarray(compiled(**{symbol.name: np.asarray(inputs.values[symbol.name], dtype=float)
                                      for symbol in compiled.arguments}),
                          dtype=float)
    expected = np.broadcast_to(expected, np.broadcast_shapes(expected.shape, np.shape(step), np.shape(verify)))
    ms_per_token = step / expected
    tree = inputs.tree
    max_tokens = tree.depth + 1 if tree is not None else verify
    values = {**inputs.values, "t_target_1": t_target_1}
    return {"expected_tokens": np.asarray(expected, float), "step_ms": step, "ms_per_token": ms_per_token,
            "speedup": t_target_1 / ms_per_token, "baseline_ms": t_target_1,
            "bound_ms": timings.bound_ms(max_tokens), "verify_tokens": verify, "max_tokens": max_tokens,
            "forwards": charged, "reviews": reviews, "review_ms": review_ms, "fixed_ms": fixed_ms, "host_ms": host_ms,
            "values": values, "tree": tree}


def _scalar(value) -> float:
    return float(np.asarray(value, dtype=float).reshape(-1)[0])


def _stages(config: PredictConfig, timings: StageTimings, result: dict) -> list[StageTime]:
    """What the cost model charges per target step: the registry's step shape, one row per forward group."""
    names = {"target": config.target or "target", "draft": config.draft or "draft", "tiny": config.tiny or "tiny",
             "heads": timings.models["heads"].name if "heads" in timings.models else "heads"}
    stages = []
    for forwards, ms in result["forwards"]:
        count = _scalar(forwards.count)
        if count == 0 or (forwards.role == "heads" and _scalar(ms) == 0):
            continue
        label = forwards.label or forwards.role
        if forwards.columns is not None:
            label = f"{label} (m={getattr(config, forwards.columns)} columns)"
        stages.append(StageTime(name=label, model=names[forwards.role], ms=_scalar(ms) * count, forwards=count,
                                tokens_per_forward=_scalar(forwards.tokens),
                                level=timings.level(forwards.role) if not timings.abstract else "-"))
    host_ms = _scalar(result.get("host_ms", 0.0))
    if host_ms > 0:  # the calibrated host time of a step (sampling, verification, loop, statistics transfer)
        stages.append(StageTime(name="host overhead", model="host", ms=host_ms, forwards=1, tokens_per_forward=0,
                                level="-"))
    return stages


def _warnings(strategy: str, config: PredictConfig, timings: StageTimings, result: dict) -> list[str]:
    notes: list[str] = []
    if timings.placement is not None:
        notes += timings.placement.warnings
        for role, level in timings.placement.levels.items():
            memory = timings.chip.level(level)
            if memory.scope == "core" or level != timings.chip.memory[-1].name:
                notes.append(f"{role} weights placed in {level} (on-chip): assumes they stay resident across "
                             "forwards, the seed paper's eq. 4 assumption; --no-onchip-weights streams them "
                             f"from {timings.chip.memory[-1].name}")
    spec = registry.get(strategy)
    speedup = _scalar(result["speedup"])
    if spec.pairs and speedup < 1.0:
        notes.append(f"predicted slower than autoregressive decoding ({speedup:.2f}x)")
    if set(spec.roles) == {"draft", "target"} and config.alpha is not None:
        draft_ms = _scalar(timings.forward_ms("draft", 1))
        ratio = draft_ms / _scalar(result["values"]["t_target_1"])
        if config.alpha <= ratio:
            notes.append(f"alpha {config.alpha} <= draft/target cost ratio {ratio:.3f}: no K gives a speedup "
                         "(Leviathan et al. 2023, corollary 3.9)")
    if "heads" in spec.roles and config.verify_cost is not None and config.verify_cost < 1.0:
        notes.append(f"verify cost {config.verify_cost} < 1: verifying a tree cheaper than one decode step")
    return notes


def predict(config: PredictConfig, strategy: str | None = None, *, alternatives: bool = True,
            chip: ChipProfile | None = None, models: dict | None = None) -> Prediction:
    """One strategy's prediction with its breakdown (``strategy`` defaults to ``config.resolved_strategy()``;
    ``chip`` and ``models`` replace the named profiles)."""
    strategy = registry.canonical(strategy or config.resolved_strategy())
    get_form(strategy)  # one line for a strategy the cost model does not implement
    timings = timings_for(config, strategy, chip=chip, models=models)
    result = evaluate(strategy, config, timings)
    ms_per_token = _scalar(result["ms_per_token"])
    placement = timings.placement
    tree = None
    candidate = result["tree"]
    if candidate is not None:
        tree = {"nodes": candidate.nodes, "depth": candidate.depth, "heads": candidate.heads,
                "paths": [list(path) for path in candidate.paths]}
    prediction = Prediction(
        strategy=strategy, mode="abstract" if timings.abstract else "hardware", units=timings.unit,
        ms_per_token=ms_per_token,
        tokens_per_s=None if timings.abstract else 1e3 / ms_per_token,
        speedup=_scalar(result["speedup"]), expected_tokens_per_step=_scalar(result["expected_tokens"]),
        step_ms=_scalar(result["step_ms"]), baseline_ms_per_token=_scalar(result["baseline_ms"]),
        bound_ms_per_token=_scalar(result["bound_ms"]), max_tokens_per_step=_scalar(result["max_tokens"]),
        stages=_stages(config, timings, result),
        fits=placement.fits if placement else True,
        placement=dict(placement.levels) if placement else {},
        memory_per_chip_gb={level: used / 1e9 for level, used in placement.bytes_per_chip.items()} if placement else {},
        warnings=_warnings(strategy, config, timings, result), tree=tree)
    if alternatives:
        prediction.alternatives = [
            {"strategy": other.strategy, "ms_per_token": other.ms_per_token, "speedup": other.speedup,
             "expected_tokens_per_step": other.expected_tokens_per_step}
            for other in (predict(config, name, alternatives=False, chip=chip, models=models)
                          for name in baselines(strategy, config))]
    return prediction


def describable(config: PredictConfig) -> tuple[str, ...]:
    """The cost model's strategies that ``config`` describes: each role has a model (or an abstract cost) and each
    pair's acceptance parameter is given (from the registry's roles and pairs)."""
    have_role = {"target": True, "draft": config.draft is not None or config.c is not None,
                 "tiny": config.tiny is not None or config.c_tiny is not None,
                 "heads": config.heads_accuracy is not None}
    have_parameter = {"alpha": config.alpha is not None, "alpha_tiny": config.alpha_tiny is not None,
                      "gamma_total": config.alpha is not None or config.gamma_target_given_draft is not None
                      or config.gamma_total is not None,
                      "alphas": config.alphas is not None, "heads_accuracy": config.heads_accuracy is not None}
    out = []
    for name in COSTMODEL.names():
        spec = registry.get(name)
        if all(have_role[role] for role in spec.roles) and all(have_parameter[p.parameter] for p in spec.pairs):
            out.append(name)
    return tuple(out)


def baselines(strategy: str, config: PredictConfig) -> list[str]:
    """The other strategies over the same models (roles a subset of this one's) that the given inputs describe
    (shown next to the chosen one)."""
    roles = set(registry.get(strategy).roles)
    return [name for name in describable(config)
            if name != strategy and set(registry.get(name).roles) <= roles]
