"""Build a strategy by its registry name (or alias) from models by role: what the CLI and the benchmark use.

The runtime's implementations are registered against :mod:`speccascade.strategies` entries (``RUNTIME``); the
registry checks the names, the roles a strategy needs and its knobs, so this module holds no list of names.
"""

from __future__ import annotations

from typing import Callable, Mapping

from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM
from speccascade.strategy_names import StrategyKnobs

from .base import DecodingStrategy
from .cascade import FilteredCascade, VerticalBudget, VerticalCascade
from .heads import HeadsTree
from .sampling import GREEDY, SamplingConfig
from .strategies import Autoregressive, Speculative

Builder = Callable[[Mapping[str, CausalLM], Mapping[str, int], SamplingConfig], DecodingStrategy]
RUNTIME: registry.Implementations[Builder] = registry.Implementations("runtime")
RUNTIME.register("autoregressive", lambda m, knobs, s: Autoregressive(m["target"], s))
RUNTIME.register("speculative", lambda m, knobs, s: Speculative(m["draft"], m["target"], knobs["k"], s))
RUNTIME.register("vertical", lambda m, knobs, s: VerticalCascade(m["tiny"], m["draft"], m["target"], knobs["k"],
                                                                 knobs["k_tiny"], s))
RUNTIME.register("vertical-budget", lambda m, knobs, s: VerticalBudget(m["tiny"], m["draft"], m["target"],
                                                                       knobs["k"], knobs["k_tiny"], s))
RUNTIME.register("filtered", lambda m, knobs, s: FilteredCascade(m["tiny"], m["draft"], m["target"], knobs["k"],
                                                                 knobs["filter_width"], s))
RUNTIME.register("heads", lambda m, knobs, s: HeadsTree(m["heads"], m["target"], knobs["tree_nodes"], s))
STRATEGY_NAMES = RUNTIME.names()


def check_strategy(name: str, knobs: StrategyKnobs = StrategyKnobs()) -> tuple[str, dict[str, int]]:
    """The canonical name and checked knobs of a strategy the runtime can run (before any model loads)."""
    RUNTIME.get(name)
    canonical = registry.canonical(name)
    return canonical, knobs.for_strategy(canonical)


def build_strategy(name: str, tiny: CausalLM | None, draft: CausalLM | None, target: CausalLM,
                   sampling: SamplingConfig = GREEDY, knobs: StrategyKnobs = StrategyKnobs(),
                   heads=None) -> DecodingStrategy:
    """``heads``: the decoding heads (:class:`speccascade.runtime.heads.model.HeadsModel`) of strategy ``heads``."""
    canonical, values = check_strategy(name, knobs)
    models = {"tiny": tiny, "draft": draft, "target": target, "heads": heads}
    missing = [role for role in registry.get(canonical).roles if models.get(role) is None]
    if missing:
        raise InputError(f"strategy '{canonical}' needs a {' and a '.join(missing)} model")
    return RUNTIME.get(canonical)(models, values, sampling)
