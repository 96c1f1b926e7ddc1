"""Medusa-style decoding heads with tree verification on the Target (registry strategy ``heads``).

State carried from step to step (besides the token buffer and the Target's cache, lag 1): ``hidden``, the Target's
final hidden state at position ``length - 2``, whose logits produced the last committed token (the *root*). After
the prefill it is computed by one Target forward over ``seq[length - 2]`` (:meth:`HeadsTree.after_prefill`).

One step (the registry's step shape ``1 x heads(1)``, ``1 x target(tree_nodes + 1)``):

1. heads: ``propose(hidden, root)`` gives the token of every node of the candidate tree (built once, best-first,
   by :func:`speccascade.costmodel.tree.build_tree` over the heads' measured rank accuracies);
2. target: one forward over [root, node_1..node_N] written at cache slots ``length - 1 ..``, rotary position
   ``length - 1 + depth`` and an ancestor-only mask (:mod:`speccascade.runtime.heads.tree`), giving every node's
   logits and hidden state; :func:`~speccascade.runtime.heads.tree.verify_tree` walks the tree losslessly;
3. the accepted path's tokens and the emitted token are committed; the accepted nodes' KV entries are moved to
   the contiguous slots ``length - 1 .. length - 1 + d`` (a gather along each cache array's slot axis) and the
   cache pointer set after them, so every other node is rolled back (stale, masked, overwritten later); the
   hidden state of the last accepted node becomes the next step's ``hidden``.

Greedy: token-identical to autoregressive decoding; sampling: exactly the Target's distribution (tested: identity
over 20 prompts per variant, chi-square of the sampled law). Medusa's *typical acceptance* is offered as
``acceptance="typical"``: LOSSY (it accepts a candidate whose Target probability exceeds
min(epsilon, delta exp(-H(p))), so the output is not the Target's distribution); never the default.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM, with_position

from .base import FINAL_LAG, DecodingStrategy, record_verdict, set_cache, split_key
from .program import Program, Stage, State
from .sampling import GREEDY, SamplingConfig, Verdict, sample, to_probs

PAIR = "heads->target"
RANKS = 10
ACCEPTANCE = ("lossless", "typical")


def default_accuracy(heads: int) -> list[list[float]]:
    """Marginal rank accuracies for heads that carry none (untrained): head k top-1 0.55 x 0.6^k, rank r x 0.35^r."""
    return [[0.55 * 0.6 ** k * 0.35 ** r for r in range(RANKS)] for k in range(heads)]


def slot_axes(model: CausalLM) -> Any:
    """Per cache leaf, the axis that indexes cache slots (the one whose size follows ``init_cache``'s length), or
    None (the pointer, anything else); found by building two abstract caches of different lengths."""
    short = jax.eval_shape(lambda: model.init_cache(1, 3))
    long = jax.eval_shape(lambda: model.init_cache(1, 5))

    def axis(a, b):
        differing = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
        return differing[0] if len(differing) == 1 else None

    return jax.tree_util.tree_map(axis, short, long)


def compact_cache(cache: dict, axes: Any, base: jax.Array, path: jax.Array, accepted: jax.Array) -> dict:
    """Move the KV entries of the accepted path (tree slots ``base + path[j]``) to slots ``base + j`` and set the
    pointer to ``base + accepted + 1``: what a linear forward over the path would have left."""
    source = base + path

    def move(leaf, axis):
        if axis is None:
            return leaf
        block = jnp.take(leaf, source, axis=axis)
        return jax.lax.dynamic_update_slice_in_dim(leaf, block.astype(leaf.dtype), base, axis)

    moved = jax.tree_util.tree_map(move, cache, axes, is_leaf=lambda x: x is None)
    return with_position(moved, base + accepted + 1)


def typical_verify(tokens: jax.Array, logits: jax.Array, tree, config: SamplingConfig, key: jax.Array,
                   epsilon: float = 0.09, delta: float = 0.3) -> tuple[Verdict, jax.Array]:
    """Medusa's typical acceptance (Cai et al. 2024, section 2.3.1). LOSSY: not the Target's distribution.
    A child is accepted when p(t) > min(epsilon, delta exp(-H(p))) (the most likely such child); the step then
    emits a token sampled from p at the last accepted node. Greedy configs fall back to argmax matching."""
    from speccascade.runtime.heads.tree import verify_tree

    if config.greedy:
        return verify_tree(key, tokens, logits, tree, config)
    children = jnp.asarray(tree.children)
    current, alive, accepted = jnp.zeros((), jnp.int32), jnp.ones((), bool), jnp.zeros((), jnp.int32)
    path, beta_sum = [current], jnp.zeros((), jnp.float32)
    for level in range(tree.depth):
        p = to_probs(logits[current], config)
        entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
        threshold = jnp.minimum(epsilon, delta * jnp.exp(-entropy))
        kids = children[current]
        valid = kids >= 0
        scores = jnp.where(valid, p[tokens[jnp.maximum(kids, 0)]], -1.0)
        best = jnp.argmax(scores)
        ok = alive & (scores[best] > threshold)
        beta_sum = beta_sum + jnp.where(alive, jnp.sum(jnp.where(valid, p[tokens[jnp.maximum(kids, 0)]], 0.0)), 0.0)
        current = jnp.where(ok, kids[best], current).astype(jnp.int32)
        accepted = accepted + ok.astype(jnp.int32)
        alive = ok
        path.append(current)
    token = sample(key, to_probs(logits[current], config), config)
    rows = jnp.arange(tree.depth)
    flags = jnp.where(rows < accepted, 1, jnp.where(rows <= accepted, 0, -1)).astype(jnp.int8)
    verdict = Verdict(accepted, token, flags, beta_sum, jnp.minimum(accepted + 1, tree.depth).astype(jnp.int32),
                      jnp.asarray(tree.depth, jnp.int32))
    return verdict, jnp.stack(path).astype(jnp.int32)


class HeadsTree(DecodingStrategy):
    """Decoding heads propose a candidate tree of ``tree_nodes`` nodes; the Target verifies it in one forward.

    ``heads``: a :class:`speccascade.runtime.heads.model.HeadsModel`; ``target``: a CausalLM with
    ``forward_hidden`` (explicit positions, mask, hidden states: the runtime's Transformer). The tree is built from
    ``accuracy`` (marginal rank accuracies per head), else the heads' own measured ones, else
    :func:`default_accuracy`; ``tree`` (a prebuilt TreeSpec) overrides both. ``acceptance``: ``"lossless"``
    (default) or ``"typical"`` (Medusa's typical acceptance: lossy, see the module docstring)."""

    name = "heads"
    roles = ("heads", "target")
    lags = (0, FINAL_LAG)

    def __init__(self, heads, target: CausalLM, tree_nodes: int = 63, sampling: SamplingConfig = GREEDY,
                 accuracy: list[list[float]] | None = None, tree=None, acceptance: str = "lossless"):
        from speccascade.runtime.heads.tree import make_tree

        if getattr(target, "forward_hidden", None) is None:
            raise InputError(f"the heads strategy needs a Target with forward_hidden (explicit positions, a mask and "
                             f"hidden states); model '{target.name}' has none")
        if acceptance not in ACCEPTANCE:
            raise InputError(f"acceptance must be one of {', '.join(ACCEPTANCE)}, got {acceptance!r}")
        if int(tree_nodes) < 0:
            raise InputError(f"tree_nodes must be >= 0, got {tree_nodes}")
        super().__init__((heads, target), sampling)
        self.acceptance = acceptance
        count = heads.config.heads
        if accuracy is None:
            accuracy = heads.accuracy if heads.accuracy is not None else default_accuracy(count)
        self.accuracy = [list(map(float, row)) for row in accuracy][:count]
        self.tree = tree if tree is not None else make_tree(self.accuracy, int(tree_nodes))
        self.tree_nodes = self.tree.nodes
        self._axes = slot_axes(target)

    @property
    def lookahead(self) -> int:
        return self.tree_nodes + 1

    @property
    def pairs(self) -> dict[str, int]:
        return {PAIR: self.tree.depth} if self.tree.depth else {}  # no tree: nothing proposed

    def knobs(self) -> dict[str, int]:
        return {"tree_nodes": self.tree_nodes}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "variant": self.models[0].variant, "tree_depth": self.tree.depth,
                "acceptance": self.acceptance + (" (LOSSY)" if self.acceptance == "typical" else ""),
                "tree_accuracy": self.accuracy}

    def extras(self) -> dict[str, jax.Array]:
        """``off_top1``: 1 when the accepted path holds a node that is not its parent's first (rank-0) child, i.e.
        the tree's width paid off in this step."""
        return {"off_top1": jnp.zeros((), jnp.float32)}

    def buffers(self) -> dict[str, jax.Array]:
        return {"tree_tokens": jnp.zeros((self.tree_nodes + 1,), jnp.int32)}

    def after_prefill(self, params: tuple[Any, ...], state: State) -> State:
        target = self.models[1]
        start = state["length"] - 2
        tokens = jax.lax.dynamic_slice_in_dim(state["seq"], start, 1)[None, :]
        _, hidden, cache = target.forward_hidden(params[1], with_position(state["caches"][1], start), tokens)
        state = set_cache(state, 1, cache)
        return {**state, "hidden": hidden[0, -1].astype(jnp.float32)}

    def program(self) -> Program:
        heads, target = self.models
        tree, config, axes = self.tree, self.sampling, self._axes
        positions = jnp.asarray(tree.depth_of, jnp.int32)
        mask = jnp.asarray(tree.mask)
        depth = tree.depth
        ranks = jnp.asarray(tree.rank, jnp.int32)
        from speccascade.runtime.heads import tree as tree_module

        def propose(params: Any, state: State) -> State:
            root = state["seq"][state["length"] - 1]
            nodes = heads.propose(params[0], state["hidden"], root, tree)
            return {**state, "tree_tokens": jnp.concatenate([root[None].astype(jnp.int32), nodes])}

        def verify(params: Any, state: State) -> State:
            length = state["length"]
            base = length - FINAL_LAG
            tokens = state["tree_tokens"]
            cache = with_position(state["caches"][1], base)
            logits, hidden, cache = target.forward_hidden(params[1], cache, tokens[None, :], base + positions, mask)
            state, key = split_key(state, config)
            if self.acceptance == "typical":
                verdict, path = typical_verify(tokens, logits[0], tree, config, key)
            else:
                verdict, path = tree_module.verify_tree(key, tokens, logits[0], tree, config)
            accepted = verdict.accepted
            seq = state["seq"]
            if depth:
                seq = jax.lax.dynamic_update_slice_in_dim(seq, tokens[path[1:]], length, 0)
            seq = seq.at[length + accepted].set(verdict.token)
            cache = compact_cache(cache, axes, base, path, accepted)
            stats = state["stats"]
            on_path = (jnp.arange(depth + 1) <= accepted) & (jnp.arange(depth + 1) > 0)
            off_top1 = jnp.any(on_path & (ranks[path] > 0)).astype(jnp.float32)
            stats = {**stats, "extras": {**stats["extras"], "off_top1": off_top1}}
            if depth:
                stats = {**stats, "pairs": {**stats["pairs"], PAIR: record_verdict(stats["pairs"][PAIR], verdict, 0)}}
            state = set_cache({**state, "stats": stats}, 1, cache)
            return {**state, "seq": seq, "length": length + accepted + 1,
                    "hidden": hidden[0, path[accepted]].astype(jnp.float32)}

        return (Stage("heads", propose), Stage("target", verify))
