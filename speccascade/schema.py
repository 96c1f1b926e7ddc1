"""The base of every file schema: numbers are finite and are numbers.

:class:`Schema` is a pydantic model that refuses NaN and +-infinity in every float field (``allow_inf_nan=False``:
a chip with ``bf16 = nan`` FLOP/s no longer passes a ``> 0`` check, since every comparison with NaN is false) and
refuses booleans where a number is expected (pydantic's lax mode turns ``k = true`` into 1; a TOML or JSON
``true`` in a numeric field is a mistake, never a number). Chip and model profiles, claims, reported files and
acceptance files derive from it; the prediction config has the same rules (costmodel/config.py).
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_NUMBERS = (int, float)


def _arguments(annotation: Any) -> tuple:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _numeric(annotation: Any) -> bool:
    """Whether ``annotation`` takes numbers but not booleans (``int``, ``float | None``, ...)."""
    options = _arguments(annotation)
    return bool not in options and any(option in _NUMBERS for option in options)


def _containers(annotation: Any) -> list[tuple[str, Any]]:
    """(kind, element annotation) for list/tuple/dict members of ``annotation`` holding numbers."""
    found = []
    for option in _arguments(annotation):
        origin, args = typing.get_origin(option), typing.get_args(option)
        if origin in (list, tuple, set, frozenset) and args:
            found += [("sequence", arg) for arg in args if arg is not Ellipsis]
        elif origin is dict and len(args) == 2:
            found.append(("mapping", args[1]))
    return found


def boolean_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` is refused for ``annotation`` (a boolean where a number goes, also inside lists and dicts of
    numbers), or None."""
    if isinstance(value, bool):
        return f"must be a number, got {str(value).lower()}" if _numeric(annotation) else None
    for kind, element in _containers(annotation):
        if kind == "mapping" and isinstance(value, dict):
            items = value.values()
        elif kind == "sequence" and isinstance(value, (list, tuple)):
            items = value
        else:
            continue
        for item in items:
            if boolean_problem(element, item):
                return "must hold numbers, not booleans"
    return None


class Schema(BaseModel):
    """Finite numbers only, no booleans for numbers (see the module docstring)."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                key = field.alias or name
                if key in data:
                    problem = boolean_problem(field.annotation, data[key])
                    if problem:
                        raise ValueError(f"{key} {problem}")
        return data
