"""Medusa-style candidate trees: from per-head rank accuracies to the tree that maximizes tokens per step.

Head h (h = 1..H) guesses the token h positions past the target's next token; ``accuracy[h][r]`` is the *marginal*
probability that its rank-r guess is the right one (the cumulative top-k accuracies a paper reports, differenced).
A node is a path (r_1, ..., r_d): head 1 takes its rank-r_1 token, head 2 rank r_2, ... Assuming independent heads
(Medusa, Cai et al. 2024, section 3.2.2) the node is accepted with probability prod_j accuracy[j][r_j]; the expected
tokens per target step are 1 (the target's own token) + the sum of node values. Because a node's value never exceeds
its parent's or its elder sibling's, the best tree of N nodes (N does not count the root) is built best-first:
start from (0,) and repeatedly add the frontier node (the next sibling or the first child of a chosen node) with the
largest value. Ranks are visited in order of decreasing marginal accuracy (which is what makes best-first optimal
even when a head's marginal accuracies are not monotone in rank); paths report the original rank indices.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from speccascade.errors import InputError
from speccascade.limits import MAX_TREE_NODES


@dataclass(frozen=True)
class CandidateTree:
    paths: tuple[tuple[int, ...], ...]     # rank index per depth, in the order they were added
    values: tuple[float, ...]              # acceptance probability of each node
    heads: int

    @property
    def nodes(self) -> int:
        return len(self.paths)

    @property
    def expected_tokens(self) -> float:
        """1 + sum of node values (the root token is always produced)."""
        return 1.0 + float(sum(self.values))

    @property
    def depth(self) -> int:
        return max((len(path) for path in self.paths), default=0)

    def expected_tokens_by_size(self) -> np.ndarray:
        """E for the best trees of 0..N nodes (best-first trees are nested, so this is a running sum)."""
        return 1.0 + np.concatenate([[0.0], np.cumsum(self.values)])


def marginal_from_cumulative(cumulative: list[list[float]]) -> list[list[float]]:
    """Top-k accuracies (cumulative in k) -> rank accuracies: a[r] = top_(r+1) - top_r."""
    marginal = []
    for head, row in enumerate(cumulative, start=1):
        values = np.asarray(row, dtype=float)
        if np.any(np.diff(values) < -1e-12):
            raise InputError(f"head {head}: cumulative top-k accuracies must not decrease, got {row}")
        marginal.append(np.diff(values, prepend=0.0).tolist())
    return marginal


def validate_accuracies(accuracies: list[list[float]]) -> list[list[float]]:
    """Check marginal rank accuracies: one non-empty list per head, entries in [0, 1], each head's sum <= 1."""
    if not accuracies:
        raise InputError("heads accuracy: at least one head is needed")
    for head, row in enumerate(accuracies, start=1):
        if len(row) == 0:
            raise InputError(f"head {head}: empty accuracy list")
        if any(not (0.0 <= value <= 1.0) for value in row):
            raise InputError(f"head {head}: accuracies must lie in [0, 1], got {row}")
        if sum(row) > 1.0 + 1e-9:
            raise InputError(f"head {head}: marginal rank accuracies sum to {sum(row):.4f} > 1 "
                             "(cumulative values given with \"cumulative\": false?)")
    return [list(map(float, row)) for row in accuracies]


def build_tree(accuracies: list[list[float]], nodes: int) -> CandidateTree:
    """The candidate tree of ``nodes`` nodes maximizing expected tokens per step (best-first, see module doc)."""
    if not 0 <= nodes <= MAX_TREE_NODES:  # checked first: the tree is built node by node
        raise InputError(f"tree nodes must lie in [0, {MAX_TREE_NODES}] (speccascade.limits.MAX_TREE_NODES), "
                         f"got {nodes}")
    given = validate_accuracies(accuracies)
    heads = len(given)
    usable = given[:max(nodes, 1)]  # a tree of N nodes is at most N deep
    orders = [np.argsort(-np.asarray(row), kind="stable") for row in usable]
    accuracies = [[row[index] for index in order] for row, order in zip(usable, orders)]
    searched = len(accuracies)
    paths: list[tuple[int, ...]] = []
    values: list[float] = []
    frontier: list[tuple[float, int, tuple[int, ...]]] = [(-accuracies[0][0], 0, (0,))]
    counter = 1
    while frontier and len(paths) < nodes:
        negative_value, _, path = heapq.heappop(frontier)
        value = -negative_value
        paths.append(tuple(int(orders[depth][rank]) for depth, rank in enumerate(path)))
        values.append(value)
        depth, rank = len(path), path[-1]
        parent_value = value / accuracies[depth - 1][rank] if accuracies[depth - 1][rank] > 0 else 0.0
        if rank + 1 < len(accuracies[depth - 1]):          # next sibling
            heapq.heappush(frontier, (-parent_value * accuracies[depth - 1][rank + 1], counter, path[:-1] + (rank + 1,)))
            counter += 1
        if depth < searched:                               # first child
            heapq.heappush(frontier, (-value * accuracies[depth][0], counter, path + (0,)))
            counter += 1
    if len(paths) < nodes:
        ranks = [len(row) for row in accuracies]
        shown = f"{ranks}" if len(ranks) <= 8 else f"[{', '.join(map(str, ranks[:8]))}, ...]"
        raise InputError(f"only {len(paths)} candidate nodes exist for {heads} heads with {shown} ranks; "
                         f"asked for {nodes}")
    return CandidateTree(tuple(paths), tuple(values), heads)
