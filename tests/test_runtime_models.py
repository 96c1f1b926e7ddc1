"""Runtime models: cached decode equals a full forward, rollback, int8 quantization, the seed's Tiny."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from speccascade.errors import InputError
from speccascade.runtime.api import with_position
from speccascade.runtime.models import (Tiny, TinyConfig, Transformer, TransformerConfig, as_causal_lm,
                                        int8_matmul, quantize_rows, tiny_causal_lm)

CONFIG = TransformerConfig(vocab_size=97, d_model=48, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=96, max_len=64)


@pytest.fixture(scope="module")
def model():
    return Transformer(CONFIG, rngs=nnx.Rngs(3))


@pytest.fixture(scope="module")
def lm(model):
    return as_causal_lm(model, "test-target", max_len=48)


def _tokens(batch: int, length: int, seed: int = 0) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, length), 0, CONFIG.vocab_size, dtype=jnp.int32)


def _full(lm, tokens):
    logits, cache = lm.forward(lm.params, None, tokens)
    assert cache is None
    return np.asarray(logits)


def test_config_rejects_bad_shapes():
    with pytest.raises(InputError, match="n_kv_heads"):
        TransformerConfig(d_model=48, n_heads=4, n_kv_heads=3)
    with pytest.raises(InputError, match="weights"):
        TransformerConfig(weights="int4")


def test_param_count_matches_module(model, lm):
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(lm.params)) == CONFIG.param_count()
    assert lm.param_bytes == 4 * CONFIG.param_count()


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_cached_decode_equals_full_forward(lm, chunk):
    tokens = _tokens(2, 20)
    full = _full(lm, tokens)
    cache = lm.init_cache(2, lm.max_len)
    pieces = []
    for start in range(0, 20, chunk):
        logits, cache = lm.forward(lm.params, cache, tokens[:, start:start + chunk])
        pieces.append(np.asarray(logits))
    assert int(cache["pos"]) == 20
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-5, atol=1e-5)


def test_rollback_by_moving_pos_then_reforward(lm):
    first, second = _tokens(1, 16, seed=1), _tokens(1, 16, seed=2)
    cache = lm.init_cache(1, lm.max_len)
    _, cache = lm.forward(lm.params, cache, first)  # 16 positions of `first`
    cache = with_position(cache, 9)  # reject the last 7: stale entries stay in the buffer
    logits, cache = lm.forward(lm.params, cache, second[:, 9:])
    spliced = jnp.concatenate([first[:, :9], second[:, 9:]], axis=1)
    np.testing.assert_allclose(np.asarray(logits), _full(lm, spliced)[:, 9:], rtol=1e-5, atol=1e-5)
    assert int(cache["pos"]) == 16


def test_forward_composes_inside_an_outer_jit(lm):
    tokens = _tokens(1, 6)

    @jax.jit
    def two_steps(params, cache, tokens):
        first, cache = lm.forward(params, cache, tokens[:, :4])
        second, cache = lm.forward(params, cache, tokens[:, 4:])
        return jnp.concatenate([first, second], axis=1), cache

    logits, cache = two_steps(lm.params, lm.init_cache(1, lm.max_len), tokens)
    np.testing.assert_allclose(np.asarray(logits), _full(lm, tokens), rtol=1e-5, atol=1e-5)


def test_quantize_rows_is_symmetric_per_output_channel():
    weight = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32)
    weight[2] = 0.0
    q, scale = quantize_rows(weight)
    q, scale = np.asarray(q), np.asarray(scale)
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    peak = np.abs(weight).max(axis=1)
    np.testing.assert_allclose(scale[[0, 1, 3, 4, 5]], peak[[0, 1, 3, 4, 5]] / 127, rtol=1e-6)
    assert scale[2] == 1.0 and not q[2].any()
    assert np.all(np.abs(q * scale[:, None] - weight) <= scale[:, None] / 2 + 1e-7)
    assert np.all(np.abs(q).max(axis=1)[[0, 1, 3, 4, 5]] == 127)


def test_int8_matmul_applies_scale_after_the_dot():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 10)).astype(np.float32)
    q, scale = quantize_rows(rng.normal(size=(7, 10)).astype(np.float32))
    expected = (x @ np.asarray(q, np.float32).T) * np.asarray(scale)
    np.testing.assert_allclose(np.asarray(int8_matmul(jnp.asarray(x), q, scale)), expected, rtol=1e-5, atol=1e-5)
    jaxpr = jax.make_jaxpr(int8_matmul)(jnp.asarray(x), q, scale).jaxpr
    names = [eqn.primitive.name for eqn in jaxpr.eqns]
    dot = jaxpr.eqns[names.index("dot_general")]
    assert dot.invars[1].aval.dtype == jnp.int8  # the int8 weight enters the dot as is
    assert "mul" in names[names.index("dot_general"):]  # the scale multiplies the dot's output
    assert not any(eqn.primitive.name == "mul" and eqn.outvars[0].aval.shape == (7, 10) for eqn in jaxpr.eqns)


def test_int8_model_is_close_to_fp32_and_counts_int8_bytes(model, lm):
    int8 = as_causal_lm(model, "test-int8", max_len=48, weights="int8")
    tokens = _tokens(2, 12, seed=4)
    full, quant = _full(lm, tokens), _full(int8, tokens)
    assert np.abs(quant - full).max() < 0.05 * np.abs(full).max()
    leaves = jax.tree_util.tree_leaves(int8.params)
    int8_weights = sum(leaf.size for leaf in leaves if leaf.dtype == jnp.int8)
    assert int8_weights == CONFIG.param_count() - (2 * CONFIG.n_layers + 1) * CONFIG.d_model  # all but norm gains
    assert int8.param_bytes == sum(leaf.size * leaf.dtype.itemsize for leaf in leaves)
    assert int8.param_bytes < 0.3 * lm.param_bytes
    # the cache protocol holds for the int8 model too
    cache = int8.init_cache(2, 48)
    logits, cache = int8.forward(int8.params, cache, tokens[:, :5])
    rest, cache = int8.forward(int8.params, cache, tokens[:, 5:])
    np.testing.assert_allclose(np.concatenate([logits, rest], axis=1), quant, rtol=1e-4, atol=1e-4)


def test_bfloat16_weights_forward(model, lm):
    bf16 = as_causal_lm(model, "test-bf16", max_len=48, weights="bfloat16")
    tokens = _tokens(1, 8, seed=5)
    assert bf16.param_bytes < 0.55 * lm.param_bytes
    assert np.abs(_full(bf16, tokens) - _full(lm, tokens)).max() < 0.05 * np.abs(_full(lm, tokens)).max()


def test_tiny_is_the_seed_formula_on_the_current_token():
    config = TinyConfig(vocab_size=50, d_embed=8, d_hidden=12, max_len=32)
    module = Tiny(config, rngs=nnx.Rngs(0))
    tiny = tiny_causal_lm(module, "tiny")
    tokens = jnp.asarray([[3, 7, 7, 41]], jnp.int32)
    logits, cache = tiny.forward(tiny.params, tiny.init_cache(1, 32), tokens)
    assert int(cache["pos"]) == 4 and set(cache) == {"pos"}
    p = jax.tree_util.tree_map(np.asarray, tiny.params)
    x = p["embed"]["embedding"][np.asarray(tokens)]
    pre = x @ p["w1"]["kernel"].T + p["b1"]
    h = (pre - pre.mean(-1, keepdims=True)) / np.sqrt(pre.var(-1, keepdims=True) + config.norm_eps)
    h = h * p["norm"]["scale"] + p["norm"]["bias"]
    expected = np.maximum(h, 0) @ p["w2"]["kernel"].T + p["b2"]
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(logits[0, 1]), np.asarray(logits[0, 2]))  # same token, same output


def test_bfloat16_forward_of_a_token_does_not_depend_on_the_tokens_beside_it(model):
    """Forwards of fewer than 8 tokens pad their matmuls to 8 rows: a token's logits are the same whether it is
    decoded alone or verified with up to 7 others (what makes greedy speculative decoding token-identical)."""
    bf16 = as_causal_lm(model, "test-bf16", max_len=48, weights="bfloat16")
    tokens = _tokens(1, 12, seed=9)
    forward = jax.jit(bf16.forward)
    cache = bf16.init_cache(1, 48)
    _, cache = forward(bf16.params, cache, tokens[:, :5])
    together, _ = forward(bf16.params, cache, tokens[:, 5:12])
    alone = []
    for index in range(5, 12):
        logits, cache = forward(bf16.params, cache, tokens[:, index:index + 1])
        alone.append(np.asarray(logits[:, 0]))
    np.testing.assert_allclose(np.stack(alone, 1), np.asarray(together), atol=2e-5)


def test_bfloat16_target_strategies_are_token_identical_to_greedy_autoregressive(model):
    from speccascade.runtime.decoding import Autoregressive, Decoder, build_strategy
    from speccascade.strategy_names import StrategyKnobs
    from speccascade.runtime.decoding.sampling import GREEDY

    from runtime_fixtures import perturbed, random_prompts

    target = as_causal_lm(model, "test-bf16", max_len=64, weights="bfloat16")
    draft = perturbed(as_causal_lm(model, "test-draft", max_len=64), "test-draft", noise=0.15, seed=4)
    tiny = tiny_causal_lm(Tiny(TinyConfig(vocab_size=CONFIG.vocab_size, d_embed=8, d_hidden=16, max_len=64),
                               rngs=nnx.Rngs(5)), "test-tiny")
    prompts = random_prompts(20, CONFIG.vocab_size, seed=11)
    reference = Decoder(Autoregressive(target), 64)
    expected = [reference.generate(prompt, 20).tokens for prompt in prompts]
    knobs = StrategyKnobs(k=4, k_tiny=2, filter_width=8)
    for name in ("speculative", "vertical", "vertical-budget", "filtered"):
        decoder = Decoder(build_strategy(name, tiny, draft, target, GREEDY, knobs), 64)
        assert [decoder.generate(prompt, 20).tokens for prompt in prompts] == expected, name


def test_gather_rows_of_a_bfloat16_table_is_bit_identical_and_makes_no_float32_table_copy():
    from speccascade.runtime.models.layers import gather_rows
    table = jax.random.normal(jax.random.key(7), (1000, 24), jnp.float32).astype(jnp.bfloat16)
    tokens = jnp.asarray([3, 999, 0, 3], jnp.int32)
    rows = gather_rows(table, tokens)
    assert rows.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(rows.astype(jnp.float32)), np.asarray(table[tokens].astype(jnp.float32)))

    def looped(table, tokens):  # a gather inside a loop, the rows converted by the caller (as in a draft loop)
        def body(step, total):
            return total + gather_rows(table, (tokens + step) % 1000).astype(jnp.float32).sum()
        return jax.lax.fori_loop(0, 3, body, jnp.zeros((), jnp.float32))

    compiled = jax.jit(looped).lower(table, tokens).compile().as_text()
    assert "f32[1000,24]" not in compiled  # the whole table is never converted to float32
    np.testing.assert_allclose(float(looped(table, tokens)),
                               sum(float(table[(tokens + s) % 1000].astype(jnp.float32).sum()) for s in range(3)),
                               rtol=1e-5)
