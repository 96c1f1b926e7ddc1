"""Decoding heads on a frozen Target: Medusa, Cascadusa (seed 002 eq. 1), Cascadusa-var (eq. 2) and a Hydra-style
sequentially dependent variant.

Every head k = 1..H guesses the token k positions past the Target's own next token. With h the Target's
final-normed hidden state at position t (the state whose logits give the next token x_{t+1}, the step's *root*),
head k predicts x_{t+k+1}. Each head is one residual block and its own output layer (W1_k [d, d], W2_k [V, d], both
stored [out, in]; W1 zero-initialised so that an untrained head is the Target's own LM head, W2 copied from it):

* ``medusa`` (Cai et al. 2024, eq. 1):   a_k = SiLU(W1_k h) + h,                   logits_k = W2_k a_k
* ``cascadusa`` (seed 002 eq. 1):        a_k = SiLU(W1_k a_{k-1}) + a_{k-1},        a_0 = h
* ``cascadusa-var`` (seed 002 eq. 2):    a_k = SiLU(W1_k a_{k-1}) + h,              a_0 = h
* ``hydra`` (beyond the seed; Ankner et al. 2024, "Hydra: sequentially-dependent draft heads"):
                                         z_k = a_{k-1} + U_k RMS(E[y_{k-1}]),  a_k = SiLU(W1_k z_k) + z_k,  a_0 = h
  where y_0 is the root token and y_{k-1} the token the previous head drafted *on this tree path*, E the Target's
  (frozen) token embedding and U_k [d, d] zero-initialised. Its head k therefore depends on the path: the children
  of two different tree nodes get different predictions.

Seed 002 defines h_{k-1} as "the hidden state of the k-th head's adapter layer"; we read it as the block output
a_{k-1} (what the next head receives). Head 1 is the same function in Medusa and both Cascadusa variants; it differs
after training only because the cascaded heads' losses also flow into head 1's block.

A :class:`HeadsModel` is what the decoding strategy uses (:mod:`speccascade.runtime.decoding.heads`): its
``propose(params, hidden [d], root, tree)`` returns the token of every node of a candidate tree (node (r_1..r_d):
head d's rank-r_d token, computed on the node's path for Hydra). ``forward(params, cache, tokens)`` is a
CausalLM-shaped stand-in (every head over a pseudo hidden state per token) that the timing tools (host overhead,
microbenchmarks) can run like any model; decoding never calls it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from speccascade.errors import InputError

VARIANTS = ("medusa", "cascadusa", "cascadusa-var", "hydra")
LABELS = {"medusa": "Medusa", "cascadusa": "Cascadusa", "cascadusa-var": "Cascadusa-var", "hydra": "Hydra-style"}
UNBOUNDED = 1 << 30  # the heads keep no cache: any context length


@dataclass(frozen=True)
class HeadsConfig:
    variant: str
    heads: int
    d_model: int
    vocab_size: int

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise InputError(f"heads variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if min(self.heads, self.d_model, self.vocab_size) < 1:
            raise InputError(f"heads config sizes must be positive: {self}")

    @property
    def dependent(self) -> bool:
        """Whether head k reads the token drafted by head k - 1 (then tree siblings' subtrees differ)."""
        return self.variant == "hydra"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def param_count(self) -> int:
        d, v = self.d_model, self.vocab_size
        return self.heads * (d * d + v * d + (d * d if self.dependent else 0))


def _rms(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6)


def _dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.dot_general(x, kernel.astype(x.dtype) if kernel.dtype != x.dtype else kernel,
                               (((x.ndim - 1,), (1,)), ((), ())))


def lm_head_of(target) -> tuple[np.ndarray, np.ndarray]:
    """(output head [V, d], token embedding [V, d]) of a runtime Transformer CausalLM (float32 copies)."""
    params = target.params
    try:
        embed = np.asarray(params["embed"]["embedding"], np.float32)
        head = np.asarray(params["head"]["kernel"], np.float32) if "head" in params else embed
    except (KeyError, TypeError) as err:
        raise InputError(f"model '{target.name}' is not a runtime Transformer (no embed/head weights): "
                         "the heads need its output head and token embedding") from err
    return head, embed


def init_heads(config: HeadsConfig, lm_head: np.ndarray | None, embed: np.ndarray | None, seed: int = 0,
               random_blocks: float = 0.0) -> dict:
    """Heads parameters: W1 zero (or N(0, random_blocks^2 / d) for random test heads), W2 = the LM head (or random
    when ``lm_head`` is None), U zero; ``embed`` (Hydra) is the Target's frozen embedding, stored with the heads."""
    rng = np.random.default_rng(seed)
    d, v = config.d_model, config.vocab_size
    heads = {}
    for k in range(config.heads):
        w1 = (random_blocks / np.sqrt(d)) * rng.standard_normal((d, d)) if random_blocks else np.zeros((d, d))
        w2 = lm_head.copy() if lm_head is not None else rng.standard_normal((v, d)) / np.sqrt(d)
        head = {"w1": jnp.asarray(w1, jnp.float32), "w2": jnp.asarray(w2, jnp.float32)}
        if config.dependent:
            u = (random_blocks / np.sqrt(d)) * rng.standard_normal((d, d)) if random_blocks else np.zeros((d, d))
            head["u"] = jnp.asarray(u, jnp.float32)
        heads[k] = head
    params: dict[str, Any] = {"heads": heads}
    if config.dependent:
        if embed is None:
            embed = rng.standard_normal((v, d))
        params["embed"] = jnp.asarray(embed, jnp.float32)
    return params


def block(config: HeadsConfig, head: dict, previous: jax.Array, hidden: jax.Array,
          token_embedding: jax.Array | None) -> jax.Array:
    """a_k from a_{k-1} (``previous``), the Target's h (``hidden``) and, for Hydra, RMS(E[y_{k-1}])."""
    if config.variant == "medusa":
        return jax.nn.silu(_dense(hidden, head["w1"])) + hidden
    if config.variant == "cascadusa":
        return jax.nn.silu(_dense(previous, head["w1"])) + previous
    if config.variant == "cascadusa-var":
        return jax.nn.silu(_dense(previous, head["w1"])) + hidden
    z = previous + _dense(token_embedding, head["u"])
    return jax.nn.silu(_dense(z, head["w1"])) + z


def embed_tokens(params: dict, tokens: jax.Array) -> jax.Array:
    return _rms(jax.lax.stop_gradient(params["embed"])[tokens])


def all_heads(config: HeadsConfig, params: dict, hidden: jax.Array, tokens: jax.Array | None = None) -> jax.Array:
    """Logits of every head at every position, float32 [..., H, V]. ``tokens`` [..., H] (Hydra only): y_0..y_{H-1},
    the root token and the tokens before each head's target (teacher forcing in training and evaluation)."""
    outputs, previous = [], hidden
    for k in range(config.heads):
        head = params["heads"][k]
        token_embedding = embed_tokens(params, tokens[..., k]) if config.dependent else None
        previous = block(config, head, previous, hidden, token_embedding)
        outputs.append(_dense(previous, head["w2"]))
    return jnp.stack(outputs, axis=-2)


@dataclass(frozen=True, eq=False)
class HeadsModel:
    """Trained (or random) heads for one Target, as pure functions over their params (see the module docstring).

    ``propose(params, hidden float32[d], root int32, tree)`` -> int32[N]: the token of each tree node
    (``tree``: a :class:`speccascade.runtime.heads.tree.TreeSpec`). ``accuracy``: marginal rank accuracies per head
    measured on held-out text (what the candidate tree is built from), or None. ``metadata``: the training record.
    """

    name: str
    config: HeadsConfig
    params: dict
    propose: Callable[..., jax.Array]
    forward: Callable[..., tuple[jax.Array, dict]]
    param_bytes: int
    accuracy: tuple[tuple[float, ...], ...] | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    max_len: int = UNBOUNDED
    profile: Any = None

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def variant(self) -> str:
        return self.config.variant

    def init_cache(self, batch: int, length: int) -> dict:
        return {"pos": jnp.zeros((), jnp.int32)}

    def __hash__(self) -> int:
        return id(self)


def propose_tokens(config: HeadsConfig, params: dict, hidden: jax.Array, root: jax.Array, tree) -> jax.Array:
    """The token of every node of ``tree`` (int32[N], node order): see :class:`HeadsModel`."""
    nodes = tree.nodes
    if nodes == 0:
        return jnp.zeros((0,), jnp.int32)
    ranks = tree.ranks_per_depth
    if not config.dependent:  # every head once: node (r_1..r_d) takes head d's rank-r_d token
        logits = all_heads(config, params, hidden[None])[0]                       # [H, V]
        tokens = jnp.zeros((nodes + 1,), jnp.int32)
        for depth in range(1, tree.depth + 1):
            top = jax.lax.top_k(logits[depth - 1], ranks[depth - 1])[1].astype(jnp.int32)
            members = tree.at_depth[depth]
            tokens = tokens.at[members].set(top[tree.rank[members]])
        return tokens[1:]
    # Hydra: level by level; head d runs once per node of depth d - 1 that has children, on that node's path
    state = hidden[None]                                                            # a_{d-1} of the parents
    parent_tokens = jnp.reshape(root, (1,)).astype(jnp.int32)
    tokens = jnp.zeros((nodes + 1,), jnp.int32).at[0].set(root)
    parents = np.asarray([0])                                                       # node ids of `state` rows
    for depth in range(1, tree.depth + 1):
        head = params["heads"][depth - 1]
        expanding = tree.expanding[depth - 1]                                       # parents with children
        rows = np.searchsorted(parents, expanding)
        previous = state[rows]
        out = block(config, head, previous, jnp.broadcast_to(hidden, previous.shape),
                    embed_tokens(params, parent_tokens[rows]))
        top = jax.lax.top_k(_dense(out, head["w2"]), ranks[depth - 1])[1].astype(jnp.int32)  # [P, ranks]
        members = tree.at_depth[depth]
        member_rows = np.searchsorted(expanding, tree.parent[members])
        chosen = top[member_rows, tree.rank[members]]
        tokens = tokens.at[members].set(chosen)
        state, parent_tokens, parents = out[member_rows], chosen, members
    return tokens[1:]


def heads_model(config: HeadsConfig, params: dict, name: str | None = None,
                accuracy: list[list[float]] | None = None, metadata: dict | None = None) -> HeadsModel:
    """A :class:`HeadsModel` over ``params`` (see :func:`init_heads`)."""
    def propose(params, hidden, root, tree):
        return propose_tokens(config, params, hidden, root, tree)

    def forward(params, cache, tokens):
        """Timing stand-in: every head (Hydra: on the token itself) over a pseudo hidden state per token."""
        hidden = _rms(params["heads"][0]["w2"][tokens])                             # [B, T, d]
        ys = jnp.repeat(tokens[..., None], config.heads, axis=-1) if config.dependent else None
        logits = all_heads(config, params, hidden, ys)                              # [B, T, H, V]
        return jnp.sum(logits, axis=-2), {**cache, "pos": cache["pos"] + tokens.shape[1]}

    trained = {key: value for key, value in params.items() if key != "embed"}
    param_bytes = int(sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(trained)))
    return HeadsModel(name=name or f"{config.variant}-heads", config=config, params=params, propose=propose,
                      forward=jax.jit(forward), param_bytes=param_bytes,
                      accuracy=None if accuracy is None else tuple(tuple(float(a) for a in row) for row in accuracy),
                      metadata=dict(metadata or {}))


def random_heads(target, variant: str, heads: int = 3, seed: int = 0, scale: float = 1.0,
                 name: str | None = None) -> HeadsModel:
    """Untrained heads for a runtime Transformer ``target`` with random blocks (tests: greedy identity needs any
    heads; ``scale`` sets how far the random blocks move the heads away from the LM head)."""
    lm_head, embed = lm_head_of(target)
    config = HeadsConfig(variant, heads, lm_head.shape[1], lm_head.shape[0])
    params = init_heads(config, lm_head, embed, seed=seed, random_blocks=scale)
    return heads_model(config, params, name or f"random-{variant}")
