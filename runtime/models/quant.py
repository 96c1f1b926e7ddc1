"""Weight-only int8 (the seed's eq. 2, per output channel, symmetric).

For a weight W with output channels as rows (shape [out, in]): s_o = max_i |W[o, i]| / 127 (an all-zero row gets
s_o = 1), W8[o, i] = round(W[o, i] / s_o) in [-127, 127]. A layer computes y[..., o] = (x . W8[o, :]) * s_o: the
scale multiplies the matmul's *output*, so no dequantized copy W8 * s is ever built; the int8 weight goes into the
dot as is (``preferred_element_type`` float32 accumulation). The error per weight is at most s_o / 2.
Embedding tables are quantized per row (one row per token): rows are gathered as int8 and scaled afterwards, and
the tied output head is the same per-row (= per-output-channel) quantized matmul.

Backend note: the model code never scales the weight, but XLA:CPU (jax 0.10) lowers an int8 x float32 dot as
``convert(int8 -> f32)`` of the whole weight followed by a float32 dot (seen in the compiled HLO), so on CPU the int8
Draft streams its int8 bytes *and* writes/reads a float32 copy: it is slower than the float32 Draft there. Backends
whose dot consumes int8 operands directly (TPU, GPU) get the 4x byte saving.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

INT8_MAX = 127.0


def quantize_rows(weight: jax.Array | np.ndarray) -> tuple[jax.Array, jax.Array]:
    """(W8 int8 [out, in], scale float32 [out]) with s = max|W| / 127 per row, W8 = round(W / s)."""
    weight = jnp.asarray(weight, jnp.float32)
    peak = jnp.max(jnp.abs(weight), axis=-1)
    scale = jnp.where(peak > 0, peak / INT8_MAX, 1.0)
    q = jnp.clip(jnp.round(weight / scale[:, None]), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return q, scale.astype(jnp.float32)


def int8_matmul(x: jax.Array, q: jax.Array, scale: jax.Array) -> jax.Array:
    """y = (x @ W8^T) * scale: contraction over x's last axis and W8's input axis, scale applied after.

    On XLA:CPU, whose dot converts an int8 operand to float32 first, the weight is made to depend on the
    activation (``q + 0``, the zero computed from x; values unchanged): XLA otherwise schedules every weight's
    conversion at the start of the program, so all float32 copies are alive at once (a temp buffer of 4 bytes per
    parameter: 34 GB requested for Gemma-7B int8, 3.9 GB for four Gemma-2B layers); with the dependency each
    conversion runs just before its matmul and the buffers are reused. Other backends take int8 operands as is."""
    if jax.default_backend() == "cpu":
        zero = (jax.lax.stop_gradient(x.reshape(-1)[0]) * 0).astype(jnp.int8)
        q = q + zero
    y = jax.lax.dot_general(x, q, (((x.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
    return y * scale


class Int8Linear(nnx.Module):
    """A bias-free linear layer holding W8 [out, in] (int8) and its per-output-channel scale [out]."""

    def __init__(self, in_features: int, out_features: int):
        self.q = nnx.Param(jnp.zeros((out_features, in_features), jnp.int8))
        self.scale = nnx.Param(jnp.ones((out_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return int8_matmul(x, self.q[...], self.scale[...])


class Int8Embed(nnx.Module):
    """A token table quantized per row; ``attend`` is the tied output head (per-vocab-row scale after the dot)."""

    def __init__(self, vocab_size: int, features: int):
        self.q = nnx.Param(jnp.zeros((vocab_size, features), jnp.int8))
        self.scale = nnx.Param(jnp.ones((vocab_size,), jnp.float32))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        rows = jax.lax.optimization_barrier(self.q[...][tokens])  # see layers.gather_rows
        return rows.astype(jnp.float32) * self.scale[...][tokens][..., None]

    def attend(self, x: jax.Array) -> jax.Array:
        return int8_matmul(x, self.q[...], self.scale[...])

    def attend_columns(self, x: jax.Array, ids: jax.Array) -> jax.Array:
        return int8_matmul(x, self.q[...][ids], self.scale[...][ids])


def quantize_params(params: dict) -> dict:
    """Map a float parameter dict to the int8 layout: a module dict holding ``kernel`` (a Linear) or ``embedding``
    (an Embed) becomes ``{"q": W8, "scale": s}``; everything else (norm gains, biases) stays float32."""
    for name in ("kernel", "embedding"):
        if name in params:
            q, scale = quantize_rows(params[name])
            return {"q": q, "scale": scale}
    return {key: quantize_params(value) if isinstance(value, dict) else value for key, value in params.items()}
