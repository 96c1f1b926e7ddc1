"""The candidate tree as static index tables, its attention mask, and lossless tree verification.

The tree is :func:`speccascade.costmodel.tree.build_tree`'s (the cost model's best-first builder over marginal rank
accuracies, imported, not copied): node (r_1..r_d) = head 1's rank-r_1 token, then head 2's rank r_2, ... Node 0 is
the root (the step's last committed token, which the Target has not seen yet); nodes 1..N follow the builder's
order, in which every parent comes before its children. One Target forward feeds the N + 1 tokens with rotary
position ``base + depth`` and a mask that lets each node see the cached context and its ancestors (itself
included) only, so node i's logits equal those of a plain causal forward over context + the path to i.

Verification (``verify_tree``), lossless. Every candidate is a point mass: the heads' rank-r token is a
deterministic function of the state, so p^_i = delta(t_i). At the current node with Target distribution p and
children t_1..t_k (in rank order) the multi-candidate rule (SpecInfer, Miao et al. 2024; REFERENCE.md section 3)
tries each in turn: accept t_i with probability min(1, p(t_i) / p^_i(t_i)) = p(t_i), else
p <- norm(max(0, p - p^_i)) (t_i's mass removed); the first accepted child becomes the current node; if every
child fails (or the node is a leaf) one token is sampled from the final p and the step ends. The emitted token
has the Target's law: P(t_i) = prod_{j<i} (1 - p_j') p_i' = p(t_i) and P(y) = p(y) for any other y. The runtime
evaluates the sequence of trials in closed form (child i's residual probability is p(t_i) / (1 - sum_{j<i} p(t_j)),
one uniform per child, the first success wins), without a loop. Greedy is the
same rule with p a point mass on the argmax: walk down while a child is the Target's argmax, then emit the argmax
(greedy tree decoding = greedy autoregressive decoding, token for token).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from speccascade.costmodel.tree import CandidateTree, build_tree
from speccascade.runtime.decoding.sampling import SamplingConfig, Verdict, sample, to_probs


@dataclass(frozen=True, eq=False)
class TreeSpec:
    """Static tables of a candidate tree of ``nodes`` nodes plus the root (index 0)."""

    candidate: CandidateTree
    parent: np.ndarray          # int[N+1], parent[0] = 0
    depth_of: np.ndarray        # int[N+1]
    rank: np.ndarray            # int[N+1]: rank index (the head's r-th most likely token) at the node's own depth
    children: np.ndarray        # int[N+1, C]: children in rank order, -1 padded (C >= 1)
    mask: np.ndarray            # bool[N+1, N+1]: mask[i, j] = j is an ancestor of i or i itself
    ancestors: np.ndarray       # int[N+1, D+1]: ancestors[i, j] = the ancestor of i at depth j (i itself past it)

    def __hash__(self) -> int:
        return id(self)

    @property
    def nodes(self) -> int:
        return len(self.parent) - 1

    @property
    def depth(self) -> int:
        return int(self.depth_of.max()) if self.nodes else 0

    @property
    def at_depth(self) -> dict[int, np.ndarray]:
        return {d: np.flatnonzero(self.depth_of == d) for d in range(self.depth + 1)}

    @property
    def expanding(self) -> dict[int, np.ndarray]:
        """depth -> the nodes at that depth that have children (sorted)."""
        has_children = np.zeros(self.nodes + 1, bool)
        has_children[self.parent[1:]] = True
        return {d: np.flatnonzero((self.depth_of == d) & has_children) for d in range(self.depth)}

    @property
    def ranks_per_depth(self) -> list[int]:
        """How many of each head's ranks the tree uses (the top-k it needs)."""
        return [int(self.rank[self.depth_of == d].max()) + 1 for d in range(1, self.depth + 1)]


def tree_from_paths(candidate: CandidateTree) -> TreeSpec:
    paths = list(candidate.paths)
    index = {(): 0}
    parent, depth, rank = [0], [0], [0]
    for i, path in enumerate(paths, start=1):
        if path[:-1] not in index:
            raise ValueError(f"tree node {path} comes before its parent")
        index[path] = i
        parent.append(index[path[:-1]])
        depth.append(len(path))
        rank.append(path[-1])
    n = len(paths)
    kids: list[list[int]] = [[] for _ in range(n + 1)]
    for i in range(1, n + 1):
        kids[parent[i]].append(i)
    kids = [sorted(row, key=lambda node: rank[node]) for row in kids]
    width = max(1, max(len(row) for row in kids))
    children = np.full((n + 1, width), -1, np.int32)
    for i, row in enumerate(kids):
        children[i, :len(row)] = row
    max_depth = max(depth)
    ancestors = np.zeros((n + 1, max_depth + 1), np.int32)
    mask = np.zeros((n + 1, n + 1), bool)
    for i in range(n + 1):
        chain = [i]
        while chain[-1] != 0:
            chain.append(parent[chain[-1]])
        chain = chain[::-1]                     # root .. i
        mask[i, chain] = True
        ancestors[i, :len(chain)] = chain
        ancestors[i, len(chain):] = i
    return TreeSpec(candidate, np.asarray(parent, np.int32), np.asarray(depth, np.int32),
                    np.asarray(rank, np.int32), children, mask, ancestors)


def make_tree(accuracies: list[list[float]], nodes: int) -> TreeSpec:
    """The best-first tree of ``nodes`` nodes over marginal rank ``accuracies`` (costmodel.tree.build_tree)."""
    return tree_from_paths(build_tree([list(row) for row in accuracies], nodes))


def verify_tree(key: jax.Array, tokens: jax.Array, logits: jax.Array, tree: TreeSpec,
                config: SamplingConfig) -> tuple[Verdict, jax.Array]:
    """Walk ``tree`` (node tokens int32[N+1], node 0 the root) against the Target's ``logits`` float[N+1, V] with
    the lossless rule of the module docstring. Returns (verdict over the tree's depth D: ``accepted`` nodes, the
    emitted ``token``, flags per depth; ``path`` int32[D+1], the accepted nodes from the root, padded with the last).
    Beta per reached depth is the probability that one of the node's children is accepted (sum of p over them)."""
    depth, width = tree.depth, tree.children.shape[1]
    children = jnp.asarray(tree.children)
    current = jnp.zeros((), jnp.int32)
    alive = jnp.ones((), bool)
    accepted = jnp.zeros((), jnp.int32)
    token = jnp.zeros((), jnp.int32)
    beta_sum = jnp.zeros((), jnp.float32)
    path = [current]
    for level in range(depth + 1):
        kids = children[current]                                  # [C]
        valid = kids >= 0
        kid_tokens = tokens[jnp.maximum(kids, 0)]
        if config.greedy:
            best = jnp.argmax(logits[current]).astype(jnp.int32)
            match = valid & (kid_tokens == best)
            found = jnp.any(match)
            chosen = kids[jnp.argmax(match)]
            emitted = best
            advance = found.astype(jnp.float32)
        else:
            p = to_probs(logits[current], config)
            p_kids = jnp.where(valid, p[kid_tokens], 0.0)
            advance = jnp.sum(p_kids)                                  # P(some child accepted)
            level_key = jax.random.fold_in(key, level)
            # the sequential rule in closed form: after children 1..i-1 were rejected (each time p <- p with that
            # token's mass removed, renormalized) child i's residual mass is p(t_i) / (1 - sum_{j<i} p(t_j))
            before = jnp.cumsum(p_kids) - p_kids
            remaining = 1.0 - before
            ratio = jnp.where(remaining > 0, p_kids / jnp.where(remaining > 0, remaining, 1.0), 0.0)
            uniform = jax.random.uniform(level_key, (width,), jnp.float32)
            ok = valid & (uniform < ratio)                              # min(1, residual(t_i) / p^_i(t_i))
            found = jnp.any(ok)
            chosen = kids[jnp.argmax(ok)]
            residual = p.at[jnp.where(valid, kid_tokens, p.shape[0])].set(0.0, mode="drop")
            mass = jnp.sum(residual)
            residual = jnp.where(mass > 0, residual / jnp.where(mass > 0, mass, 1.0), p)
            emitted = sample(jax.random.fold_in(level_key, width), residual, config)
        if level < depth:
            beta_sum = beta_sum + jnp.where(alive, advance, 0.0)
        step_on = alive & found & (level < depth)
        token = jnp.where(alive & ~step_on, emitted, token)
        current = jnp.where(step_on, chosen, current).astype(jnp.int32)
        accepted = accepted + step_on.astype(jnp.int32)
        alive = step_on
        if level < depth:
            path.append(current)
    rows = jnp.arange(depth)
    reached = rows <= accepted
    flags = jnp.where(rows < accepted, 1, jnp.where(reached, 0, -1)).astype(jnp.int8)
    beta_count = jnp.minimum(accepted + 1, depth).astype(jnp.int32)
    verdict = Verdict(accepted, token.astype(jnp.int32), flags, beta_sum, beta_count,
                      jnp.asarray(depth, jnp.int32))
    return verdict, jnp.stack(path).astype(jnp.int32)
