"""Run every audit check on a claim (see :mod:`.findings` for what a finding is)."""

from __future__ import annotations

from .claim_checks import CLAIM_CHECKS
from .claims import Claim
from .findings import SEVERITY_ORDER, Finding, resolve
from .memory import MEMORY_CHECKS
from .speed import SPEED_CHECKS


def audit(claim: Claim) -> list[Finding]:
    """Every check on ``claim``; findings sorted errors first (stable within a severity)."""
    ctx = resolve(claim)
    checks = (*CLAIM_CHECKS, *MEMORY_CHECKS, *SPEED_CHECKS)
    findings = [item for check in checks for item in check(ctx)]
    return sorted(findings, key=lambda item: SEVERITY_ORDER[item.severity])


def findings_json(findings: list[Finding]) -> dict:
    counts = {severity: sum(item.severity == severity for item in findings) for severity in SEVERITY_ORDER}
    return {"findings": [item.model_dump() for item in findings], "counts": counts}
