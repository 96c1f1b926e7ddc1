"""Audit a reported result (a :class:`~speccascade.costmodel.claims.Claim`) against its own inputs and physics.

Each check returns findings ``{id, severity, message, numbers}``:

- ``error``: the claim contradicts itself or physics (arithmetic on its own numbers, a documented capacity, the
  bandwidth bound);
- ``warning``: the claim disagrees with a documented figure or with the cost model's best configuration (which
  rests on modelling assumptions);
- ``info``: a check that passed, with its numbers.

Checks here use only the claim (acceptance products, speedup ceilings, reported ratios); ``audit_memory`` checks
sizes, memory levels and stated hardware against the profiles; ``audit_speed`` checks the reported speeds against
the physical bound and the cost model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict

from speccascade.hardware import ChipProfile, ModelProfile, load_chip, load_model

from .claims import Claim, Reported

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

RATIO_TOLERANCE = 0.05        # reported ratios may differ from their values by rounding and +- noise
PRODUCT_TOLERANCE = 0.015     # absolute: "0.73" for 0.95 * 0.85 * 0.90 = 0.727 is consistent


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    severity: Severity
    message: str
    numbers: dict[str, float | int | str | None] = {}


@dataclass(frozen=True)
class AuditContext:
    """The claim with its profiles resolved (role -> model profile)."""

    claim: Claim
    chip: ChipProfile
    models: dict[str, ModelProfile]


def resolve(claim: Claim) -> AuditContext:
    chip = claim.hardware if isinstance(claim.hardware, ChipProfile) else load_chip(claim.hardware)
    models = {}
    for role in ("target", "draft", "tiny"):
        value = getattr(claim, role)
        if value is not None:
            models[role] = value if isinstance(value, ModelProfile) else load_model(value)
    # resolve every role-keyed table now so a bad key is one clear input error before any check runs
    for table in ("stated_sizes_gb", "stated_params", "placement", "quantization_reduction"):
        claim.by_role(table)
    for role, level in claim.by_role("placement").items():
        names = [memory.name for memory in chip.memory]
        if level not in names:
            from speccascade.errors import InputError

            raise InputError(f"claim '{claim.name}': placement of {role} names memory level '{level}'; "
                             f"{chip.name} has {', '.join(names)}")
    return AuditContext(claim, chip, models)


def finding(id: str, severity: Severity, message: str, **numbers) -> Finding:
    return Finding(id=id, severity=severity, message=message, numbers=numbers)


def relative_gap(stated: float, derived: float) -> float:
    return abs(stated - derived) / abs(derived) if derived else math.inf


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


def speedup_ceiling(acceptance: float, k: int | None) -> float:
    """Most tokens one target step can yield at this acceptance: E(a, K) with free drafts and a one-step verify,
    1/(1 - a) at any K (Leviathan et al. 2023); the speedup over autoregressive decoding cannot exceed it."""
    if k is not None:
        return (k + 1.0) if acceptance >= 1.0 else (1.0 - acceptance ** (k + 1)) / (1.0 - acceptance)
    return math.inf if acceptance >= 1.0 else 1.0 / (1.0 - acceptance)


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


# --- running all checks ----------------------------------------------------------------------------------

def audit(claim: Claim) -> list[Finding]:
    """Every check on ``claim``; findings sorted errors first (stable within a severity)."""
    from .audit_memory import MEMORY_CHECKS
    from .audit_speed import SPEED_CHECKS

    ctx = resolve(claim)
    checks = (check_acceptance_product, check_speedup_ceilings, check_reported_ratios, *MEMORY_CHECKS,
              *SPEED_CHECKS)
    findings = [item for check in checks for item in check(ctx)]
    return sorted(findings, key=lambda item: SEVERITY_ORDER[item.severity])


def findings_json(findings: list[Finding]) -> dict:
    counts = {severity: sum(item.severity == severity for item in findings) for severity in SEVERITY_ORDER}
    return {"findings": [item.model_dump() for item in findings], "counts": counts}
