"""The claim audit: a reported result checked against its own inputs, the profiles and physics."""

from .claims import Claim, load_claim
from .findings import Finding
from .run import audit, findings_json

__all__ = ["Claim", "Finding", "audit", "findings_json", "load_claim"]
