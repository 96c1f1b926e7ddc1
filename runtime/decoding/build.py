"""Build a strategy by name from a (tiny, draft, target) trio: what the CLI and the benchmark use."""

from __future__ import annotations

from dataclasses import dataclass

from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM

from .base import Strategy
from .cascade import FilteredCascade, VerticalCascade
from .sampling import GREEDY, SamplingConfig
from .strategies import Autoregressive, Speculative

STRATEGY_NAMES = ("autoregressive", "speculative", "cascade", "filtered")


@dataclass(frozen=True)
class StrategyKnobs:
    """Draft lengths: ``k`` for speculative and filtered; ``k_outer``/``k_inner`` for the vertical cascade."""

    k: int = 4
    k_outer: int = 6
    k_inner: int = 3
    top_m: int = 64


def build_strategy(name: str, tiny: CausalLM | None, draft: CausalLM | None, target: CausalLM,
                   sampling: SamplingConfig = GREEDY, knobs: StrategyKnobs = StrategyKnobs()) -> Strategy:
    if name not in STRATEGY_NAMES:
        raise InputError(f"unknown strategy '{name}'; known: {', '.join(STRATEGY_NAMES)}")
    needs = {"speculative": (draft,), "cascade": (tiny, draft), "filtered": (tiny, draft)}.get(name, ())
    if any(model is None for model in needs):
        raise InputError(f"strategy '{name}' needs a draft{' and a tiny' if len(needs) == 2 else ''} model")
    if name == "autoregressive":
        return Autoregressive(target, sampling)
    if name == "speculative":
        return Speculative(draft, target, knobs.k, sampling)
    if name == "cascade":
        return VerticalCascade(tiny, draft, target, knobs.k_outer, knobs.k_inner, sampling)
    return FilteredCascade(tiny, draft, target, knobs.k, min(knobs.top_m, target.vocab_size), sampling)
