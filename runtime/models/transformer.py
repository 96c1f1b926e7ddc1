"""Decoder-only transformer in Flax NNX: RMSNorm, rotary positions, gated MLP, grouped-query attention, KV cache.

Block (pre-norm, as in Llama): x += Attn(RMSNorm(x)); x += W_down(act(W_gate x') * W_up x') with x' = RMSNorm(x).
RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g. Rotary positions (Su et al. 2021) rotate each (i, i + d/2) pair of
query/key features by angle pos * theta^(-2i/d). Grouped-query attention (Ainslie et al. 2023): ``n_heads`` query
heads share ``n_kv_heads`` key/value heads. The output head is tied to the token embedding (logits = h E^T).

Architectures (``TransformerConfig`` fields; the defaults are the runtime's own trained models, which are the
Llama family with a tied head):

* Llama family (Llama 2/3, Vicuna, Mistral below its sliding window): ``activation="silu"`` (SwiGLU), plain
  RMSNorm, unscaled embeddings, ``tied_embeddings=False`` (a separate ``head`` [V, d], Hugging Face's
  ``lm_head``), ``rope_theta`` from the checkpoint (500,000 for Llama 3);
* Gemma (1): ``activation="gelu_tanh"`` (GeGLU with the tanh-approximated GELU), ``norm_unit_offset=True``
  (RMSNorm scales by 1 + g), ``scaled_embeddings=True`` (x = E[token] sqrt(d_model)), tied head, and an explicit
  ``attn_head_dim`` (256, so n_heads x head_dim need not equal d_model: Gemma-7B has 16 x 256 = 4096 != 3072).

Hugging Face checkpoints map onto these modules in :mod:`speccascade.runtime.hf`; profile-shaped random models
(any ``hardware/models`` profile) in :mod:`speccascade.runtime.random_models`.

Forward with explicit positions and an attention mask (:meth:`Transformer.run`): ``positions`` int32[T] are the
rotary positions of the T new tokens (default ``pos + arange(T)``) and ``mask`` bool[T, T] which new tokens each
new token sees (default causal: t' <= t); every cached slot before ``pos`` is visible to all of them. The new
tokens' keys/values are written at cache slots ``pos .. pos + T - 1`` whatever their positions, so a token tree
(Medusa-style tree verification: positions = pos + depth, mask = ancestor-or-self) is one forward, and ``run``
also returns the final-normed hidden states (the input of Medusa heads).

Weights are stored [out, in] and every matmul contracts the activation's last axis with the weight's second axis
(x W^T): on XLA:CPU this layout runs a forward over a few tokens (speculative verification) much closer to the
cost of one token than the [in, out] layout does. q/k/v are one fused matmul and gate/up another.

KV cache: ``{"pos": int32[], "k": (L arrays float32[B, KV, S, hd]), "v": (L arrays float32[B, KV, hd, S])}``
with a fixed S (``max_len``): one array per layer (no slicing of a stacked cache), keys head-major and values
transposed, so that both attention matmuls contract each operand's last axis. XLA:CPU otherwise copies (transposes)
every layer's cache on every forward: measured ~1.4 ms of a 6 ms Target forward with the earlier
[L, B, S, KV, hd] layout. A forward over T tokens first writes its T new keys/values at positions
``pos..pos+T-1`` (``lax.dynamic_update_slice``, in place when the caller donates or loops over the cache), then
attends over the whole buffer with one mask: key position <= query position (causal over the past and the new
tokens alike); it advances pos by T. Entries at >= pos + T (stale, after a rollback) are never read and get
overwritten. The caller keeps pos + T <= S (beyond it XLA clamps the write offset). Without a cache the forward is
the plain causal forward (training, evaluation), the same code over the T new keys alone.

``weights`` selects the stored format of the matmul weights: float32 (trained; exact greedy ties on CPU),
bfloat16 (half the bytes; bfloat16 matmuls, float32 accumulation) or int8 (see :mod:`.quant`). Activations, norms
and the softmax are float32 throughout.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM
from speccascade.runtime.models.layers import Embed, Linear, RMSNorm, gather_rows, params_of, tree_bytes  # noqa: F401 (re-exported)
from speccascade.runtime.models.quant import Int8Embed, Int8Linear, quantize_params
from speccascade.runtime.profiles import model_profile

WEIGHT_FORMATS = ("float32", "bfloat16", "int8")
ACTIVATIONS = {"silu": jax.nn.silu, "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
               "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 4096
    d_model: int = 512
    n_layers: int = 6
    n_heads: int = 8
    n_kv_heads: int = 2
    d_ff: int = 1408
    max_len: int = 1024
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6
    weights: str = "float32"
    # architecture (module docstring); the defaults are the runtime's own models
    activation: str = "silu"           # gated MLP: "silu" (SwiGLU), "gelu_tanh" (GeGLU, Gemma), "gelu" (exact erf)
    norm_unit_offset: bool = False     # RMSNorm scales by (1 + g) (Gemma)
    scaled_embeddings: bool = False    # x = E[token] * sqrt(d_model) (Gemma)
    tied_embeddings: bool = True       # False: a separate output head [V, d] (Llama's lm_head)
    attn_head_dim: int = 0             # 0: d_model // n_heads; else explicit (Gemma: 256)

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.d_model, self.n_layers, self.n_heads, self.n_kv_heads, self.d_ff,
               self.max_len) < 1 or self.attn_head_dim < 0:
            raise InputError(f"transformer config sizes must be positive: {self}")
        split = self.attn_head_dim or (self.d_model // self.n_heads if self.d_model % self.n_heads == 0 else 1)
        if self.n_heads % self.n_kv_heads or split % 2 or (not self.attn_head_dim and self.d_model % self.n_heads):
            raise InputError("d_model must split into n_heads even-sized heads (or attn_head_dim be even) and n_heads "
                             f"must be a multiple of n_kv_heads (got d_model={self.d_model}, n_heads={self.n_heads}, "
                             f"n_kv_heads={self.n_kv_heads}, attn_head_dim={self.attn_head_dim})")
        if self.weights not in WEIGHT_FORMATS:
            raise InputError(f"weights must be one of {WEIGHT_FORMATS}, got {self.weights!r}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")

    @property
    def head_dim(self) -> int:
        return self.attn_head_dim or self.d_model // self.n_heads

    def param_count(self) -> int:
        d, q, kv = self.d_model, self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        per_layer = d * (q + 2 * kv) + q * d + 3 * d * self.d_ff + 2 * d
        heads = 1 if self.tied_embeddings else 2
        return heads * self.vocab_size * d + self.n_layers * per_layer + d

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerConfig":
        try:
            return cls(**data)
        except TypeError as err:
            raise InputError(f"bad transformer config {data}: {err}") from err


def _linear(config: TransformerConfig, in_features: int, out_features: int, rngs: nnx.Rngs,
            scale: float = 1.0) -> nnx.Module:
    if config.weights == "int8":
        return Int8Linear(in_features, out_features)
    return Linear(in_features, out_features, rngs=rngs, scale=scale)


def visibility(positions_count: int, start: jax.Array, length: int | None, mask: jax.Array | None) -> jax.Array:
    """bool [T, S]: which key slot each of the T new tokens attends to. With a cache of ``length`` slots the new
    tokens occupy slots start..start+T-1 and every slot before ``start`` is visible; without one (``length`` None)
    S = T. Among the new tokens: causal (slot s <= start + t) or, given, ``mask`` bool [T, T]."""
    count = positions_count
    queries = jnp.arange(count, dtype=jnp.int32)
    if length is None:
        keys = queries
        return keys[None, :] <= queries[:, None] if mask is None else mask.astype(bool)
    keys = jnp.arange(length, dtype=jnp.int32)
    if mask is None:
        return keys[None, :] <= (start + queries)[:, None]
    relative = keys - start
    inside = (relative >= 0) & (relative < count)
    among_new = jnp.take(mask.astype(bool), jnp.clip(relative, 0, count - 1), axis=1)
    return (relative < 0)[None, :] | (inside[None, :] & among_new)


def rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotate feature pairs (i, i + d/2) of x [B, T, N, d] by positions[t] * theta^(-2i/d)."""
    half = x.shape[-1] // 2
    inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]
    cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class Attention(nnx.Module):
    def __init__(self, config: TransformerConfig, rngs: nnx.Rngs):
        self.config = config
        hd = config.head_dim
        self.qkv = _linear(config, config.d_model, (config.n_heads + 2 * config.n_kv_heads) * hd, rngs)
        self.out = _linear(config, config.n_heads * hd, config.d_model, rngs,
                           scale=1 / math.sqrt(2 * config.n_layers))

    def __call__(self, x: jax.Array, positions: jax.Array, past: tuple | None, visible: jax.Array):
        """past: None (over x alone) or (k_cache [B, KV, S, hd], v_cache [B, KV, hd, S], start); the new
        keys/values are written at ``start`` first. ``visible`` bool [T, S] (:func:`visibility`). Returns
        (y, (keys, values)): the updated caches, or with no past the new keys [B, KV, T, hd] and values
        [B, KV, hd, T]."""
        cfg = self.config
        batch, count, _ = x.shape
        hd, heads, kv_heads = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        group = heads // kv_heads
        qkv = self.qkv(x)
        q = rotary(qkv[..., :heads * hd].reshape(batch, count, heads, hd), positions, cfg.rope_theta)
        k = rotary(qkv[..., heads * hd:(heads + kv_heads) * hd].reshape(batch, count, kv_heads, hd), positions,
                   cfg.rope_theta)
        v = qkv[..., (heads + kv_heads) * hd:].reshape(batch, count, kv_heads, hd)
        # query head h uses kv head h // group: rows (g, t) of one kv head's query block, [B, KV, G*T, hd]
        q = jnp.transpose(q.reshape(batch, count, kv_heads, group, hd), (0, 2, 3, 1, 4))
        q = q.reshape(batch, kv_heads, group * count, hd) * (1.0 / math.sqrt(hd))
        keys, values = jnp.transpose(k, (0, 2, 1, 3)), jnp.transpose(v, (0, 2, 3, 1))
        if past is not None:
            k_cache, v_cache, start = past
            keys = jax.lax.dynamic_update_slice(k_cache, keys.astype(k_cache.dtype), (0, 0, start, 0))
            values = jax.lax.dynamic_update_slice(v_cache, values.astype(v_cache.dtype), (0, 0, 0, start))
        scores = jnp.einsum("bkqh,bksh->bkqs", q, keys.astype(q.dtype))
        scores = jnp.where(jnp.tile(visible, (group, 1)), scores, -1e30)
        attended = jnp.einsum("bkqs,bkhs->bkqh", jax.nn.softmax(scores, axis=-1), values.astype(q.dtype))
        attended = jnp.transpose(attended.reshape(batch, kv_heads, group, count, hd), (0, 3, 1, 2, 4))
        return self.out(attended.reshape(batch, count, heads * hd)), (keys, values)


class SwiGLU(nnx.Module):
    """The gated MLP W_down(act(W_gate x) * W_up x): SwiGLU with SiLU, GeGLU with GELU (``config.activation``)."""

    def __init__(self, config: TransformerConfig, rngs: nnx.Rngs):
        self.d_ff = config.d_ff
        self.activation = config.activation
        self.gate_up = _linear(config, config.d_model, 2 * config.d_ff, rngs)
        self.down = _linear(config, config.d_ff, config.d_model, rngs, scale=1 / math.sqrt(2 * config.n_layers))

    def __call__(self, x: jax.Array) -> jax.Array:
        gate_up = self.gate_up(x)
        return self.down(ACTIVATIONS[self.activation](gate_up[..., :self.d_ff]) * gate_up[..., self.d_ff:])


class Block(nnx.Module):
    def __init__(self, config: TransformerConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps, config.norm_unit_offset)
        self.attn = Attention(config, rngs)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps, config.norm_unit_offset)
        self.mlp = SwiGLU(config, rngs)

    def __call__(self, x, positions, past, visible):
        attended, new_kv = self.attn(self.attn_norm(x), positions, past, visible)
        x = x + attended
        return x + self.mlp(self.mlp_norm(x)), new_kv


class Transformer(nnx.Module):
    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = (Int8Embed(config.vocab_size, config.d_model) if config.weights == "int8"
                      else Embed(config.vocab_size, config.d_model, rngs=rngs))
        self.layers = nnx.List([Block(config, rngs) for _ in range(config.n_layers)])
        self.final_norm = RMSNorm(config.d_model, config.norm_eps, config.norm_unit_offset)
        if not config.tied_embeddings:
            self.head = _linear(config, config.d_model, config.vocab_size, rngs)

    def __call__(self, tokens: jax.Array, cache: dict | None = None) -> tuple[jax.Array, dict | None]:
        """tokens int32 [B, T] -> (logits float32 [B, T, V], cache advanced by T, or None without a cache)."""
        hidden, cache = self.hidden(tokens, cache)
        return self.logits(hidden), cache

    def logits(self, hidden: jax.Array) -> jax.Array:
        """The output head: h E^T (tied) or h W_head^T."""
        return self.embed.attend(hidden) if self.config.tied_embeddings else self.head(hidden)

    def run(self, tokens: jax.Array, cache: dict | None = None, positions: jax.Array | None = None,
            mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array, dict | None]:
        """(logits [B, T, V], final-normed hidden states [B, T, d], cache advanced by T) with explicit rotary
        ``positions`` int32[T] and ``mask`` bool[T, T] among the new tokens (module docstring; tree verification)."""
        hidden, cache = self.hidden(tokens, cache, positions, mask)
        return self.logits(hidden), hidden, cache

    def logits_for(self, tokens: jax.Array, cache: dict | None, ids: jax.Array) -> tuple[jax.Array, dict | None]:
        """Like ``__call__`` but the output head computes only the columns ``ids`` int32[m]: logits [B, T, m].
        The filtered cascade's Draft: the seed's point that filtering shrinks the output layer to m columns."""
        hidden, cache = self.hidden(tokens, cache)
        if self.config.tied_embeddings:
            return self.embed.attend_columns(hidden, ids), cache
        return self.head.columns(hidden, ids), cache

    def hidden(self, tokens: jax.Array, cache: dict | None = None, positions: jax.Array | None = None,
               mask: jax.Array | None = None) -> tuple[jax.Array, dict | None]:
        """The trunk: final-normed hidden states [B, T, d] and the advanced cache (None without one)."""
        count = tokens.shape[1]
        start = jnp.zeros((), jnp.int32) if cache is None else cache["pos"]
        if positions is None:
            positions = start + jnp.arange(count, dtype=jnp.int32)
        visible = visibility(count, start, None if cache is None else cache["k"][0].shape[2], mask)
        x = self.embed(tokens)
        if self.config.scaled_embeddings:
            x = x * math.sqrt(self.config.d_model)
        keys, values = [], []
        for index, block in enumerate(self.layers):
            past = None if cache is None else (cache["k"][index], cache["v"][index], start)
            x, (k, v) = block(x, positions, past, visible)
            keys.append(k)
            values.append(v)
        hidden = self.final_norm(x)
        if cache is None:
            return hidden, None
        return hidden, {"pos": start + count, "k": tuple(keys), "v": tuple(values)}


def init_transformer_cache(config: TransformerConfig, batch: int, length: int) -> dict:
    """Per layer: keys [B, KV, S, hd] and values [B, KV, hd, S], zeroed; pos 0."""
    kv, hd = config.n_kv_heads, config.head_dim
    return {"pos": jnp.zeros((), jnp.int32),
            "k": tuple(jnp.zeros((batch, kv, length, hd), jnp.float32) for _ in range(config.n_layers)),
            "v": tuple(jnp.zeros((batch, kv, hd, length), jnp.float32) for _ in range(config.n_layers))}


def _cast_weights(params: dict, dtype) -> dict:
    return {key: (_cast_weights(value, dtype) if isinstance(value, dict)
                  else value.astype(dtype) if key in ("kernel", "embedding") else value)
            for key, value in params.items()}


def as_causal_lm(module: Transformer, name: str, max_len: int | None = None,
                 weights: str | None = None) -> CausalLM:
    """Split ``module`` once into (graphdef, params) and wrap a pure, jitted forward(params, cache, tokens).

    ``weights`` converts the float32 module's weights for inference: "bfloat16" or "int8" (per-output-channel,
    :mod:`.quant`); None keeps the module's own format. ``param_bytes`` counts the stored bytes of every weight
    (the tied embedding is streamed whole by the output head each forward).
    """
    config = module.config
    params = params_of(module)
    weights = weights or config.weights
    if weights != config.weights:
        if config.weights != "float32":
            raise InputError(f"can only convert float32 weights, this model stores {config.weights}")
        params = quantize_params(params) if weights == "int8" else _cast_weights(params, jnp.bfloat16)
        config = dataclasses.replace(config, weights=weights)
    return causal_lm(config, params, name, max_len)


def abstract_transformer(config: TransformerConfig) -> Transformer:
    """The module's structure without weights (no memory): what a loader fills tensor by tensor."""
    return nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))


def causal_lm(config: TransformerConfig, params: dict, name: str, max_len: int | None = None,
              profile=None) -> CausalLM:
    """A :class:`CausalLM` over ``params`` (a plain nested dict in the layout of ``params_of(Transformer(config))``,
    already in ``config.weights``' format): the Hugging Face loader and the random-weight builder use this, so no
    second copy of the weights is ever made. ``profile`` defaults to the config's runtime profile."""
    max_len = max_len or config.max_len
    graphdef = nnx.graphdef(abstract_transformer(config))

    def forward(params, cache, tokens):
        return nnx.merge(graphdef, params)(tokens, cache)

    def forward_columns(params, cache, tokens, ids):
        return nnx.merge(graphdef, params).logits_for(tokens, cache, ids)

    def forward_hidden(params, cache, tokens, positions=None, mask=None):
        logits, hidden, cache = nnx.merge(graphdef, params).run(tokens, cache, positions, mask)
        return logits, hidden, cache

    def init_cache(batch: int, length: int) -> dict:
        return init_transformer_cache(config, batch, length)

    return CausalLM(name=name, vocab_size=config.vocab_size, params=params, forward=jax.jit(forward),
                    init_cache=init_cache, param_bytes=tree_bytes(params), max_len=max_len,
                    forward_columns=jax.jit(forward_columns),
                    profile=profile or model_profile(config, name=name, kind="transformer"),
                    forward_hidden=jax.jit(forward_hidden))
