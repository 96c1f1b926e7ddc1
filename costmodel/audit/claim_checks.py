"""Checks that use only the claim: acceptance products (seed eq. 6), speedup ceilings, reported ratios."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .claims import Reported
from .findings import PRODUCT_TOLERANCE, RATIO_TOLERANCE, AuditContext, Finding, finding, relative_gap, speedup_ceiling


# --- acceptance ----------------------------------------------------------------------------------------

def check_acceptance_product(ctx: AuditContext) -> list[Finding]:
    """The seed's eq. 6: gamma_total = gamma_0 * gamma_1|0 * gamma_2|1 (stages must multiply to the total)."""
    acceptance = ctx.claim.acceptance
    if not acceptance.stages or acceptance.total is None:
        return []
    product = math.prod(acceptance.stages)
    stages = " * ".join(f"{value:g}" for value in acceptance.stages)
    numbers = {"stages_product": product, "stated_total": acceptance.total}
    if abs(product - acceptance.total) > PRODUCT_TOLERANCE:
        return [finding("acceptance-product", "error",
                        f"stage acceptances {stages} = {product:.3f}, but the stated total is {acceptance.total:g}",
                        **numbers)]
    return [finding("acceptance-product", "info", f"stage acceptances {stages} = {product:.3f} match the "
                    f"stated total {acceptance.total:g}", **numbers)]


def check_speedup_ceilings(ctx: AuditContext) -> list[Finding]:
    claim, reported = ctx.claim, ctx.claim.reported
    acceptance = claim.acceptance
    cases = []
    if reported.speedup is not None and acceptance.total is not None:
        cases.append(("speedup-ceiling", reported.speedup, acceptance.total, "the stated total acceptance"))
    if reported.speedup is not None and acceptance.stages:
        product = math.prod(acceptance.stages)
        if acceptance.total is None or abs(product - acceptance.total) > PRODUCT_TOLERANCE:
            cases.append(("speedup-ceiling-stage-product", reported.speedup, product,
                          "the product of the stated stage acceptances"))
    if reported.speculative_speedup is not None and acceptance.speculative_total is not None:
        cases.append(("speculative-speedup-ceiling", reported.speculative_speedup, acceptance.speculative_total,
                      "the stated acceptance of standard speculation"))
    findings = []
    for id_, speedup, rate, what in cases:
        ceiling = speedup_ceiling(rate, claim.k if id_ != "speculative-speedup-ceiling" else None)
        at = f"K = {claim.k}" if claim.k is not None and id_ != "speculative-speedup-ceiling" else "any K"
        numbers = {"reported_speedup": speedup, "acceptance": rate, "ceiling": ceiling}
        if speedup > ceiling * (1 + 1e-9):
            findings.append(finding(id_, "error", f"{speedup:g}x exceeds {ceiling:.2f}x, the most {what} "
                                    f"({rate:.3f}) allows at {at} even with free drafts and a one-step verify",
                                    **numbers))
        else:
            findings.append(finding(id_, "info", f"{speedup:g}x is within the {ceiling:.2f}x ceiling of {what} "
                                    f"({rate:.3f}) at {at}", **numbers))
    return findings


# --- reported ratios -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RatioRule:
    id: str
    stated: str                                # field of Reported holding the stated value
    needs: tuple[str, ...]                     # fields the derived value is computed from
    derive: Callable[[Reported], float]
    formula: str


RATIO_RULES = (
    RatioRule("ratio-tokens-per-s", "tokens_per_s", ("ms_per_token",), lambda r: 1e3 / r.ms_per_token,
              "1000 / ms_per_token"),
    RatioRule("ratio-baseline-tokens-per-s", "baseline_tokens_per_s", ("baseline_ms_per_token",),
              lambda r: 1e3 / r.baseline_ms_per_token, "1000 / baseline_ms_per_token"),
    RatioRule("ratio-speculative-tokens-per-s", "speculative_tokens_per_s", ("speculative_ms_per_token",),
              lambda r: 1e3 / r.speculative_ms_per_token, "1000 / speculative_ms_per_token"),
    RatioRule("ratio-speedup", "speedup", ("tokens_per_s", "baseline_tokens_per_s"),
              lambda r: r.tokens_per_s / r.baseline_tokens_per_s, "tokens_per_s / baseline_tokens_per_s"),
    RatioRule("ratio-speedup-latency", "speedup", ("ms_per_token", "baseline_ms_per_token"),
              lambda r: r.baseline_ms_per_token / r.ms_per_token, "baseline_ms_per_token / ms_per_token"),
    RatioRule("ratio-speculative-speedup", "speculative_speedup", ("speculative_tokens_per_s", "baseline_tokens_per_s"),
              lambda r: r.speculative_tokens_per_s / r.baseline_tokens_per_s,
              "speculative_tokens_per_s / baseline_tokens_per_s"),
    RatioRule("ratio-speedup-over-speculative", "speedup_over_speculative",
              ("tokens_per_s", "speculative_tokens_per_s"), lambda r: r.tokens_per_s / r.speculative_tokens_per_s,
              "tokens_per_s / speculative_tokens_per_s"),
    RatioRule("ratio-speedup-over-speculative-speedups", "speedup_over_speculative",
              ("speedup", "speculative_speedup"), lambda r: r.speedup / r.speculative_speedup,
              "speedup / speculative_speedup"),
)


def check_reported_ratios(ctx: AuditContext) -> list[Finding]:
    reported = ctx.claim.reported
    findings = []
    for rule in RATIO_RULES:
        stated = getattr(reported, rule.stated)
        if stated is None or any(getattr(reported, name) is None for name in rule.needs):
            continue
        derived = rule.derive(reported)
        gap = relative_gap(stated, derived)
        numbers = {"stated": stated, "derived": derived, "relative_gap": gap, "formula": rule.formula}
        if gap > RATIO_TOLERANCE:
            findings.append(finding(rule.id, "error", f"reported {rule.stated} = {stated:g}, but {rule.formula} = "
                                    f"{derived:.2f} ({gap:.0%} apart)", **numbers))
        else:
            findings.append(finding(rule.id, "info", f"{rule.stated} = {stated:g} agrees with {rule.formula} = "
                                    f"{derived:.2f}", **numbers))
    return findings


CLAIM_CHECKS = (check_acceptance_product, check_speedup_ceilings, check_reported_ratios)
