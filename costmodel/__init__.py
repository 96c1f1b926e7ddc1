"""Symbolic cost model: sympy expressions, vectorized evaluation, strategies."""
