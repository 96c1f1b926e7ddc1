"""Predict one strategy's speed: ms/token, tokens/s, expected tokens per step, speedup, stages, bound, placement.

:func:`evaluate` is the vectorized core: every input may be an array (broadcast together), so sweeps and the
optimizer call it once over millions of configurations; :func:`predict` is the same call on one configuration plus
the per-stage breakdown, placement and warnings a user reads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel

from speccascade.hardware import ChipProfile
from speccascade.errors import InputError

from .acceptance import filtered_total_acceptance, horizontal_expected_tokens
from .config import PredictConfig
from .strategies import STRATEGIES
from .timings import StageTimings, stage_timings
from .tree import CandidateTree, build_tree


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


def _need(value, flag: str, strategy: str):
    if value is None:
        raise InputError(f"the {strategy} strategy needs {flag}")
    return value


def default_k_draft(positions: int) -> int:
    """Horizontal cascade without --k-draft: the Draft drafts the first half of the positions (rounded up)."""
    return math.ceil(positions / 2)


def verify_tokens_for(strategy: str, config: PredictConfig) -> int:
    """Tokens one target verification forward covers (sizes the KV cache in placement)."""
    positions = len(config.alphas) if strategy == "horizontal" and config.alphas else config.k
    return {"speculative": config.k + 1, "filtered": config.k + 1, "horizontal": positions + 1,
            "vertical": config.k * (config.k_tiny + 1) + 1, "heads": config.tree_nodes + 1}.get(strategy, 1)


def timings_for(config: PredictConfig, strategy: str | None = None, *, chip: ChipProfile | None = None) -> StageTimings:
    """The stage timings ``strategy`` needs for ``config`` (verify length and Medusa heads placed)."""
    strategy = strategy or config.resolved_strategy()
    heads = len(config.heads_accuracy.heads) if strategy == "heads" and config.heads_accuracy and not config.verify_cost else 0
    return stage_timings(config, verify_tokens=verify_tokens_for(strategy, config), chip=chip, heads=heads)


def tree_for(config: PredictConfig) -> CandidateTree:
    return build_tree(config.heads_accuracy.marginal(), config.tree_nodes)


def evaluate(strategy: str, config: PredictConfig, timings: StageTimings | None = None, **arrays) -> dict[str, np.ndarray]:
    """Vectorized prediction. ``arrays`` override config fields (alpha, alpha_tiny, k, k_tiny, gamma_total, ...)
    with arrays that broadcast together. Returns expected_tokens, step_ms, ms_per_token, speedup, bound_ms,
    baseline_ms, verify_tokens, max_tokens, the time symbols' values and the heads tree (None otherwise)."""
    timings = timings or stage_timings(config)
    get = lambda name: arrays.get(name, getattr(config, name, None))  # noqa: E731
    k = np.asarray(get("k"), dtype=float)
    k_tiny = np.asarray(get("k_tiny"), dtype=float)
    values: dict[str, Any] = {"t_target_1": timings.forward_ms("target", 1)}
    tree: CandidateTree | None = None
    abstract = timings.abstract
    if strategy == "autoregressive":
        verify = np.ones_like(k)
    elif strategy == "speculative":
        values |= {"alpha": _need(get("alpha"), "--alpha", strategy), "k": k,
                   "t_draft_1": timings.forward_ms("draft", 1)}
        verify = k + 1
    elif strategy == "vertical":
        values |= {"alpha": _need(get("alpha"), "--alpha", strategy),
                   "alpha_tiny": _need(get("alpha_tiny"), "--alpha-tiny", strategy), "k": k, "k_tiny": k_tiny,
                   "t_tiny_1": timings.forward_ms("tiny", 1),
                   "t_draft_review": timings.forward_ms("draft", 1.0 if abstract else k_tiny + 1)}
        verify = k * (k_tiny + 1) + 1
    elif strategy == "filtered":
        gamma = arrays.get("gamma_total")
        if gamma is None:
            gamma_target = get("gamma_target_given_draft")
            gamma_target = gamma_target if gamma_target is not None else get("alpha")
            gamma = filtered_total_acceptance(get("gamma_tiny"), get("gamma_draft_given_tiny"),
                                              _need(gamma_target, "--alpha (gamma_2|1)", strategy))
        columns = np.asarray(get("filter_width"), dtype=float)
        values |= {"gamma_total": gamma, "k": k, "t_tiny_1": timings.forward_ms("tiny", 1),
                   "t_draft_1": timings.forward_ms("draft", 1, output_columns=columns)}
        verify = k + 1
    elif strategy == "horizontal":
        alphas = np.asarray(_need(get("alphas"), "--alphas", strategy), dtype=float)
        k = np.asarray(alphas.shape[-1], dtype=float)
        k_draft = np.asarray(get("k_draft") if get("k_draft") is not None else default_k_draft(alphas.shape[-1]), float)
        if np.any(k_draft > k):
            raise InputError(f"k_draft ({int(np.max(k_draft))}) exceeds the number of positions ({int(k)})")
        needs_tiny = np.any(k_draft < k)
        values |= {"horizontal_expected_tokens": horizontal_expected_tokens(alphas), "k": k, "k_draft": k_draft,
                   "t_draft_1": timings.forward_ms("draft", 1) if np.any(k_draft > 0) else 0.0,
                   "t_tiny_1": timings.forward_ms("tiny", 1) if needs_tiny else 0.0}
        verify = k + 1
    elif strategy == "heads":
        tree = tree_for(config)
        values |= {"tree_expected_tokens": tree.expected_tokens,
                   "t_heads": timings.heads_ms(tree.heads)}
        verify = np.asarray(tree.nodes + 1, dtype=float)
    else:
        raise InputError(f"unknown strategy {strategy!r}")
    if strategy != "autoregressive":
        if abstract:
            ratio = config.verify_cost if strategy == "heads" and config.verify_cost else 1.0
            values["t_target_verify"] = np.full_like(np.asarray(verify, float), ratio)
        else:
            values["t_target_verify"] = timings.forward_ms("target", verify)
            if strategy == "heads" and config.verify_cost:
                values["t_target_verify"] = config.verify_cost * values["t_target_1"]
                values["t_heads"] = 0.0
    compiled = STRATEGIES[strategy]
    needed = lambda part: {s.name: values[s.name] for s in compiled.compiled(part).arguments}  # noqa: E731
    expected = np.asarray(compiled.compiled("expected_tokens")(**needed("expected_tokens")), dtype=float)
    expected = np.broadcast_to(expected, np.broadcast_shapes(expected.shape, np.shape(verify)))
    step = compiled.compiled("step_time")(**needed("step_time"))
    ms_per_token = step / expected
    max_tokens = tree.depth + 1 if tree is not None else verify
    return {"expected_tokens": np.asarray(expected, float), "step_ms": step, "ms_per_token": ms_per_token,
            "speedup": values["t_target_1"] / ms_per_token, "baseline_ms": values["t_target_1"],
            "bound_ms": timings.bound_ms(max_tokens), "verify_tokens": verify, "max_tokens": max_tokens,
            "values": values, "tree": tree}


def _scalar(value) -> float:
    return float(np.asarray(value, dtype=float).reshape(-1)[0])


def _stages(strategy: str, config: PredictConfig, timings: StageTimings, result: dict) -> list[StageTime]:
    values = result["values"]
    names = {"target": config.target or "target", "draft": config.draft or "draft", "tiny": config.tiny or "tiny",
             "heads": timings.models["heads"].name if "heads" in timings.models else "heads"}
    k, k_tiny = float(config.k), float(config.k_tiny)

    def stage(name, role, ms_per_forward, forwards, tokens):
        ms_per_forward = _scalar(ms_per_forward)
        return StageTime(name=name, model=names[role], ms=ms_per_forward * forwards, forwards=forwards,
                         tokens_per_forward=tokens, level=timings.level(role) if not timings.abstract else "-")

    verify = _scalar(result["verify_tokens"])
    if strategy == "autoregressive":
        return [stage("decode", "target", values["t_target_1"], 1, 1)]
    stages = []
    if strategy == "speculative":
        stages.append(stage("draft", "draft", values["t_draft_1"], k, 1))
    elif strategy == "vertical":
        stages.append(stage("tiny drafts", "tiny", values["t_tiny_1"], k * k_tiny, 1))
        stages.append(stage("draft reviews", "draft", values["t_draft_review"], k, k_tiny + 1))
    elif strategy == "filtered":
        stages.append(stage("tiny top-m", "tiny", values["t_tiny_1"], k, 1))
        stages.append(stage(f"draft (m={config.filter_width} columns)", "draft", values["t_draft_1"], k, 1))
    elif strategy == "horizontal":
        k_draft, positions = _scalar(values["k_draft"]), _scalar(values["k"])
        if k_draft > 0:
            stages.append(stage("draft positions", "draft", values["t_draft_1"], k_draft, 1))
        if positions - k_draft > 0:
            stages.append(stage("tiny positions", "tiny", values["t_tiny_1"], positions - k_draft, 1))
    elif strategy == "heads":
        if _scalar(values["t_heads"]) > 0:
            stages.append(stage("medusa heads", "heads", values["t_heads"], 1, 1))
    stages.append(stage("verify", "target", values["t_target_verify"], 1, verify))
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
    speedup = _scalar(result["speedup"])
    if strategy != "autoregressive" and speedup < 1.0:
        notes.append(f"predicted slower than autoregressive decoding ({speedup:.2f}x)")
    if strategy == "speculative" and config.alpha is not None:
        ratio = _scalar(result["values"]["t_draft_1"]) / _scalar(result["values"]["t_target_1"])
        if config.alpha <= ratio:
            notes.append(f"alpha {config.alpha} <= draft/target cost ratio {ratio:.3f}: no K gives a speedup "
                         "(Leviathan et al. 2023, corollary 3.9)")
    if strategy == "heads" and config.verify_cost is not None and config.verify_cost < 1.0:
        notes.append(f"verify cost {config.verify_cost} < 1: verifying a tree cheaper than one decode step")
    return notes


def predict(config: PredictConfig, strategy: str | None = None, *, alternatives: bool = True,
            chip: ChipProfile | None = None) -> Prediction:
    """One strategy's prediction with its breakdown (``strategy`` defaults to ``config.resolved_strategy()``)."""
    strategy = strategy or config.resolved_strategy()
    if strategy == "heads" and config.heads_accuracy is None:
        raise InputError("the heads strategy needs --heads-accuracy FILE.json")
    timings = timings_for(config, strategy, chip=chip)
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
        stages=_stages(strategy, config, timings, result),
        fits=placement.fits if placement else True,
        placement=dict(placement.levels) if placement else {},
        memory_per_chip_gb={level: used / 1e9 for level, used in placement.bytes_per_chip.items()} if placement else {},
        warnings=_warnings(strategy, config, timings, result), tree=tree)
    if alternatives:
        prediction.alternatives = [
            {"strategy": other.strategy, "ms_per_token": other.ms_per_token, "speedup": other.speedup,
             "expected_tokens_per_step": other.expected_tokens_per_step}
            for other in (predict(config, name, alternatives=False, chip=chip) for name in baselines(strategy, config))]
    return prediction


def baselines(strategy: str, config: PredictConfig) -> list[str]:
    """The simpler strategies the same inputs allow (shown next to the chosen one)."""
    names = ["autoregressive"]
    has_draft = config.draft is not None or config.c is not None
    if strategy in ("vertical", "filtered", "horizontal") and has_draft and config.alpha is not None:
        names.append("speculative")
    if strategy == "vertical" and config.alpha is not None:
        names.append("filtered")
    return [name for name in names if name != strategy]
