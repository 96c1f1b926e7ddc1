"""Held-out evaluation of decoding heads: rank accuracies, conditional accuracies, and what they predict.

On held-out sequences (:class:`speccascade.runtime.heads.data.Sequences`: held-out prompts, the Target's greedy
continuation), at every position t past the prompt, R_k = the rank of the Target's own next-but-k token
(label[t + k]) in head k's logits (0 = top-1; Hydra's head k is fed the true tokens x_{t+1..t+k}: what it sees on
a correct tree path). From the ranks:

* ``cumulative[k][r]`` = P(R_k <= r) (top-(r+1) accuracy, as seed 002 Table 1 reports) and ``marginal[k][r]`` =
  P(R_k = r): what the candidate tree is built from (the cost model's input);
* ``conditional[k][r]`` = P(R_k = r | R_1 = ... = R_{k-1} = 0): head k's accuracy given heads 1..k-1 were right
  (top-1). Independence (the tree model's assumption) means conditional = marginal;
* per tree size N = 0..64 (the best-first tree over ``marginal``, nested in N): ``predicted_independent[N]`` = the
  cost model's 1 + sum of node values prod_j marginal[j][r_j]; ``predicted_conditional[N]`` = the same tree valued
  with marginal[1][r_1] prod_{j>=2} conditional[j][r_j]; ``replay[N]`` = 1 + the mean over positions of the accepted
  depth, the longest prefix (R_1..R_d) that is a tree node: what greedy tree decoding would accept on exactly these
  positions (the joint law of the ranks, nothing assumed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from speccascade.costmodel.tree import build_tree

from .model import HeadsModel, all_heads

RANKS = 10          # ranks kept per head (beyond: a miss)
MAX_NODES = 64      # tree sizes evaluated: 0..MAX_NODES


def head_ranks(model: HeadsModel, data, batch: int = 512) -> np.ndarray:
    """R_k at every usable held-out position, int32 [M, H] (RANKS = not in the top RANKS)."""
    config = model.config

    @jax.jit
    def ranks(params, hidden, labels, inputs):
        logits = all_heads(config, params, hidden, inputs if config.dependent else None)       # [M, H, V]
        right = jnp.take_along_axis(logits, labels[..., None], axis=-1)
        return jnp.minimum(jnp.sum(logits > right, axis=-1), RANKS).astype(jnp.int32)

    pairs = data.positions(config.heads)
    out = []
    for start in range(0, pairs.shape[0], batch):
        hidden, labels, inputs = data.batch(pairs[start:start + batch], config.heads)
        out.append(np.asarray(ranks(model.params, jnp.asarray(hidden), jnp.asarray(labels), jnp.asarray(inputs))))
    return np.concatenate(out)


def accuracy_tables(ranks: np.ndarray) -> dict[str, list[list[float]]]:
    heads = ranks.shape[1]
    marginal = [[float(np.mean(ranks[:, k] == r)) for r in range(RANKS)] for k in range(heads)]
    cumulative = [np.cumsum(row).tolist() for row in marginal]
    conditional, given = [], np.ones(ranks.shape[0], bool)
    counts = []
    for k in range(heads):
        subset = ranks[given, k]
        counts.append(int(subset.size))
        conditional.append([float(np.mean(subset == r)) if subset.size else 0.0 for r in range(RANKS)])
        given &= ranks[:, k] == 0
    return {"marginal": marginal, "cumulative": cumulative, "conditional": conditional,
            "conditional_counts": counts}


def tree_predictions(ranks: np.ndarray, marginal: list[list[float]], conditional: list[list[float]],
                     nodes: int = MAX_NODES) -> dict[str, list[float]]:
    """Expected tokens per step for the best-first trees of 0..nodes nodes (see the module docstring)."""
    tree = build_tree(marginal, nodes)
    independent = tree.expected_tokens_by_size().tolist()
    chained = [marginal[0][path[0]] * float(np.prod([conditional[j][r] for j, r in enumerate(path) if j > 0]))
               for path in tree.paths]
    conditional_curve = (1.0 + np.concatenate([[0.0], np.cumsum(chained)])).tolist()
    depth = accepted_depths(ranks, tree)                                 # [N+1, M]
    sizes = np.arange(nodes + 1)
    replay = (1.0 + depth.mean(axis=1)).tolist()
    return {"predicted_independent": independent, "predicted_conditional": conditional_curve, "replay": replay,
            "tree_depth": [max((len(p) for p in tree.paths[:n]), default=0) for n in sizes]}


def accepted_depths(ranks: np.ndarray, tree) -> np.ndarray:
    """Accepted depth at every position for the nested best-first trees of 0..N nodes (``tree`` the N-node one):
    the longest prefix (R_1..R_d) of the position's ranks that is a node, int [N+1, M]."""
    order = {path: index for index, path in enumerate(tree.paths)}
    index = np.full(ranks.shape, np.iinfo(np.int64).max, np.int64)
    for row, rank_row in enumerate(ranks):
        prefix: tuple[int, ...] = ()
        for depth, rank in enumerate(rank_row):
            if rank >= RANKS:
                break
            prefix = prefix + (int(rank),)
            if prefix not in order:
                break
            index[row, depth] = order[prefix]
    sizes = np.arange(tree.nodes + 1)
    inside = index[None, :, :] < sizes[:, None, None]                  # [N+1, M, H]
    return np.sum(np.cumprod(inside, axis=2), axis=2)


def walk_replay(model: HeadsModel, data, new_tokens: int, nodes: int = MAX_NODES) -> list[float]:
    """Tokens per step that greedy tree decoding of ``data``'s own text would show, per tree size 0..nodes: the
    decoding walk replayed on the ranks (a step from position t accepts the depth d the ranks at t allow and the
    next step starts at t + d + 1, the first one at the last prompt token's predecessor, as the decoder does;
    the last step of each sequence is dropped as the bench drops it). ``data.prompt_len`` must be the prompt's
    length minus one (so positions start at the decoder's first hidden state). Unlike the per-position replay
    this weighs positions as decoding visits them: a run of easy positions is crossed in few steps."""
    config = model.config
    ranks = head_ranks(model, data)
    accuracy = model.accuracy if model.accuracy is not None else accuracy_tables(ranks)["marginal"]
    tree = build_tree([list(row) for row in accuracy], nodes)   # the tree the runtime builds
    depth = accepted_depths(ranks, tree)                                # [N+1, M]
    pairs = data.positions(config.heads)
    where = {(int(r), int(t)): i for i, (r, t) in enumerate(pairs)}
    out = []
    for size in range(nodes + 1):
        emitted = []
        for row in range(data.tokens.shape[0]):
            t, made, steps = data.prompt_len - 1, 0, []
            while made < new_tokens and (row, t) in where:
                d = int(depth[size, where[(row, t)]])
                steps.append(d + 1)
                made += d + 1
                t += d + 1
            emitted += steps[:-1] if made >= new_tokens else steps
        out.append(float(np.mean(emitted)) if emitted else float("nan"))
    return out


def evaluate_heads(model: HeadsModel, data) -> dict:
    """Every held-out figure of one variant (module docstring); JSON-ready."""
    ranks = head_ranks(model, data)
    tables = accuracy_tables(ranks)
    return {"positions": int(ranks.shape[0]), **tables,
            **tree_predictions(ranks, tables["marginal"], tables["conditional"])}
