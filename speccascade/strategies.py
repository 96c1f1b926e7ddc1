"""The strategy registry: one entry per decoding strategy, shared by the cost model, the simulator and the runtime.

An entry says what a strategy *is*, independent of any layer: its name and aliases, the roles it needs, its knobs
(one name each, the cost model's), the drafter->verifier pairs and which acceptance parameter each pair measures,
and its **step shape**: how many forwards each model runs per target step and over how many new tokens. The cost
model charges exactly that shape (``stages`` in ``predict --json``), the runtime executes it (tested by counting
the forwards its compiled step really runs) and the simulator draws the same reviews and tokens.

Each layer registers its own implementation against an entry's name with :class:`Implementations` (a table keyed
by the shared name, the pattern of vidur's ``BaseRegistry``), so no layer keeps its own list of names; a name the
layer does not implement gets one line saying which layers do. This module imports neither JAX nor the cost model.
How users name a strategy and set its knobs (``StrategyKnobs``, ``NAME:knob=value``, the pydantic ``StrategyName``
field types) is :mod:`speccascade.strategy_names`.

Drafter lag (the runtime's static-shape convention, charged by the cost model too): at the start of a step a
drafter's cache lacks the last two committed positions, so its first forward of a step (or of a review) feeds 2
tokens, later ones 1; the vertical cascades' Tiny, two levels below the Target, may lack three (its last review
accepted every draft, so it never fed the last, and the Target then accepted all and added the bonus), so its first
forward of a review feeds 3; a verifier feeds the last committed token plus every draft it checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Mapping, TypeVar

from .errors import InputError

DRAFT_LAG = 2  # tokens a drafter's first forward of a step feeds (see the module docstring)
TINY_LAG = 3   # the vertical cascades' Tiny, two levels below the Target: it may lack three positions
ROLES = ("tiny", "draft", "target", "heads")


@dataclass(frozen=True)
class Knob:
    """One integer knob of a strategy: its one name across CLI, TOML, JSON, traces and code."""

    name: str
    description: str
    default: int | None  # None: derived from the other knobs by the step shape (say how in the description)
    minimum: int = 1
    maximum: int = 256


@dataclass(frozen=True)
class Pair:
    """A drafter -> verifier pair and the acceptance parameter its measured acceptance estimates."""

    drafter: str
    verifier: str
    parameter: str
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.drafter}->{self.verifier}"


@dataclass(frozen=True)
class Forwards:
    """``count`` forwards of ``role``'s model, each over ``tokens`` new tokens; ``columns`` names the knob that sets
    how many output-head columns they compute (None: the whole vocabulary). Counts and tokens may be numpy arrays
    or sympy expressions when the knobs are."""

    role: str
    count: Any
    tokens: Any
    columns: str | None = None
    label: str = ""  # what the forwards do, for tables ("drafts", "review", "verify", ...)


@dataclass(frozen=True)
class StepShape:
    """The forwards of one target step: ``fixed`` ones once, ``per_review`` ones once per Draft review.

    ``reviews`` is the number of reviews per step (a number), or None when it is random: the delivered-token
    budget of :data:`VERTICAL_BUDGET` runs reviews until the budget is met, so the count depends on acceptance (the
    cost model charges its expectation, the runtime records the count of every step)."""

    fixed: tuple[Forwards, ...]
    per_review: tuple[Forwards, ...] = ()
    reviews: Any = 0

    def forwards(self, reviews: Any = None) -> list[Forwards]:
        """Every forward of one step with ``reviews`` reviews (default: the shape's own fixed count), review
        forwards first (in execution order), then the fixed ones; entries with a zero count are dropped."""
        reviews = self.reviews if reviews is None else reviews
        if reviews is None:
            raise ValueError("this step shape has a random number of reviews: pass the count")
        scaled = [Forwards(f.role, f.count * reviews, f.tokens, f.columns, f.label) for f in self.per_review]
        return [f for f in scaled + list(self.fixed) if not is_zero(f.count)]

    def verify_tokens(self) -> Any:
        """Tokens of the final verifier's forward (the target's, once per step)."""
        return next(f.tokens for f in self.fixed if f.role == "target")


def is_zero(value: Any) -> bool:
    """True for a count that is the number 0 (arrays and symbols are kept: their zero entries cost nothing)."""
    try:
        return bool(value == 0)
    except (TypeError, ValueError):  # arrays: keep (their zero entries multiply to zero time)
        return False


@dataclass(frozen=True)
class StrategySpec:
    """One strategy: what every layer agrees it means."""

    name: str
    summary: str
    source: str
    roles: tuple[str, ...]
    knobs: tuple[Knob, ...]
    pairs: tuple[Pair, ...]
    shape: Callable[[Mapping[str, Any]], StepShape]
    aliases: tuple[str, ...] = ()
    runtime: bool = False  # executed by the JAX runtime (its table is checked against this by a test)

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(knob.name for knob in self.knobs)

    def defaults(self) -> dict[str, int | None]:
        return {knob.name: knob.default for knob in self.knobs}

    def check_knobs(self, knobs: Mapping[str, Any]) -> dict[str, int]:
        """The strategy's knobs from ``knobs`` (defaults filled, others ignored), each checked against its range."""
        values = self.defaults()
        for knob in self.knobs:
            value = knobs.get(knob.name)
            if value is None:
                continue
            if isinstance(value, bool) or int(value) != value:
                raise InputError(f"{self.name}: {knob.name} must be an integer, got {value!r}")
            if not knob.minimum <= int(value) <= knob.maximum:
                raise InputError(f"{self.name}: {knob.name} must lie in [{knob.minimum}, {knob.maximum}], got {value}")
            values[knob.name] = int(value)
        return values

    def step_shape(self, knobs: Mapping[str, Any] | None = None) -> StepShape:
        """The step shape at ``knobs`` (missing knobs take their defaults; values may be arrays)."""
        return self.shape({**self.defaults(), **(knobs or {})})

    def pair(self, name: str) -> Pair:
        for pair in self.pairs:
            if pair.name == name:
                return pair
        raise InputError(f"{self.name} has no pair {name!r}; its pairs: {', '.join(p.name for p in self.pairs) or 'none'}")


# ---------------------------------------------------------------------------------------------------------------
# The knobs (one definition each, shared by the strategies that use them)

K = Knob("k", "draft tokens per target step", 4)
K_REVIEWS = Knob("k", "Draft reviews per target step (each reviews k_tiny Tiny drafts)", 4, maximum=64)
K_BUDGET = Knob("k", "draft tokens per target step (Draft reviews run until k are delivered)", 4)
K_TINY = Knob("k_tiny", "Tiny drafts per Draft review", 3, maximum=64)
FILTER_WIDTH = Knob("filter_width", "Tiny's top-m tokens the Draft may propose (output-head columns)", 64,
                    maximum=1 << 20)
K_DRAFT = Knob("k_draft", "positions drafted by the Draft, the rest by the Tiny (default: half of k, rounded up)",
               None, minimum=0)
TREE_NODES = Knob("tree_nodes", "nodes of the candidate tree the target verifies", 63, minimum=0, maximum=4096)

DRAFT_TARGET = Pair("draft", "target", "alpha", "the target's acceptance of a Draft token")
TINY_DRAFT = Pair("tiny", "draft", "alpha_tiny", "the Draft's acceptance of a Tiny token (in a review)")


def _drafter(role: str, drafts: Any, columns: str | None = None, label: str = "drafts",
             lag: int = DRAFT_LAG) -> tuple[Forwards, ...]:
    """``drafts`` tokens drafted one by one: the first forward feeds the lag, the others one token each."""
    return (Forwards(role, 1, lag, columns, f"{label} (first, lag {lag})"),
            Forwards(role, drafts - 1, 1, columns, label))


def _verify(tokens: Any) -> Forwards:
    return Forwards("target", 1, tokens, None, "verify")


def _autoregressive(knobs: Mapping[str, Any]) -> StepShape:
    return StepShape((Forwards("target", 1, 1, None, "decode"),))


def _speculative(knobs: Mapping[str, Any]) -> StepShape:
    k = knobs["k"]
    return StepShape(_drafter("draft", k) + (_verify(k + 1),))


def _review(knobs: Mapping[str, Any]) -> tuple[Forwards, ...]:
    """One Draft review: Tiny drafts k_tiny tokens, the Draft checks them in one forward over k_tiny + lag tokens."""
    k_tiny = knobs["k_tiny"]
    return (_drafter("tiny", k_tiny, label="tiny drafts", lag=TINY_LAG)
            + (Forwards("draft", 1, k_tiny + DRAFT_LAG, None, "review"),))


def _vertical(knobs: Mapping[str, Any]) -> StepShape:
    k, k_tiny = knobs["k"], knobs["k_tiny"]
    return StepShape((_verify(k * (k_tiny + 1) + 1),), _review(knobs), k)


def _vertical_budget(knobs: Mapping[str, Any]) -> StepShape:
    return StepShape((_verify(knobs["k"] + 1),), _review(knobs), None)


def _filtered(knobs: Mapping[str, Any]) -> StepShape:
    k = knobs["k"]
    return StepShape(_drafter("tiny", k, label="top-m") + _drafter("draft", k, "filter_width", "m-column drafts")
                     + (_verify(k + 1),))


def _horizontal(knobs: Mapping[str, Any]) -> StepShape:
    """Draft drafts positions 1..k_draft, then Tiny the rest; Tiny's first forward also catches up on the Draft's
    k_draft tokens. Shapes for k_draft = 0 or = k drop the missing drafter's forwards (zero counts)."""
    k, k_draft = knobs["k"], knobs.get("k_draft")
    if k_draft is None:
        k_draft = default_k_draft(k)
    tiny_positions = k - k_draft
    draft_used = _indicator(k_draft)
    tiny_used = _indicator(tiny_positions)
    return StepShape((Forwards("draft", draft_used, DRAFT_LAG, None, "draft positions (first)"),
                      Forwards("draft", k_draft - draft_used, 1, None, "draft positions"),
                      Forwards("tiny", tiny_used, DRAFT_LAG + k_draft, None, "tiny positions (first, catch-up)"),
                      Forwards("tiny", tiny_positions - tiny_used, 1, None, "tiny positions"),
                      _verify(k + 1)))


def default_k_draft(k: Any) -> Any:
    """Horizontal cascade without k_draft: the Draft drafts the first half of the positions, rounded up."""
    if isinstance(k, int):
        return (k + 1) // 2
    if hasattr(k, "free_symbols"):
        import sympy as sp

        return sp.ceiling(k / 2)
    import numpy as np

    return np.ceil(np.asarray(k) / 2)


def _indicator(count: Any) -> Any:
    """1 where ``count`` > 0, else 0 (numbers, numpy arrays, or sympy expressions)."""
    if isinstance(count, int):
        return int(count > 0)
    if hasattr(count, "free_symbols"):
        import sympy as sp

        return sp.Piecewise((1, sp.Gt(count, 0)), (0, True))
    try:
        import numpy as np

        return np.minimum(count, 1)
    except ImportError:  # pragma: no cover (numpy is a dependency)
        return min(count, 1)


def _heads(knobs: Mapping[str, Any]) -> StepShape:
    return StepShape((Forwards("heads", 1, 1, None, "heads"), _verify(knobs["tree_nodes"] + 1)))


AUTOREGRESSIVE = StrategySpec(
    "autoregressive", "one target forward per token", "baseline", ("target",), (), (), _autoregressive,
    aliases=("ar", "baseline"), runtime=True)
SPECULATIVE = StrategySpec(
    "speculative", "the Draft proposes k tokens, the Target verifies k + 1 in one forward",
    "Leviathan et al. 2023; Chen et al. 2023", ("draft", "target"), (K,), (DRAFT_TARGET,), _speculative,
    aliases=("spec", "sd"), runtime=True)
VERTICAL = StrategySpec(
    "vertical", "k Draft reviews of k_tiny Tiny drafts each; the Target verifies every delivered token",
    "Chen et al. 2024 (Cascade Speculative Drafting); Spector and Re 2023 (staged); shared/seeds/000",
    ("tiny", "draft", "target"), (K_REVIEWS, K_TINY), (TINY_DRAFT, DRAFT_TARGET), _vertical,
    aliases=("cascade", "vertical-cascade"), runtime=True)
VERTICAL_BUDGET = StrategySpec(
    "vertical-budget", "Draft reviews of k_tiny Tiny drafts until k tokens are delivered; the Target verifies k",
    "Chen et al. 2024 (the Draft's k tokens made by speculative decoding with the Tiny)",
    ("tiny", "draft", "target"), (K_BUDGET, K_TINY), (TINY_DRAFT, DRAFT_TARGET), _vertical_budget,
    aliases=("cascade-budget",), runtime=True)
FILTERED = StrategySpec(
    "filtered", "each Draft proposal restricted to Tiny's top filter_width tokens; the Target verifies k + 1",
    "shared/seeds/000 Algorithm 1 (made exact); gamma_total by its eq. 6", ("tiny", "draft", "target"),
    (K, FILTER_WIDTH), (Pair("draft", "target", "gamma_total", "the target's acceptance of a filtered Draft token "
                             "(the seed's gamma_0 gamma_1|0 gamma_2|1)"),), _filtered,
    aliases=("filtered-cascade",), runtime=True)
HORIZONTAL = StrategySpec(
    "horizontal", "the Draft drafts the first k_draft positions, the Tiny the other k - k_draft",
    "Chen et al. 2024 (horizontal cascade)", ("tiny", "draft", "target"), (K, K_DRAFT),
    (Pair("draft", "target", "alphas", "acceptance of the Draft's positions"),
     Pair("tiny", "target", "alphas", "acceptance of the Tiny's positions")), _horizontal)
HEADS = StrategySpec(
    "heads", "decoding heads propose a candidate tree of tree_nodes nodes, verified in one Target forward",
    "Cai et al. 2024 (Medusa); shared/seeds/002 (Cascadusa)", ("heads", "target"), (TREE_NODES,),
    (Pair("heads", "target", "heads_accuracy", "rank accuracies of each head"),), _heads, aliases=("medusa",),
    runtime=True)

REGISTRY: dict[str, StrategySpec] = {spec.name: spec for spec in (
    AUTOREGRESSIVE, SPECULATIVE, VERTICAL, VERTICAL_BUDGET, FILTERED, HORIZONTAL, HEADS)}
_ALIASES: dict[str, str] = {alias: spec.name for spec in REGISTRY.values() for alias in (spec.name, *spec.aliases)}


def names() -> tuple[str, ...]:
    """Canonical strategy names, in registry order."""
    return tuple(REGISTRY)


def runtime_names() -> tuple[str, ...]:
    """The strategies the JAX runtime executes (known without importing it)."""
    return tuple(spec.name for spec in REGISTRY.values() if spec.runtime)


def canonical(name: str) -> str:
    """The canonical name of ``name`` or one of its aliases (case-insensitive, '_' = '-')."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in _ALIASES:
        known = ", ".join(f"{spec.name} ({', '.join(spec.aliases)})" if spec.aliases else spec.name
                          for spec in REGISTRY.values())
        raise InputError(f"unknown strategy {name!r}; known (aliases): {known}")
    return _ALIASES[key]


def get(name: str) -> StrategySpec:
    """The registry entry of ``name`` (canonical or alias)."""
    return REGISTRY[canonical(name)]


T = TypeVar("T")


@dataclass
class Implementations(Generic[T]):
    """One layer's implementations, keyed by registry name: ``layer`` names the layer in messages.

    ``register(name)`` is a decorator (or call it with the implementation as second argument); ``get(name)``
    resolves aliases and names the layers that do implement a strategy this one lacks."""

    layer: str
    table: dict[str, T] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _LAYERS[self.layer] = self

    def register(self, name: str, implementation: T | None = None):
        if name not in REGISTRY:
            raise KeyError(f"{name!r} is not a registered strategy")  # a programming error, not user input

        def add(item: T) -> T:
            self.table[name] = item
            return item

        return add if implementation is None else add(implementation)

    def names(self) -> tuple[str, ...]:
        return tuple(name for name in REGISTRY if name in self.table)

    def __contains__(self, name: str) -> bool:
        try:
            return canonical(name) in self.table
        except InputError:
            return False

    def get(self, name: str) -> T:
        key = canonical(name)
        if key not in self.table:
            others = [layer for layer, impl in _LAYERS.items() if key in impl.table]
            where = f" (implemented in: {', '.join(others)})" if others else ""
            raise InputError(f"the {self.layer} does not implement strategy '{key}'{where}; "
                             f"it implements: {', '.join(self.names())}")
        return self.table[key]


_LAYERS: dict[str, Implementations] = {}
