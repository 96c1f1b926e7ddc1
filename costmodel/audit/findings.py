"""Audit a reported result (a :class:`~speccascade.costmodel.audit.claims.Claim`) against its own inputs and physics.

Each check returns findings ``{id, severity, message, numbers}``:

- ``error``: the claim contradicts itself or physics (arithmetic on its own numbers, a documented capacity, the
  bandwidth bound);
- ``warning``: the claim disagrees with a documented figure or with the cost model's best configuration (which
  rests on modelling assumptions);
- ``info``: a check that passed, with its numbers.

This module holds what every check shares (findings, the resolved claim, tolerances); ``claim_checks`` uses only
the claim (acceptance products, speedup ceilings, reported ratios); ``memory`` checks sizes, memory levels and
stated hardware against the profiles; ``speed`` checks the reported speeds against the physical bound and the cost
model; ``run`` runs them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from speccascade.hardware import ChipProfile, ModelProfile, load_chip, load_model

from .claims import Claim

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


def speedup_ceiling(acceptance: float, k: int | None) -> float:
    """Most tokens one target step can yield at this acceptance: E(a, K) with free drafts and a one-step verify,
    1/(1 - a) at any K (Leviathan et al. 2023); the speedup over autoregressive decoding cannot exceed it."""
    if k is not None:
        return (k + 1.0) if acceptance >= 1.0 else (1.0 - acceptance ** (k + 1)) / (1.0 - acceptance)
    return math.inf if acceptance >= 1.0 else 1.0 / (1.0 - acceptance)
