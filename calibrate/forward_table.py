"""Measured-table mode: predict a forward of a model from the recorded forwards of the same model.

For the models a trace measured, a table beats any fitted formula on accuracy (it is the measurement). Per model
(role, profile name, weight dtype, parameter count) the table holds ms for each measured token count T at each measured context S
(duplicates across traces: their median). A forward over T tokens at context S is

* T measured: linear interpolation over S between the measured contexts (``np.interp``; outside the measured range
  the nearest measured context's value: "clamped");
* T between two measured token counts T0 < T < T1: the two rows at S, interpolated linearly in T;
* otherwise (another model, T outside the measured range, an m-column forward the microbenchmark did not run):
  not in the table; the caller falls back to the fitted model and says so.

:meth:`ForwardTable.leave_one_out` measures the table's own accuracy: each point predicted from the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .points import ForwardPoint

Row = tuple[np.ndarray, np.ndarray]  # (contexts ascending, ms)


@dataclass(frozen=True)
class Lookup:
    ms: float
    how: str  # "table", "table (context clamped)", "table (interpolated over tokens)"


@dataclass(frozen=True)
class ForwardTable:
    """model key -> token count -> (contexts, ms)."""

    rows: dict[str, dict[int, Row]]

    @classmethod
    def from_points(cls, points: Sequence[ForwardPoint]) -> "ForwardTable":
        cells: dict[str, dict[int, dict[int, list[float]]]] = {}
        for point in points:
            cells.setdefault(point.model_key, {}).setdefault(point.tokens, {}).setdefault(point.context, []).append(
                point.ms)
        rows = {}
        for key, by_tokens in cells.items():
            rows[key] = {}
            for tokens, by_context in by_tokens.items():
                contexts = np.array(sorted(by_context), dtype=float)
                rows[key][tokens] = (contexts, np.array([np.median(by_context[int(c)]) for c in contexts]))
        return cls(rows)

    def models(self) -> list[str]:
        return sorted(self.rows)

    def lookup(self, key: str, tokens: int, context: float) -> Lookup | None:
        """The table's ms for one forward, or None when the table cannot say (see the module docstring)."""
        by_tokens = self.rows.get(key)
        if not by_tokens:
            return None
        if tokens in by_tokens:
            return _at_context(by_tokens[tokens], context, "table")
        measured = sorted(by_tokens)
        below = [t for t in measured if t < tokens]
        above = [t for t in measured if t > tokens]
        if not below or not above:
            return None
        t0, t1 = below[-1], above[0]
        low, high = _at_context(by_tokens[t0], context, ""), _at_context(by_tokens[t1], context, "")
        weight = (tokens - t0) / (t1 - t0)
        clamped = " and context clamped" if "clamped" in low.how + high.how else ""
        return Lookup((1 - weight) * low.ms + weight * high.ms, f"table (interpolated over tokens{clamped})")

    def leave_one_out(self, points: Sequence[ForwardPoint]) -> np.ndarray:
        """Relative error of each point predicted by the table built from all the other points (NaN where the
        others cannot predict it)."""
        errors = np.full(len(points), np.nan)
        for i, point in enumerate(points):
            others = ForwardTable.from_points([p for j, p in enumerate(points) if j != i
                                               and p.model_key == point.model_key])
            found = others.lookup(point.model_key, point.tokens, point.context)
            if found is not None:
                errors[i] = found.ms / point.ms - 1.0
        return errors


def _at_context(row: Row, context: float, how: str) -> Lookup:
    contexts, ms = row
    clamped = context < contexts[0] or context > contexts[-1]
    label = f"{how} (context clamped)" if clamped and how else ("clamped" if clamped else how)
    return Lookup(float(np.interp(context, contexts, ms)), label)
