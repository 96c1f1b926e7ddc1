"""An optimizer result: the ranking, the runner-ups, and why each other configuration loses."""

from __future__ import annotations

from dataclasses import dataclass, field
from speccascade import strategies as registry

from .request import Choice, OptimizeRequest


def why_loses(loser: Choice, winner: Choice, request: OptimizeRequest) -> tuple[str, str]:
    """(reason, message). memory: it does not fit; latency: over the limit; acceptance: its tokens are accepted
    less often than the winner's; cost ratio: same or better acceptance, but drafting and verifying cost more per
    token; scaling: faster per token but worse on a per-chip or throughput objective."""
    unit = loser.units
    if not loser.fits:
        return "memory", loser.note or "does not fit"
    if not loser.feasible:
        return "latency", f"{loser.ms_per_token:.3f} {unit}/token at best, over the {request.latency_limit_ms:g} limit"
    if not registry.get(loser.structure.strategy).pairs:  # no drafter: autoregressive
        return "no speculation", f"1 token per {loser.step_ms:.3f} {unit} step"
    if request.objective != "ms_per_token" and loser.ms_per_token <= winner.ms_per_token:
        return "scaling", (f"faster per token ({loser.ms_per_token:.3f} vs {winner.ms_per_token:.3f} {unit}) but "
                           f"{request.objective} {loser.objective_value:.4g} vs {winner.objective_value:.4g}")
    steps = (f"{loser.expected_tokens:.2f} vs {winner.expected_tokens:.2f} tokens per step at {loser.step_ms:.3f} "
             f"vs {winner.step_ms:.3f} {unit} per step")
    if (loser.acceptance is not None and winner.acceptance is not None
            and loser.acceptance < winner.acceptance - 1e-12):
        return "acceptance", f"acceptance {loser.acceptance:.3f} vs {winner.acceptance:.3f}: {steps}"
    ratio = f"draft/target cost ratio c = {loser.cost_ratio:.3f}" if loser.cost_ratio is not None else "costlier steps"
    return "cost ratio", f"{ratio}, best K = {loser.k}: {steps}"


@dataclass(frozen=True)
class OptimizeResult:
    request: OptimizeRequest
    ranked: list[Choice]                 # feasible first, best objective first (several cells per structure)
    configurations: int
    extras: dict = field(default_factory=dict)

    @property
    def best(self) -> Choice:
        return self.ranked[0]

    def top(self) -> list[Choice]:
        """The best choice, then runner-ups: the best cell of other structures first, then other K of the same."""
        wanted = self.request.top
        distinct, seen = [], set()
        for choice in self.ranked:
            if choice.structure not in seen:
                seen.add(choice.structure)
                distinct.append(choice)
        chosen = distinct[:wanted]
        if len(chosen) < wanted:
            chosen += [choice for choice in self.ranked if choice not in chosen][: wanted - len(chosen)]
        return sorted(chosen, key=self.ranked.index)

    def losers(self) -> list[tuple[Choice, str, str]]:
        """The best variant of each (strategy, draft, tiny) family not already among the top entries."""
        shown = {choice.structure for choice in self.top()}
        families = {choice.structure.family for choice in self.top()}
        seen, out = set(), []
        for choice in self.ranked:
            family = choice.structure.family
            if choice.structure in shown or family in seen or family in families:
                continue
            seen.add(family)
            out.append((choice, *why_loses(choice, self.best, self.request)))
        return out

    def infeasible(self) -> list[dict]:
        """Structures that cannot run, grouped by why (memory or latency), one example message per group."""
        groups: dict[tuple, dict] = {}
        seen = set()
        for choice in self.ranked:
            if choice.feasible or choice.structure in seen:
                continue
            seen.add(choice.structure)
            reason, message = why_loses(choice, self.best, self.request)
            key = (reason, choice.structure.chips, choice.structure.batch)
            group = groups.setdefault(key, {"reason": reason, "chips": choice.structure.chips,
                                            "batch": choice.structure.batch, "structures": 0, "example": message})
            group["structures"] += 1
        return list(groups.values())

    def to_json(self) -> dict:
        top = self.top()
        out = {"mode": "abstract" if self.request.abstract else "hardware", "objective": self.request.objective}
        if self.request.abstract:
            out |= {"alpha": self.request.alpha, "c": self.request.c, "c_tiny": self.request.c_tiny}
        return out | {"best": top[0].to_json(), "runner_ups": [choice.to_json() for choice in top[1:]],
                      "losers": [choice.to_json() | {"reason": reason, "why": message}
                                 for choice, reason, message in self.losers()],
                      "infeasible": self.infeasible(), "configurations_searched": self.configurations, **self.extras}
