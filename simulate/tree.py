"""Tree acceptance for Medusa-style heads: how deep into the candidate tree one verification gets.

Head h's correct token has rank R_h with P(R_h = r) = a[h][r] (marginal rank accuracy) and misses with
1 - sum_r a[h][r], independently across heads (Medusa's assumption, Cai et al. 2024 section 3.2.2; the cost model's
tree uses the same). The step accepts the longest prefix (R_1, ..., R_d) that is a node of the tree, and yields
d + 1 tokens; so E[tokens] = 1 + sum over nodes of prod_j a[j][r_j], the tree's expected tokens. The tree itself is
:func:`speccascade.costmodel.tree.build_tree`'s (best-first, N nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speccascade.costmodel.tree import CandidateTree, build_tree
from speccascade.errors import InputError

from .processes import count_dtype

_TABLE_LIMIT = 1 << 22      # boolean lookup table up to this many codes per depth, sorted search beyond


@dataclass(frozen=True, eq=False)
class TreeAcceptance:
    """Sampler of accepted depth for ``tree`` under independent heads with marginal rank ``accuracies``."""

    accuracies: tuple[tuple[float, ...], ...]
    tree: CandidateTree
    name: str = field(default="tree", init=False)

    @classmethod
    def build(cls, accuracies: list[list[float]], nodes: int) -> "TreeAcceptance":
        return cls(tuple(tuple(row) for row in accuracies), build_tree(accuracies, nodes))

    def __post_init__(self) -> None:
        depth = self.tree.depth
        # ranks beyond the tree's largest at a level are misses either way: keep only the ranks the tree uses (a
        # head with a million ranks must not cost a million passes per level)
        used = [max((path[level] for path in self.tree.paths if len(path) > level), default=0) + 1
                for level in range(depth)]
        rows = [row[:count] for row, count in zip(self.accuracies, used)] or [self.accuracies[0][:1]]
        base = max(len(row) for row in rows) + 2   # digit rank + 1; len + 1 = miss
        if depth and base ** depth >= 2**62:
            raise InputError(f"tree too deep to encode ({depth} levels of {base - 1} ranks)")
        members = []
        for level in range(1, depth + 1):
            codes = np.array(sorted(self._code(path, base) for path in self.tree.paths if len(path) == level),
                             dtype=np.int64)
            if base**level <= _TABLE_LIMIT:
                table = np.zeros(base**level + 1, dtype=bool)
                table[codes] = True
                members.append(("table", table))
            else:
                members.append(("sorted", codes))
        cumulative = [np.cumsum(np.asarray(row, dtype=np.float64)).astype(np.float32) for row in rows[:depth]]
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_members", members)
        object.__setattr__(self, "_cumulative", cumulative)

    @staticmethod
    def _code(path: tuple[int, ...], base: int) -> int:
        code = 0
        for rank in path:
            code = code * base + rank + 1
        return code

    @property
    def max_tokens(self) -> int:
        return self.tree.depth + 1

    @property
    def mean_acceptance(self) -> float:
        return float(self.accuracies[0][0]) if self.accuracies else 0.0

    def sample(self, rng: np.random.Generator, rows: int, lanes: int) -> np.ndarray:
        """Accepted depth (rows, lanes): tokens per step minus one."""
        depth = np.zeros((rows, lanes), dtype=count_dtype(self.tree.depth))
        if self.tree.depth == 0:
            return depth
        code = np.zeros((rows, lanes), dtype=np.int64)
        alive = np.ones((rows, lanes), dtype=bool)
        scratch = np.empty((rows, lanes), dtype=bool)
        for level, cumulative in enumerate(self._cumulative):
            uniforms = rng.random((rows, lanes), dtype=np.float32)
            rank = np.zeros((rows, lanes), dtype=np.int64)
            for threshold in cumulative:           # rank = #{r: u >= a_1 + ... + a_r}; len(row) means a miss
                np.greater_equal(uniforms, threshold, out=scratch)
                rank += scratch
            code *= self._base
            code += rank + 1
            kind, member = self._members[level]
            if kind == "table":
                inside = member[np.minimum(code, member.size - 1)]
            else:
                index = np.minimum(np.searchsorted(member, code), member.size - 1)
                inside = member[index] == code
            alive &= inside
            depth += alive
        return depth

    def describe(self) -> dict[str, Any]:
        return {"process": self.name, "heads": len(self.accuracies), "tree_nodes": self.tree.nodes,
                "tree_depth": self.tree.depth}
