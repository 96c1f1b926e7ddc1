"""Sympy building blocks shared by every cost-model expression, and compilation to vectorized numpy.

Expressions are built once as sympy objects (printable with :func:`sympy.pretty` or :func:`sympy.latex`) and
compiled once with :func:`compile_expression` into a numpy function that broadcasts over arrays of configurations;
nothing in the hot path calls ``subs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy as sp

# Tolerance under which an acceptance rate counts as 1 and a removable 0/0 takes its limit.
UNIT_TOLERANCE = 1e-9


def geometric_sum(ratio: sp.Expr, count: sp.Expr) -> sp.Expr:
    """sum_{i=0}^{count-1} ratio^i = (1 - ratio^count) / (1 - ratio), with its limit ``count`` at ratio = 1.

    This is the expected tokens per step of speculative decoding with ``count - 1`` drafts (Leviathan et al. 2023,
    eq. 1); the limit branch keeps alpha = 1 free of a division by zero.
    """
    return sp.Piecewise(
        (count, sp.Abs(1 - ratio) < UNIT_TOLERANCE),
        ((1 - ratio**count) / (1 - ratio), True),
    )


@dataclass(frozen=True)
class CompiledExpression:
    """A sympy expression and its vectorized numpy function over ``arguments`` (in that order)."""

    expression: sp.Expr
    arguments: tuple[sp.Symbol, ...]
    function: Callable[..., np.ndarray]

    def __call__(self, **values: np.ndarray | float) -> np.ndarray:
        missing = [symbol.name for symbol in self.arguments if symbol.name not in values]
        if missing:
            raise TypeError(f"missing values for {missing}")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            result = self.function(*(values[symbol.name] for symbol in self.arguments))
        return np.asarray(result, dtype=float)


def compile_expression(expression: sp.Expr, arguments: tuple[sp.Symbol, ...] | None = None) -> CompiledExpression:
    """Lambdify ``expression`` once; ``arguments`` default to its free symbols sorted by name."""
    if arguments is None:
        arguments = tuple(sorted(expression.free_symbols, key=lambda symbol: symbol.name))
    function = sp.lambdify(arguments, expression, modules="numpy", cse=True)
    return CompiledExpression(expression, tuple(arguments), function)
