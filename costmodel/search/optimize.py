"""Find the best decoding configuration: exhaustive and vectorized over the integer grid.

A *structure* is one discrete choice: strategy, draft model (with quantization) and its acceptance, whether a Tiny
stage is added (and which), the filter width m, chips (tensor parallelism of the target) and batch size. For each
structure the profiles are placed once (``stage_timings``) and ``predict.evaluate`` runs once over the whole
(K, k_tiny) grid as broadcast arrays; the best cell per structure is kept. Objectives:

- ``ms_per_token`` (default): minimize the time per generated token of one sequence;
- ``tokens_per_s_per_chip``: maximize batch x 1000 / ms_per_token / chips;
- ``throughput``: maximize batch x 1000 / ms_per_token subject to ms_per_token <= ``latency_limit_ms``.

Configurations that do not fit (any memory level's capacity, via ``placement.place``) or break the latency limit
are infeasible. Each losing structure gets a reason: memory, latency, cost ratio (its steps cost more), or
acceptance (its steps yield fewer tokens), whichever explains more of its gap to the winner.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.hardware import load_chip, load_model
from speccascade.limits import MAX_K, MAX_OPTIMIZE_CONFIGURATIONS

from ..config import PredictConfig
from ..predict import evaluate
from ..timings import StageTimings, stage_timings
from .extras import closed_form_extras
from .optimal import continuous_optimal_k
from .request import (DEFAULT_CHIPS, DEFAULT_QUANTIZATIONS, Candidate, Choice, Objective,  # noqa: F401 (re-exported)
                      OptimizeRequest, Structure, family_drafts, registry_tinies, searchable)
from .result import OptimizeResult, why_loses  # noqa: F401  (re-exported)

# --- enumeration -----------------------------------------------------------------------------------------

def _expand_quantized(request: OptimizeRequest) -> list[Candidate]:
    drafts = []
    for candidate in request.draft_candidates():
        alpha = candidate.alpha if candidate.alpha is not None else request.alpha
        if alpha is None:
            raise InputError(f"draft {candidate.name} has no acceptance: give NAME=ALPHA or --alpha")
        names = [candidate.name]
        if ":" not in candidate.name:
            names += [f"{candidate.name}:{dtype}" for dtype in request.quantization_list()]
        for name in names:
            load_model(name)  # unknown names and quantizations fail here, listing the known ones
            drafts.append(Candidate(name=name, alpha=alpha))
    return list(dict.fromkeys(drafts))


def _tinies(request: OptimizeRequest) -> list[Candidate]:
    tinies = []
    for candidate in request.tiny_candidates():
        alpha = candidate.alpha if candidate.alpha is not None else request.alpha_tiny
        load_model(candidate.name)
        tinies.append(Candidate(name=candidate.name, alpha=alpha))
    return tinies


def _structures_of(strategy: str, request: OptimizeRequest, drafts: list[Candidate], tinies: list[Candidate],
                   common: dict) -> list[Structure]:
    """The structures of one strategy: its roles pick the draft and tiny candidates, its knobs the filter widths;
    a strategy whose Tiny pair needs alpha_tiny skips tinies without one."""
    spec = registry.get(strategy)
    parameters = {pair.parameter for pair in spec.pairs}
    draft_options = [(d.name, d.alpha) for d in drafts] if "draft" in spec.roles else [(None, None)]
    tiny_options = [(t.name, t.alpha) for t in tinies] if "tiny" in spec.roles else [(None, None)]
    widths = request.filter_widths if "filter_width" in spec.knob_names else [None]
    out = []
    for draft, alpha in draft_options:
        for tiny, alpha_tiny in tiny_options:
            if "alpha_tiny" in parameters and alpha_tiny is None:
                continue
            out += [Structure(strategy, draft, alpha, tiny, alpha_tiny if "alpha_tiny" in parameters else None,
                              width, **common) for width in widths]
    return out


def structures(request: OptimizeRequest) -> list[Structure]:
    """Every discrete choice the request allows."""
    if not request.abstract:  # unknown chip or target: one line before anything else
        load_chip(request.hardware)
        load_model(request.target)
    if request.abstract:  # one draft of cost c (and a Tiny of cost c_tiny when given)
        drafts = [Candidate(name="draft", alpha=request.alpha)]
        tinies = [Candidate(name="tiny", alpha=request.alpha_tiny)] if request.c_tiny is not None else []
        out = [replace(structure, draft=None, tiny=None)
               for strategy in request.strategies
               for structure in _structures_of(strategy, request, drafts, tinies, {})
               if "tiny" not in registry.get(strategy).roles or tinies]
        return out
    drafts, tinies = _expand_quantized(request), _tinies(request)
    chip_counts, batches = list(dict.fromkeys(request.chip_counts)), list(dict.fromkeys(request.batches))
    usable = [strategy for strategy in request.strategies
              if not ("draft" in registry.get(strategy).roles and not drafts)
              and not ("tiny" in registry.get(strategy).roles and not tinies)]
    per_placement = sum(len(_structures_of(strategy, request, drafts, tinies, {})) for strategy in usable)
    count = per_placement * len(chip_counts) * len(batches)  # counted before any is built
    limit = request.max_configurations or MAX_OPTIMIZE_CONFIGURATIONS
    if count > limit:
        raise InputError(f"the search has {count:,} structures (at least as many configurations), more than the "
                         f"limit of {limit:,} (fewer --chips/--batch/--filter-widths/--draft, or raise it with "
                         "--max-configurations)")
    out = []
    for chips in chip_counts:
        for batch in batches:
            for strategy in usable:
                out += _structures_of(strategy, request, drafts, tinies, {"chips": chips, "batch": batch})
    if not out:
        raise InputError("nothing to search: give --draft candidates (and --tiny for cascades) or other --strategies")
    return out


# --- evaluation ------------------------------------------------------------------------------------------

def _config(request: OptimizeRequest, structure: Structure, k: int, k_tiny: int) -> PredictConfig:
    fields = {"strategy": structure.strategy, "k": k, "k_tiny": k_tiny, "batch": structure.batch,
              "context": request.context, "combine": request.combine, "gamma_tiny": request.gamma_tiny,
              "gamma_draft_given_tiny": request.gamma_draft_given_tiny}
    if structure.alpha is not None:
        fields["alpha"] = structure.alpha
    if structure.alpha_tiny is not None:
        fields["alpha_tiny"] = structure.alpha_tiny
    if structure.filter_width is not None:
        fields["filter_width"] = structure.filter_width
    if request.abstract:
        return PredictConfig(**fields, c=request.c, c_tiny=request.c_tiny)
    roles = {"draft": structure.draft, "tiny": structure.tiny}
    return PredictConfig(**fields, hardware=request.hardware, chips=structure.chips, target=request.target,
                         **{role: name for role, name in roles.items() if name is not None})


def k_grid(request: OptimizeRequest, structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """Broadcastable K and k_tiny arrays for a structure (k_tiny only where the strategy uses it)."""
    k_max = request.k_max
    knobs = registry.get(structure.strategy).knob_names
    if request.abstract and knobs == ("k",) and not registry.get(structure.strategy).roles.count("tiny") \
            and request.c > 0 and request.alpha < 1:
        k_star = float(continuous_optimal_k(request.alpha, request.c))
        if np.isfinite(k_star):
            k_max = int(min(MAX_K, max(k_max, math.ceil(k_star) + 1)))
    ks = np.arange(1, k_max + 1, dtype=float)[:, None] if "k" in knobs else np.array([[1.0]])
    k_tinies = np.arange(1, request.k_tiny_max + 1, dtype=float)[None, :] if "k_tiny" in knobs else np.array([[1.0]])
    return ks, k_tinies


def objective_values(request: OptimizeRequest, structure: Structure, ms_per_token: np.ndarray) -> np.ndarray:
    """Larger is better: -ms/token, tokens/s per chip, or throughput (-inf over the latency limit)."""
    if request.objective == "ms_per_token":
        values = -ms_per_token
    else:
        per_second = 1e3 / ms_per_token * structure.batch
        values = per_second / structure.chips if request.objective == "tokens_per_s_per_chip" else per_second
    if request.latency_limit_ms is not None:
        values = np.where(ms_per_token <= request.latency_limit_ms, values, -np.inf)
    return values


def best_of(request: OptimizeRequest, structure: Structure, keep: int = 1) -> tuple[list[Choice], StageTimings]:
    """Evaluate one structure over its whole (K, k_tiny) grid at once; the ``keep`` best cells, best first."""
    ks, k_tinies = k_grid(request, structure)
    config = _config(request, structure, int(ks.max()), int(k_tinies.max()))
    spec = registry.get(structure.strategy)
    verify = int(spec.step_shape({"k": int(ks.max()), "k_tiny": int(k_tinies.max())}).verify_tokens())
    timings = stage_timings(config, verify_tokens=verify)
    result = evaluate(structure.strategy, config, timings, k=ks, k_tiny=k_tinies)
    shape = np.broadcast_shapes(ks.shape, k_tinies.shape)
    flat = lambda name: np.broadcast_to(np.asarray(result[name], float), shape).ravel()  # noqa: E731
    ms = flat("ms_per_token")
    values = objective_values(request, structure, ms)
    fits = timings.placement.fits if timings.placement is not None else True
    placement = timings.placement
    k_flat, k_tiny_flat = np.broadcast_to(ks, shape).ravel(), np.broadcast_to(k_tinies, shape).ravel()
    order = np.lexsort((k_tiny_flat, k_flat, -values))[:keep]
    acceptance = structure.alpha
    if "gamma_total" in {pair.parameter for pair in spec.pairs} and structure.alpha is not None:
        acceptance = request.gamma_tiny * request.gamma_draft_given_tiny * structure.alpha
    cost_ratio = (float(timings.forward_ms("draft", 1)) / float(timings.forward_ms("target", 1))
                  if "draft" in spec.roles else None)
    choices = [Choice(
        structure=structure, k=int(k_flat[i]) if "k" in spec.knob_names else None,
        k_tiny=int(k_tiny_flat[i]) if "k_tiny" in spec.knob_names else None,
        ms_per_token=float(ms[i]), expected_tokens=float(flat("expected_tokens")[i]),
        step_ms=float(flat("step_ms")[i]), speedup=float(flat("speedup")[i]), fits=fits,
        objective_value=float(values[i]), feasible=fits and bool(np.isfinite(values[i])), units=timings.unit,
        memory_per_chip_gb={level: used / 1e9 for level, used in placement.bytes_per_chip.items()} if placement else {},
        placement=dict(placement.levels) if placement else {}, configurations=int(np.prod(shape)),
        note="; ".join(placement.warnings) if placement else "", acceptance=acceptance, cost_ratio=cost_ratio)
        for i in order]
    return choices, timings


def check_size(request: OptimizeRequest, found: list[Structure]) -> int:
    """The number of configurations the search evaluates, refused before any is evaluated when over
    ``request.max_configurations`` (speccascade.limits.MAX_OPTIMIZE_CONFIGURATIONS unless --max-configurations)."""
    limit = request.max_configurations or MAX_OPTIMIZE_CONFIGURATIONS
    total = 0
    for structure in found:
        ks, k_tinies = k_grid(request, structure)
        total += ks.size * k_tinies.size
    if total > limit:
        raise InputError(f"the search has {total:,} configurations ({len(found):,} structures), more than the limit "
                         f"of {limit:,} (fewer --chips/--batch/--filter-widths or a smaller --k-max/--k-tiny-max, "
                         "or raise it with --max-configurations)")
    return total


def optimize(request: OptimizeRequest) -> OptimizeResult:
    """Search every structure; rank feasible choices by the objective (ties: fewer chips, smaller K)."""
    choices, total, evaluated = [], 0, {}
    found = structures(request)
    check_size(request, found)
    for structure in found:
        kept, timings = best_of(request, structure, keep=request.top)
        choices += kept
        evaluated[structure] = timings
        total += kept[0].configurations
    ranked = sorted(choices, key=lambda ch: (not ch.feasible, -ch.objective_value, ch.structure.chips,
                                             ch.k or 0, ch.k_tiny or 0))
    result = OptimizeResult(request, ranked, total)
    return replace(result, extras=closed_form_extras(result, evaluated))
