"""Small random-weight CausalLM models for runtime tests (pure JAX, no Flax, seconds to compile).

``toy_transformer``: a pre-norm decoder (learned positions, multi-head attention over a fixed-size KV cache with
a position pointer, GELU MLP). ``toy_projection``: the seed's Tiny form P = softmax(W2 ReLU(LN(W1 x + b1)) + b2)
with x the embedding of the current token (stateless; its cache is only the pointer). ``perturbed`` copies a
model with Gaussian noise added to every weight: a draft that agrees with its target often but not always.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from speccascade.runtime.api import CausalLM


def _normal(rng: np.random.Generator, shape, scale):
    return jnp.asarray(scale * rng.standard_normal(shape), jnp.float32)


def _rms(x):
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6)


def toy_transformer(name: str, vocab: int = 64, d_model: int = 32, layers: int = 2, heads: int = 4,
                    max_len: int = 128, seed: int = 0, logit_scale: float = 3.0) -> CausalLM:
    rng = np.random.default_rng(seed)
    inv = 1.0 / math.sqrt(d_model)
    params: dict[str, Any] = {
        "embed": _normal(rng, (vocab, d_model), 1.0),
        "positions": _normal(rng, (max_len, d_model), 0.5),
        "head": _normal(rng, (d_model, vocab), logit_scale * inv),
        "layers": [{"wq": _normal(rng, (d_model, d_model), inv),
                    "wk": _normal(rng, (d_model, d_model), inv),
                    "wv": _normal(rng, (d_model, d_model), inv),
                    "wo": _normal(rng, (d_model, d_model), inv),
                    "w_up": _normal(rng, (d_model, 4 * d_model), inv),
                    "w_down": _normal(rng, (4 * d_model, d_model), 0.5 * inv)} for _ in range(layers)],
    }
    head_dim = d_model // heads

    def init_cache(batch: int, length: int) -> dict:
        shape = (layers, batch, length, d_model)
        return {"k": jnp.zeros(shape, jnp.float32), "v": jnp.zeros(shape, jnp.float32),
                "pos": jnp.zeros((), jnp.int32)}

    def forward(params, cache, tokens, ids=None):
        """ids (int32[m] or None): compute only those output columns (the CausalLM ``forward_columns``)."""
        batch, count = tokens.shape
        start = cache["pos"]
        positions = start + jnp.arange(count)
        x = params["embed"][tokens] + params["positions"][positions][None]
        length = cache["k"].shape[2]
        visible = jnp.arange(length)[None, :] <= positions[:, None]  # [T, S]
        keys_all, values_all = [], []
        for index, layer in enumerate(params["layers"]):
            h = _rms(x)
            q, k, v = h @ layer["wq"], h @ layer["wk"], h @ layer["wv"]
            k_cache = jax.lax.dynamic_update_slice(cache["k"][index], k, (0, start, 0))
            v_cache = jax.lax.dynamic_update_slice(cache["v"][index], v, (0, start, 0))
            keys_all.append(k_cache)
            values_all.append(v_cache)
            qh = q.reshape(batch, count, heads, head_dim)
            kh = k_cache.reshape(batch, length, heads, head_dim)
            vh = v_cache.reshape(batch, length, heads, head_dim)
            scores = jnp.einsum("bthd,bshd->bhts", qh, kh) / math.sqrt(head_dim)
            scores = jnp.where(visible[None, None], scores, -1e30)
            attended = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), vh)
            x = x + attended.reshape(batch, count, d_model) @ layer["wo"]
            x = x + jax.nn.gelu(_rms(x) @ layer["w_up"]) @ layer["w_down"]
        logits = _rms(x) @ (params["head"] if ids is None else params["head"][:, ids])
        return logits, {"k": jnp.stack(keys_all), "v": jnp.stack(values_all), "pos": start + count}

    param_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(params))
    return CausalLM(name, vocab, params, forward, init_cache, int(param_bytes), max_len, forward_columns=forward)


def toy_projection(name: str, vocab: int = 64, d_model: int = 32, hidden: int = 64, max_len: int = 128,
                   seed: int = 0, logit_scale: float = 3.0) -> CausalLM:
    """The seed's Tiny: h = LayerNorm(W1 x + b1), P = softmax(W2 ReLU(h) + b2), x = embedding of the token."""
    rng = np.random.default_rng(seed)
    params = {"embed": _normal(rng, (vocab, d_model), 1.0),
              "w1": _normal(rng, (d_model, hidden), 1.0 / math.sqrt(d_model)),
              "b1": jnp.zeros((hidden,), jnp.float32),
              "w2": _normal(rng, (hidden, vocab), logit_scale / math.sqrt(hidden)),
              "b2": jnp.zeros((vocab,), jnp.float32)}

    def init_cache(batch: int, length: int) -> dict:
        return {"pos": jnp.zeros((), jnp.int32)}

    def forward(params, cache, tokens):
        h = params["embed"][tokens] @ params["w1"] + params["b1"]
        h = (h - h.mean(-1, keepdims=True)) * jax.lax.rsqrt(h.var(-1, keepdims=True) + 1e-5)
        logits = jax.nn.relu(h) @ params["w2"] + params["b2"]
        return logits, {"pos": cache["pos"] + tokens.shape[1]}

    param_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(params))
    return CausalLM(name, vocab, params, forward, init_cache, int(param_bytes), max_len)


def perturbed(model: CausalLM, name: str, noise: float, seed: int = 1) -> CausalLM:
    """A copy of ``model`` with every weight w replaced by w + noise * std(w) * N(0, 1)."""
    leaves, treedef = jax.tree_util.tree_flatten(model.params)
    rng = np.random.default_rng(seed)
    noisy = []
    for leaf in leaves:
        host = np.asarray(leaf)
        noisy.append(jnp.asarray(host + noise * (host.std() + 1e-3) * rng.standard_normal(host.shape), leaf.dtype))
    params = jax.tree_util.tree_unflatten(treedef, noisy)
    return CausalLM(name, model.vocab_size, params, model.forward, model.init_cache, model.param_bytes,
                    model.max_len, forward_columns=model.forward_columns)


def toy_trio(vocab: int = 64, max_len: int = 128, seed: int = 0) -> tuple[CausalLM, CausalLM, CausalLM]:
    """(tiny, draft, target): target a 2-layer toy transformer; draft its noisy copy; tiny a projection model
    fitted to nothing (random), so tiny->draft acceptance is low but non-zero and both paths get exercised."""
    target = toy_transformer("toy-target", vocab=vocab, max_len=max_len, seed=seed)
    draft = perturbed(target, "toy-draft", noise=0.12, seed=seed + 1)
    tiny = perturbed(draft, "toy-tiny", noise=0.25, seed=seed + 2)
    return tiny, draft, target


def random_prompts(count: int, vocab: int, seed: int = 0, min_len: int = 2, max_len: int = 12) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=int(rng.integers(min_len, max_len + 1))).tolist() for _ in range(count)]
