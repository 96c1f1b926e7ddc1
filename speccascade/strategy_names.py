"""How users name a strategy and set its knobs, checked against the registry (:mod:`speccascade.strategies`).

* :class:`StrategyKnobs` -- every knob a run may set, by its one name (``runtime generate|bench``, a ``--config``);
* :func:`parse_strategy_spec` -- ``NAME[:knob=value...]`` (``vertical:k=2:k_tiny=2``) -> (canonical name, knobs);
* ``StrategyName`` / ``StrategyNameOrAuto`` -- pydantic field types storing the canonical name of a name or alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Mapping

from pydantic import AfterValidator, WithJsonSchema

from . import strategies as registry
from .errors import InputError


@dataclass(frozen=True)
class StrategyKnobs:
    """Every knob a run may set, by its one name (unset = the strategy's default): what ``runtime generate``,
    ``runtime bench`` and a ``--config`` TOML give the runtime. :meth:`for_strategy` keeps and checks the knobs
    one strategy uses."""

    k: int | None = None
    k_tiny: int | None = None
    filter_width: int | None = None
    k_draft: int | None = None
    tree_nodes: int | None = None

    def for_strategy(self, name: str) -> dict[str, int]:
        return registry.get(name).check_knobs({knob: getattr(self, knob) for knob in self.__dataclass_fields__})

    def updated(self, values: Mapping[str, int]) -> "StrategyKnobs":
        unknown = sorted(set(values) - set(self.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown knob {unknown[0]!r}; knobs: {', '.join(self.__dataclass_fields__)}")
        return StrategyKnobs(**{**{name: getattr(self, name) for name in self.__dataclass_fields__}, **values})


def parse_strategy_spec(text: str) -> tuple[str, dict[str, int]]:
    """``NAME[:knob=value[:knob=value...]]`` (e.g. ``vertical:k=2:k_tiny=2``) -> (canonical name, knob values);
    the knobs are checked against the strategy's own (names and ranges)."""
    name, *settings = [part.strip() for part in str(text).split(":")]
    spec = registry.get(name)
    values: dict[str, int] = {}
    for setting in settings:
        knob, sep, value = setting.partition("=")
        knob = knob.strip().replace("-", "_")
        if not sep or knob not in spec.knob_names:
            raise InputError(f"{text!r}: expected NAME:knob=value with a knob of {spec.name} "
                             f"({', '.join(spec.knob_names) or 'none'})")
        try:
            values[knob] = int(value)
        except ValueError:
            raise InputError(f"{text!r}: {knob} must be an integer, got {value!r}") from None
    spec.check_knobs(values)
    return spec.name, values


def _validated_name(name: str) -> str:
    if str(name).strip().lower() == "auto":
        raise ValueError("'auto' is not a strategy here; name one")
    return registry.canonical(name)


def _validated_name_or_auto(name: str) -> str:
    return "auto" if str(name).strip().lower() == "auto" else registry.canonical(name)


# pydantic field types: a registry name or alias, stored as the canonical name (one line naming the problem else)
_SPELLINGS = sorted(registry._ALIASES)
StrategyName = Annotated[str, AfterValidator(_validated_name), WithJsonSchema(
    {"type": "string", "enum": _SPELLINGS, "description": "a strategy name or alias (speccascade/strategies.py)"})]
StrategyNameOrAuto = Annotated[str, AfterValidator(_validated_name_or_auto), WithJsonSchema(
    {"type": "string", "enum": ["auto", *_SPELLINGS], "description": "auto or a strategy name or alias"})]
