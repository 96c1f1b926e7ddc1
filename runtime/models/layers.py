"""The building blocks of the runtime's models: matmuls in the stored weight format, embeddings, RMSNorm.

Weights are stored [out, in] and every matmul contracts the activation's last axis with the weight's second axis
(x W^T; see :mod:`.transformer` for why). A low-precision (bfloat16) kernel runs a bfloat16 matmul with float32
accumulation, in the forward and both gradients (:func:`_low_precision_dense`, a custom VJP).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

# A bfloat16 matmul over fewer rows than this is padded with zero rows to this many. Measured on XLA:CPU 0.10
# (2 cores with AMX-BF16), 12 bfloat16 [2816, 512] weights: 1 row 25 ms (a slow fallback loop), 8 rows 2.3 ms
# (AMX tiles), float32 1 row 2.9 ms (benchmarks/matmul_rows.py; docs/runtime-models.md, "Weight formats").
# Every forward of fewer than 8 tokens (decoding, verification of up to 7 tokens) then runs the same 8-row
# kernel, so a token's logits do not depend on how many tokens shared its forward.
MIN_LOW_PRECISION_ROWS = 8


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


def gather_rows(table: jax.Array, tokens: jax.Array) -> jax.Array:
    """table[tokens] in the table's own dtype, without a float32 copy of the table.

    XLA:CPU has no bfloat16 gather / dynamic-slice: its float-normalization pass rewrites one as
    convert(table -> float32), gather, convert back, and inside a loop (a draft loop, the microbenchmark's chain)
    loop-invariant code motion then hoists the whole-table conversion out of it: a float32 copy of the table per
    call (2.1 GB for Gemma-2B's 256,000 x 2,048 embedding, seen in the compiled HLO; it made the chained bf16
    Gemma forward 1.6x the single call). So a 2-byte float table is gathered as its raw 16-bit integers
    (``bitcast_convert_type``: no copy, no conversion; the rows are bit-identical) and the rows bitcast back; the
    optimization barrier keeps the caller's conversion of the rows from being folded into the table. float32
    and integer tables are gathered as they are."""
    if table.dtype.itemsize == 2 and jnp.issubdtype(table.dtype, jnp.floating):
        bits = jax.lax.bitcast_convert_type(table, jnp.uint16)[tokens]
        return jax.lax.optimization_barrier(jax.lax.bitcast_convert_type(bits, table.dtype))
    return table[tokens]


class Linear(nnx.Module):
    """Bias-free linear layer, kernel [out, in], init N(0, 1/in)."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, scale: float = 1.0):
        std = scale / math.sqrt(in_features)
        self.kernel = nnx.Param(std * jax.random.normal(rngs.params(), (out_features, in_features), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _dense(x, self.kernel[...])

    def columns(self, x: jax.Array, ids: jax.Array) -> jax.Array:
        """Only the output features ``ids`` int32[m]: x W[ids]^T, [..., m] (an untied head's filtered columns)."""
        return _dense(x, gather_rows(self.kernel[...], ids))


class Embed(nnx.Module):
    """Token table [vocab, d]; ``attend`` is the tied output head."""

    def __init__(self, vocab_size: int, features: int, *, rngs: nnx.Rngs):
        self.embedding = nnx.Param(0.02 * jax.random.normal(rngs.params(), (vocab_size, features), jnp.float32))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return gather_rows(self.embedding[...], tokens).astype(jnp.float32)

    def attend(self, x: jax.Array) -> jax.Array:
        return _dense(x, self.embedding[...])

    def attend_columns(self, x: jax.Array, ids: jax.Array) -> jax.Array:
        """The output head for the vocabulary entries ``ids`` int32[m] only: x E[ids]^T, float32 [..., m]."""
        return _dense(x, gather_rows(self.embedding[...], ids))


class RMSNorm(nnx.Module):
    """x / sqrt(mean(x^2) + eps) * g, or * (1 + g) with ``unit_offset`` (Gemma; g starts at 0 then)."""

    def __init__(self, features: int, eps: float, unit_offset: bool = False):
        self.scale = nnx.Param((jnp.zeros if unit_offset else jnp.ones)((features,), jnp.float32))
        self.eps = eps
        self.unit_offset = unit_offset

    def __call__(self, x: jax.Array) -> jax.Array:
        gain = self.scale[...].astype(jnp.float32)
        if self.unit_offset:
            gain = 1.0 + gain
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * gain


def params_of(module: nnx.Module) -> dict:
    """The module's weights as a plain nested dict of arrays (layer indices are int keys)."""
    return nnx.to_pure_dict(nnx.state(module))


def tree_bytes(tree) -> int:
    return int(sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(tree)))
