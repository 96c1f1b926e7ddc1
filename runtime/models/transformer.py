"""Decoder-only transformer in Flax NNX: RMSNorm, rotary positions, SwiGLU, grouped-query attention, KV cache.

Block (pre-norm, as in Llama): x += Attn(RMSNorm(x)); x += W_down(SiLU(W_gate x') * W_up x') with x' = RMSNorm(x).
RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g. Rotary positions (Su et al. 2021) rotate each (i, i + d/2) pair of
query/key features by angle pos * theta^(-2i/d). Grouped-query attention (Ainslie et al. 2023): ``n_heads`` query
heads share ``n_kv_heads`` key/value heads. The output head is tied to the token embedding (logits = h E^T).

Weights are stored [out, in] and every matmul contracts the activation's last axis with the weight's second axis
(x W^T): on XLA:CPU this layout runs a forward over a few tokens (speculative verification) much closer to the
cost of one token than the [in, out] layout does. q/k/v are one fused matmul and gate/up another.

KV cache: ``{"pos": int32[], "k": float32[L, B, S, KV, hd], "v": same}`` with a fixed S (``max_len``). A forward
over T tokens attends to the cached keys at positions < pos and causally to its own T new keys (one softmax over
both), then writes the T new keys/values of all layers at pos with one ``lax.dynamic_update_slice`` (in place when
the caller donates the cache) and advances pos by T. Entries at >= pos (stale, after a rollback) are never read
and get overwritten. The caller keeps pos + T <= S (beyond it XLA clamps the write offset). Without a cache the
forward is the plain causal forward (training, evaluation).

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

from speccascade.hardware.errors import InputError
from speccascade.runtime.api import CausalLM
from speccascade.runtime.models.quant import Int8Embed, Int8Linear, quantize_params

WEIGHT_FORMATS = ("float32", "bfloat16", "int8")


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
    return _low_precision_dense(x, kernel)


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
        """past: None (causal over x alone) or (k_past, v_past, start) with k_past [B, S, KV, hd] of which
        positions < start are valid; returns (y, (k, v) of the new positions)."""
        cfg = self.config
        batch, count, _ = x.shape
        hd, heads, kv_heads = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        qkv = self.qkv(x)
        q = rotary(qkv[..., :heads * hd].reshape(batch, count, heads, hd), positions, cfg.rope_theta)
        k = rotary(qkv[..., heads * hd:(heads + kv_heads) * hd].reshape(batch, count, kv_heads, hd), positions,
                   cfg.rope_theta)
        v = qkv[..., (heads + kv_heads) * hd:].reshape(batch, count, kv_heads, hd)
        # query head h uses kv head h // (heads / kv_heads): group the query heads per kv head
        q = q.reshape(batch, count, kv_heads, heads // kv_heads, hd) / math.sqrt(hd)
        causal = jnp.tril(jnp.ones((count, count), bool))
        scores = jnp.where(causal, jnp.einsum("btkgh,bskh->bkgts", q, k), -1e30)
        if past is None:
            attended = jnp.einsum("bkgts,bskh->btkgh", jax.nn.softmax(scores, axis=-1), v)
        else:  # the cached positions < start, then the new ones; one softmax over both
            k_past, v_past, start = past
            length = k_past.shape[1]
            old = jnp.einsum("btkgh,bskh->bkgts", q, k_past.astype(q.dtype))
            old = jnp.where(jnp.arange(length) < start, old, -1e30)
            probs = jax.nn.softmax(jnp.concatenate([old, scores], axis=-1), axis=-1)
            attended = (jnp.einsum("bkgts,bskh->btkgh", probs[..., :length], v_past.astype(q.dtype))
                        + jnp.einsum("bkgts,bskh->btkgh", probs[..., length:], v))
        return self.out(attended.reshape(batch, count, heads * hd)), (k, v)


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
        count = tokens.shape[1]
        start = jnp.zeros((), jnp.int32) if cache is None else cache["pos"]
        positions = start + jnp.arange(count, dtype=jnp.int32)
        x = self.embed(tokens)
        new_keys, new_values = [], []
        for index, block in enumerate(self.layers):
            past = None if cache is None else (cache["k"][index], cache["v"][index], start)
            x, (k, v) = block(x, positions, past)
            new_keys.append(k)
            new_values.append(v)
        logits = self.embed.attend(self.final_norm(x))
        if cache is None:
            return logits, None
        # one write of the T new positions of every layer (in place when the caller donates the cache)
        k_all = jax.lax.dynamic_update_slice(cache["k"], jnp.stack(new_keys).astype(cache["k"].dtype),
                                             (0, 0, start, 0, 0))
        v_all = jax.lax.dynamic_update_slice(cache["v"], jnp.stack(new_values).astype(cache["v"].dtype),
                                             (0, 0, start, 0, 0))
        return logits, {"pos": start + count, "k": k_all, "v": v_all}


def init_transformer_cache(config: TransformerConfig, batch: int, length: int) -> dict:
    shape = (config.n_layers, batch, length, config.n_kv_heads, config.head_dim)
    return {"pos": jnp.zeros((), jnp.int32), "k": jnp.zeros(shape, jnp.float32), "v": jnp.zeros(shape, jnp.float32)}


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

    def init_cache(batch: int, length: int) -> dict:
        return init_transformer_cache(config, batch, length)

    return CausalLM(name=name, vocab_size=config.vocab_size, params=params, forward=jax.jit(forward),
                    init_cache=init_cache, param_bytes=tree_bytes(params), max_len=max_len)
