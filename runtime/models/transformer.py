"""Decoder-only transformer in Flax NNX: RMSNorm, rotary positions, SwiGLU, grouped-query attention, KV cache.

Block (pre-norm, as in Llama): x += Attn(RMSNorm(x)); x += W_down(SiLU(W_gate x') * W_up x') with x' = RMSNorm(x).
RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g. Rotary positions (Su et al. 2021) rotate each (i, i + d/2) pair of
query/key features by angle pos * theta^(-2i/d). Grouped-query attention (Ainslie et al. 2023): ``n_heads`` query
heads share ``n_kv_heads`` key/value heads. The output head is tied to the token embedding (logits = h E^T).

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
from speccascade.runtime.models.quant import Int8Embed, Int8Linear, quantize_params
from speccascade.runtime.profiles import model_profile

WEIGHT_FORMATS = ("float32", "bfloat16", "int8")
# A bfloat16 matmul over fewer rows than this is padded with zero rows to this many. Measured on XLA:CPU 0.10
# (2 cores with AMX-BF16), 12 bfloat16 [2816, 512] weights: 1 row 25 ms (a slow fallback loop), 8 rows 2.3 ms
# (AMX tiles), float32 1 row 2.9 ms (benchmarks/matmul_rows.py; docs/runtime-models.md, "Weight formats").
# Every forward of fewer than 8 tokens (decoding, verification of up to 7 tokens) then runs the same 8-row
# kernel, so a token's logits do not depend on how many tokens shared its forward.
MIN_LOW_PRECISION_ROWS = 8


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

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.d_model, self.n_layers, self.n_heads, self.n_kv_heads, self.d_ff,
               self.max_len) < 1:
            raise InputError(f"transformer config sizes must be positive: {self}")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads or (self.d_model // self.n_heads) % 2:
            raise InputError("d_model must split into n_heads even-sized heads and n_heads must be a multiple of "
                             f"n_kv_heads (got d_model={self.d_model}, n_heads={self.n_heads}, "
                             f"n_kv_heads={self.n_kv_heads})")
        if self.weights not in WEIGHT_FORMATS:
            raise InputError(f"weights must be one of {WEIGHT_FORMATS}, got {self.weights!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def param_count(self) -> int:
        d, kv = self.d_model, self.n_kv_heads * self.head_dim
        per_layer = d * (d + 2 * kv) + d * d + 3 * d * self.d_ff + 2 * d
        return self.vocab_size * d + self.n_layers * per_layer + d

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TransformerConfig":
        try:
            return cls(**data)
        except TypeError as err:
            raise InputError(f"bad transformer config {data}: {err}") from err


def _dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x W^T with W [out, in]; float32 result. A bfloat16 kernel (inference, or mixed-precision training) makes
    bfloat16 matmuls with float32 accumulation in the forward and in both gradients."""
    if kernel.dtype == jnp.float32:
        return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ())))
    # one 2-D matmul (XLA:CPU turns a bfloat16 dot with a [1, T, d] operand into float32 copies of the weights)
    rows = math.prod(x.shape[:-1])
    flat = x.reshape(rows, x.shape[-1])
    if rows < MIN_LOW_PRECISION_ROWS:  # decoding: zero rows up to the kernel every larger batch runs
        flat = jnp.pad(flat, ((0, MIN_LOW_PRECISION_ROWS - rows), (0, 0)))
    return _low_precision_dense(flat, kernel)[:rows].reshape(*x.shape[:-1], kernel.shape[0])


@jax.custom_vjp
def _low_precision_dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.dot_general(x.astype(kernel.dtype), kernel, (((x.ndim - 1,), (1,)), ((), ())),
                               preferred_element_type=jnp.float32)


def _low_precision_dense_fwd(x, kernel):
    return _low_precision_dense(x, kernel), (x.astype(kernel.dtype), kernel)


def _low_precision_dense_bwd(residuals, grad):
    x_low, kernel = residuals
    grad_low = grad.astype(kernel.dtype)
    grad_x = jax.lax.dot_general(grad_low, kernel, (((grad.ndim - 1,), (0,)), ((), ())),
                                 preferred_element_type=jnp.float32)
    grad_kernel = jax.lax.dot_general(grad_low.reshape(-1, grad.shape[-1]), x_low.reshape(-1, x_low.shape[-1]),
                                      (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    return grad_x, grad_kernel.astype(kernel.dtype)


_low_precision_dense.defvjp(_low_precision_dense_fwd, _low_precision_dense_bwd)


class Linear(nnx.Module):
    """Bias-free linear layer, kernel [out, in], init N(0, 1/in)."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, scale: float = 1.0):
        std = scale / math.sqrt(in_features)
        self.kernel = nnx.Param(std * jax.random.normal(rngs.params(), (out_features, in_features), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _dense(x, self.kernel[...])


class Embed(nnx.Module):
    """Token table [vocab, d]; ``attend`` is the tied output head."""

    def __init__(self, vocab_size: int, features: int, *, rngs: nnx.Rngs):
        self.embedding = nnx.Param(0.02 * jax.random.normal(rngs.params(), (vocab_size, features), jnp.float32))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.embedding[...][tokens].astype(jnp.float32)

    def attend(self, x: jax.Array) -> jax.Array:
        return _dense(x, self.embedding[...])

    def attend_columns(self, x: jax.Array, ids: jax.Array) -> jax.Array:
        """The output head for the vocabulary entries ``ids`` int32[m] only: x E[ids]^T, float32 [..., m]."""
        return _dense(x, self.embedding[...][ids])


class RMSNorm(nnx.Module):
    def __init__(self, features: int, eps: float):
        self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * self.scale[...]


def _linear(config: TransformerConfig, in_features: int, out_features: int, rngs: nnx.Rngs,
            scale: float = 1.0) -> nnx.Module:
    if config.weights == "int8":
        return Int8Linear(in_features, out_features)
    return Linear(in_features, out_features, rngs=rngs, scale=scale)


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

    def __call__(self, x: jax.Array, positions: jax.Array, past: tuple | None):
        """past: None (causal over x alone) or (k_cache [B, KV, S, hd], v_cache [B, KV, hd, S], start); the new
        keys/values are written at ``start`` first. Returns (y, (keys, values)): the updated caches, or with no
        past the new keys [B, KV, T, hd] and values [B, KV, hd, T]."""
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
        if past is None:
            key_positions = positions
        else:
            k_cache, v_cache, start = past
            keys = jax.lax.dynamic_update_slice(k_cache, keys.astype(k_cache.dtype), (0, 0, start, 0))
            values = jax.lax.dynamic_update_slice(v_cache, values.astype(v_cache.dtype), (0, 0, 0, start))
            key_positions = jnp.arange(keys.shape[2], dtype=jnp.int32)
        scores = jnp.einsum("bkqh,bksh->bkqs", q, keys.astype(q.dtype))
        query_positions = jnp.tile(positions, group)
        scores = jnp.where(key_positions[None, :] <= query_positions[:, None], scores, -1e30)
        attended = jnp.einsum("bkqs,bkhs->bkqh", jax.nn.softmax(scores, axis=-1), values.astype(q.dtype))
        attended = jnp.transpose(attended.reshape(batch, kv_heads, group, count, hd), (0, 3, 1, 2, 4))
        return self.out(attended.reshape(batch, count, heads * hd)), (keys, values)


class SwiGLU(nnx.Module):
    def __init__(self, config: TransformerConfig, rngs: nnx.Rngs):
        self.d_ff = config.d_ff
        self.gate_up = _linear(config, config.d_model, 2 * config.d_ff, rngs)
        self.down = _linear(config, config.d_ff, config.d_model, rngs, scale=1 / math.sqrt(2 * config.n_layers))

    def __call__(self, x: jax.Array) -> jax.Array:
        gate_up = self.gate_up(x)
        return self.down(jax.nn.silu(gate_up[..., :self.d_ff]) * gate_up[..., self.d_ff:])


class Block(nnx.Module):
    def __init__(self, config: TransformerConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config, rngs)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = SwiGLU(config, rngs)

    def __call__(self, x, positions, past):
        attended, new_kv = self.attn(self.attn_norm(x), positions, past)
        x = x + attended
        return x + self.mlp(self.mlp_norm(x)), new_kv


class Transformer(nnx.Module):
    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = (Int8Embed(config.vocab_size, config.d_model) if config.weights == "int8"
                      else Embed(config.vocab_size, config.d_model, rngs=rngs))
        self.layers = nnx.List([Block(config, rngs) for _ in range(config.n_layers)])
        self.final_norm = RMSNorm(config.d_model, config.norm_eps)

    def __call__(self, tokens: jax.Array, cache: dict | None = None) -> tuple[jax.Array, dict | None]:
        """tokens int32 [B, T] -> (logits float32 [B, T, V], cache advanced by T, or None without a cache)."""
        hidden, cache = self.hidden(tokens, cache)
        return self.embed.attend(hidden), cache

    def logits_for(self, tokens: jax.Array, cache: dict | None, ids: jax.Array) -> tuple[jax.Array, dict | None]:
        """Like ``__call__`` but the output head computes only the columns ``ids`` int32[m]: logits [B, T, m].
        The filtered cascade's Draft: the seed's point that filtering shrinks the output layer to m columns."""
        hidden, cache = self.hidden(tokens, cache)
        return self.embed.attend_columns(hidden, ids), cache

    def hidden(self, tokens: jax.Array, cache: dict | None = None) -> tuple[jax.Array, dict | None]:
        """The trunk: final-normed hidden states [B, T, d] and the advanced cache (None without one)."""
        count = tokens.shape[1]
        start = jnp.zeros((), jnp.int32) if cache is None else cache["pos"]
        positions = start + jnp.arange(count, dtype=jnp.int32)
        x = self.embed(tokens)
        keys, values = [], []
        for index, block in enumerate(self.layers):
            past = None if cache is None else (cache["k"][index], cache["v"][index], start)
            x, (k, v) = block(x, positions, past)
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


def params_of(module: nnx.Module) -> dict:
    """The module's weights as a plain nested dict of arrays (layer indices are int keys)."""
    return nnx.to_pure_dict(nnx.state(module))


def tree_bytes(tree) -> int:
    return int(sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(tree)))


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
    max_len = max_len or config.max_len
    params = params_of(module)
    weights = weights or config.weights
    if weights != config.weights:
        if config.weights != "float32":
            raise InputError(f"can only convert float32 weights, this model stores {config.weights}")
        converted = dataclasses.replace(config, weights=weights)
        module = nnx.eval_shape(lambda: Transformer(converted, rngs=nnx.Rngs(0)))
        params = quantize_params(params) if weights == "int8" else _cast_weights(params, jnp.bfloat16)
        config = converted
    graphdef = nnx.graphdef(module)

    def forward(params, cache, tokens):
        return nnx.merge(graphdef, params)(tokens, cache)

    def forward_columns(params, cache, tokens, ids):
        return nnx.merge(graphdef, params).logits_for(tokens, cache, ids)

    def init_cache(batch: int, length: int) -> dict:
        return init_transformer_cache(config, batch, length)

    return CausalLM(name=name, vocab_size=config.vocab_size, params=params, forward=jax.jit(forward),
                    init_cache=init_cache, param_bytes=tree_bytes(params), max_len=max_len,
                    forward_columns=jax.jit(forward_columns),
                    profile=model_profile(config, name=name, kind="transformer"))
