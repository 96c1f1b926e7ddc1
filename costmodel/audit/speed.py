"""Audit checks on reported speeds: the physical bound and the cost model's best configuration.

- ``speed-bound`` (error when broken): one target step streams the target's weights once at the datasheet
  bandwidth of the level holding them (``StageTimings.bound_ms``), and yields at most E(a, K) tokens
  (1 / (1 - a) at any K) with free drafts; no reported tokens/s can exceed 1000 / that time per token.
- ``modelled-speed`` and ``modelled-speedup`` (warnings when exceeded): the best tokens/s (and speedup) the cost model finds for the claim's strategy, models
  and stated acceptance over K = 1..32 (k_tiny = 1..8, filter width m in {16, 64, 256, 1024, 4096}) unless the
  claim fixes them. The vertical cascade's alpha_tiny is the first stated stage (1 when none is stated).
"""

from __future__ import annotations

import math

import numpy as np

from speccascade import strategies as registry

from .findings import PRODUCT_TOLERANCE, RATIO_TOLERANCE, AuditContext, Finding, finding, speedup_ceiling
from ..config import PredictConfig
from ..placement import Resident, place
from ..search.optimize import searchable
from ..predict import evaluate
from ..timings import StageTimings

K_SEARCH = np.arange(1, 33, dtype=float)
K_TINY_SEARCH = np.arange(1, 9, dtype=float)
FILTER_WIDTHS = (16, 64, 256, 1024, 4096)


def claim_timings(ctx: AuditContext) -> StageTimings:
    """Stage timings for the claim's own models and chip (inline profiles allowed): target over ``claim.tp``
    chips, drafts replicated, placement by ``placement.place``."""
    claim = ctx.claim
    names = {role: model.name for role, model in ctx.models.items()}
    config = PredictConfig(hardware=ctx.chip.name, chips=claim.tp, batch=claim.batch, context=claim.context, **names)
    tensor_parallel = {role: (claim.tp if role == "target" else 1) for role in ctx.models}
    knobs = {"k": claim.k or int(K_SEARCH.max()), "k_tiny": claim.k_tiny or int(K_TINY_SEARCH.max())}
    verify = int(registry.get(claim.strategy).step_shape(knobs).verify_tokens())  # the largest step searched
    residents = [Resident(role, model, tensor_parallel[role], verify if role == "target" else 1)
                 for role, model in ctx.models.items()]
    placement = place(ctx.chip, residents, batch=claim.batch, context=claim.context)
    return StageTimings(config, ctx.chip, dict(ctx.models), placement, tensor_parallel)


def _reported_rate(value: float | None, ms: float | None) -> float | None:
    return value if value is not None else (1e3 / ms if ms is not None else None)


def _speed_cases(ctx: AuditContext) -> list[tuple[str, str, float, float | None, int | None]]:
    """(id, what, reported tokens/s, acceptance or None for autoregressive, K) for every reported speed."""
    claim, reported, acceptance = ctx.claim, ctx.claim.reported, ctx.claim.acceptance
    cases = []
    method = _reported_rate(reported.tokens_per_s, reported.ms_per_token)
    if method is not None and not registry.get(claim.strategy).pairs:  # autoregressive: no acceptance
        cases.append(("", "the method", method, None, None))
    elif method is not None and acceptance.total is not None:
        cases.append(("", "the method", method, acceptance.total, claim.k))
        if acceptance.stages and abs(math.prod(acceptance.stages) - acceptance.total) > PRODUCT_TOLERANCE:
            cases.append(("-stage-product", "the method", method, math.prod(acceptance.stages), claim.k))
    baseline = _reported_rate(reported.baseline_tokens_per_s, reported.baseline_ms_per_token)
    if baseline is not None:
        cases.append(("-baseline", "autoregressive decoding", baseline, None, None))
    speculative = _reported_rate(reported.speculative_tokens_per_s, reported.speculative_ms_per_token)
    if speculative is not None and acceptance.speculative_total is not None:
        cases.append(("-speculative", "standard speculation", speculative, acceptance.speculative_total, None))
    return cases


def check_speed_bound(ctx: AuditContext) -> list[Finding]:
    timings = claim_timings(ctx)
    target = ctx.models["target"]
    level = ctx.chip.level(timings.level("target"))
    streamed_gb = target.streamed_params() * target.bytes_per_param / ctx.claim.tp / 1e9
    findings = []
    for suffix, what, rate, acceptance, k in _speed_cases(ctx):
        max_tokens = 1.0 if acceptance is None else speedup_ceiling(acceptance, k)
        bound_ms = float(timings.bound_ms(max_tokens))
        step_ms = bound_ms * max_tokens
        bound_rate = 1e3 / bound_ms
        numbers = {"reported_tokens_per_s": rate, "bound_tokens_per_s": bound_rate, "max_tokens_per_step": max_tokens,
                   "target_step_ms_at_least": step_ms, "streamed_gb_per_chip": streamed_gb,
                   "bandwidth_gb_s": level.bandwidth_bytes_per_s / 1e9, "acceptance": acceptance}
        how = (f"one target step streams {streamed_gb:.2f} GB from {level.name} at "
               f"{level.bandwidth_bytes_per_s / 1e9:g} GB/s = {step_ms:.2f} ms and yields at most {max_tokens:.2f} "
               f"tokens" + (f" (acceptance {acceptance:.3f})" if acceptance is not None else ""))
        needed = rate * step_ms / 1e3
        if rate > bound_rate * (1 + 1e-9):
            findings.append(finding("speed-bound" + suffix, "error", f"{what}: {rate:g} tokens/s is above the "
                                    f"physical bound {bound_rate:.1f} tokens/s: {how}", **numbers))
        else:
            findings.append(finding("speed-bound" + suffix, "info", f"{what}: {rate:g} tokens/s is under the "
                                    f"physical bound {bound_rate:.1f} tokens/s ({how}; it needs {needed:.2f} tokens "
                                    f"per step)", **numbers))
    return findings


def _best_modelled(timings: StageTimings, strategy: str, acceptance: float, stages: list[float],
                   k: int | None, k_tiny: int | None, filter_width: int | None) -> tuple[float, str]:
    """The cost model's best ms/token for a strategy at the stated acceptance, and the configuration: a grid over
    the strategy's registry knobs (those the claim states are held), the stated acceptance given to the pair the
    target verifies (alpha, or gamma_total for the filtered cascade) and the first stated stage to the Tiny pair."""
    config = timings.config
    spec = registry.get(strategy)
    if not spec.pairs:
        return float(evaluate(strategy, config, timings)["ms_per_token"]), strategy
    grids = {"k": (np.asarray([float(k)]) if k is not None else K_SEARCH)[:, None]}
    if "k_tiny" in spec.knob_names:
        grids["k_tiny"] = (np.asarray([float(k_tiny)]) if k_tiny is not None else K_TINY_SEARCH)[None, :]
    parameters = {pair.parameter for pair in spec.pairs}
    overrides = {next(pair.parameter for pair in spec.pairs if pair.verifier == "target"): acceptance}
    notes = ""
    if "alpha_tiny" in parameters:
        overrides["alpha_tiny"] = stages[0] if stages else 1.0
        notes = f", alpha_tiny={overrides['alpha_tiny']:g}"
    widths = ([filter_width] if filter_width else list(FILTER_WIDTHS)) if "filter_width" in spec.knob_names else [None]
    best = (math.inf, "")
    for width in widths:
        variant = config if width is None else config.model_copy(update={"filter_width": width})
        ms = np.broadcast_to(np.asarray(evaluate(strategy, variant, timings, **grids, **overrides)["ms_per_token"]),
                             np.broadcast_shapes(*(grid.shape for grid in grids.values())))
        i, j = np.unravel_index(int(ms.argmin()), ms.shape)
        if ms[i, j] < best[0]:
            where = [f"K={int(grids['k'][i, 0])}"]
            if "k_tiny" in grids:
                where.append(f"k_tiny={int(grids['k_tiny'][0, j])}")
            if width is not None:
                where.append(f"m={width}")
            best = (float(ms[i, j]), ", ".join(where) + notes)
    return best


def check_modelled_speed(ctx: AuditContext) -> list[Finding]:
    claim = ctx.claim
    timings = claim_timings(ctx)
    strategy_of = {"-baseline": registry.AUTOREGRESSIVE.name, "-speculative": registry.SPECULATIVE.name}
    findings = []
    for suffix, what, rate, acceptance, k in _speed_cases(ctx):
        strategy = strategy_of.get(suffix, claim.strategy)
        if strategy not in searchable():
            findings.append(finding("modelled-speed", "info", f"{strategy} claims are checked against the bound only"))
            continue
        if any(role not in ctx.models for role in registry.get(strategy).roles):
            continue
        ms, where = _best_modelled(timings, strategy, acceptance or 0.0, claim.acceptance.stages,
                                   None if suffix == "-speculative" else claim.k, claim.k_tiny, claim.filter_width)
        best_rate = 1e3 / ms
        fit_note = "" if timings.placement.fits else " (and this configuration does not fit in memory)"
        numbers = {"reported_tokens_per_s": rate, "modelled_best_tokens_per_s": best_rate, "configuration": where,
                   "strategy": strategy, "acceptance": acceptance, "fits": timings.placement.fits}
        drafting = bool(registry.get(strategy).pairs)
        at = f" at acceptance {acceptance:.3f}" if acceptance is not None and drafting else ""
        if rate > best_rate * (1 + RATIO_TOLERANCE):
            findings.append(finding("modelled-speed" + suffix, "warning", f"{what}: {rate:g} tokens/s is above the "
                                    f"cost model's best {strategy} configuration{at}: {best_rate:.1f} tokens/s "
                                    f"({where}, {ctx.chip.name}, tensor parallelism {claim.tp}){fit_note}", **numbers))
        else:
            findings.append(finding("modelled-speed" + suffix, "info", f"{what}: {rate:g} tokens/s is within the "
                                    f"cost model's best {strategy} configuration{at}: {best_rate:.1f} tokens/s "
                                    f"({where}){fit_note}", **numbers))
        if suffix in ("", "-stage-product") and claim.reported.speedup is not None and drafting:
            findings.append(_modelled_speedup(ctx, timings, suffix, ms, where, acceptance))
    return findings


def _modelled_speedup(ctx: AuditContext, timings: StageTimings, suffix: str, best_ms: float, where: str,
                      acceptance: float | None) -> Finding:
    """The reported speedup vs the cost model's best speedup over autoregressive decoding on the same chips."""
    reported = ctx.claim.reported.speedup
    baseline_ms = float(evaluate(registry.AUTOREGRESSIVE.name, timings.config, timings)["ms_per_token"])
    best = baseline_ms / best_ms
    numbers = {"reported_speedup": reported, "modelled_best_speedup": best, "configuration": where,
               "acceptance": acceptance}
    text = (f"{reported:g}x reported; the cost model's best at acceptance {acceptance:.3f} is {best:.2f}x "
            f"({where}; drafts and verification at their modelled cost)")
    severity = "warning" if reported > best * (1 + RATIO_TOLERANCE) else "info"
    return finding("modelled-speedup" + suffix, severity, text, **numbers)


SPEED_CHECKS = (check_speed_bound, check_modelled_speed)
