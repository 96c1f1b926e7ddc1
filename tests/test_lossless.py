"""Lossless and *actually speculating*: self-draft acceptance, the filtered Draft's m-column head, an independent
greedy reference, identity on models whose outputs vary, and (with the trained trio) acceptance in a band.

Lossless verification corrects any drafter error, so a strategy whose drafts are never accepted (a broken draft
cache position, an always-reject bug) still emits exactly the autoregressive tokens and only loses its speedup.
These tests catch that: with the Target as its own Draft (and as the Tiny), every draft must be accepted, so
alpha = 1 and every step emits all its drafts plus the bonus token, under greedy decoding and under sampling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from speccascade.runtime.decoding import (
    Autoregressive, Decoder, FilteredCascade, SamplingConfig, Speculative, VerticalBudget, VerticalCascade,
    build_strategy,
)
from speccascade.runtime.decoding.sampling import GREEDY
from speccascade.strategy_names import StrategyKnobs

from lossless_harness import greedy_reference, varied_transformer
from runtime_fixtures import perturbed, random_prompts, toy_projection, toy_transformer

VOCAB, CAPACITY, NEW = 64, 80, 30
PLAIN = SamplingConfig(greedy=False)


@pytest.fixture(scope="module")
def target():
    return toy_transformer("self-target", vocab=VOCAB, max_len=CAPACITY, seed=3)


@pytest.fixture(scope="module")
def prompts():
    return random_prompts(2, VOCAB, seed=21)


@pytest.fixture(scope="module")
def reference(target, prompts):
    return greedy_reference(target, prompts, NEW)


# Found by these tests and fixed: in both vertical cascades the Tiny's cache used to miss its own last draft of a
# step's last review when that review accepted all k_tiny drafts and the Target then accepted every delivered token
# (the next step's first Tiny forward started at length - 2). The Tiny's first forward of a review now feeds
# TINY_LAG = 3 tokens (speccascade/strategies.py); these self-draft runs assert alpha = 1 at the Tiny level too.

# name -> (strategy with the Target as Draft and Tiny, drafts the Target verifies per step, Tiny drafts per step)
SELF_DRAFT = {
    "speculative": (lambda T, c: Speculative(T, T, k=4, sampling=c), 4, 0),
    # k = 2 reviews of k_tiny = 2: each review delivers 3 tokens, the Target verifies all k (k_tiny + 1) = 6
    "vertical": (lambda T, c: VerticalCascade(T, T, T, k=2, k_tiny=2, sampling=c), 6, 4),
    # reviews until k = 5 tokens are delivered: 2 reviews (3 + 3 delivered), the Target verifies 5 (the 6th
    # delivered token is re-drafted next step, which hides the Tiny's lag)
    "vertical-budget": (lambda T, c: VerticalBudget(T, T, T, k=5, k_tiny=2, sampling=c), 5, 4),
    # k = 3 = one review's delivery: the Target verifies every delivered token, as in "vertical"
    "vertical-budget-exact": (lambda T, c: VerticalBudget(T, T, T, k=3, k_tiny=2, sampling=c), 3, 2),
    # greedy: the Tiny's top-1 is the Target's argmax, so filter_width 1 already covers it; sampled: all V columns
    "filtered": (lambda T, c: FilteredCascade(T, T, T, k=4, filter_width=1 if c.greedy else VOCAB, sampling=c), 4, 0),
}
CASES = [(name, GREEDY) for name in SELF_DRAFT] + [(name, PLAIN) for name in SELF_DRAFT]


@pytest.mark.parametrize("name,sampling", CASES, ids=[f"{n}-{'greedy' if c.greedy else 'sampled'}" for n, c in CASES])
def test_a_self_draft_accepts_every_draft(target, prompts, reference, name, sampling):
    """Every draft at every level is accepted (alpha = 1) and every step emits all K drafts plus the bonus."""
    build, verified, tiny_drafts = SELF_DRAFT[name]
    decoder = Decoder(build(target, sampling), CAPACITY)
    for seed, (prompt, expected) in enumerate(zip(prompts, reference)):
        generation = decoder.generate(prompt, NEW, seed=seed)
        for step in generation.steps:
            outer = step.pairs["draft->target"]
            assert outer.tested == outer.accepted == outer.proposed, (name, step)
            assert outer.sequence == "A" * outer.proposed and step.emitted == outer.proposed + 1, (name, step)
            if tiny_drafts:
                inner = step.pairs["tiny->draft"]
                assert inner.proposed == inner.tested == inner.accepted == tiny_drafts, (name, step)
            assert outer.proposed == verified, (name, step)
        report = generation.acceptance()
        assert report["draft->target"]["alpha"] == 1.0
        if sampling.greedy:
            assert generation.tokens == expected, name
        assert report["tokens_per_step"]["mean"] == verified + 1


def test_forward_columns_equals_the_full_head_at_those_ids():
    """``forward_columns(ids)`` (the filtered Draft's m-column head) gives the full head's logits at ``ids`` and
    writes the same cache, for the toy model (a separate head) and the repository's Transformer (tied embedding;
    float32 and int8, the Draft's formats), on a two-token forward after six cached tokens (a filtered Draft's
    first forward of a step)."""
    ids = jnp.asarray([5, 0, 63, 17, 17, 40, 2], jnp.int32)  # unsorted, a repeat, both ends of the vocabulary
    tokens = jnp.asarray([random_prompts(1, VOCAB, seed=2, min_len=8, max_len=8)[0]], jnp.int32)
    models = [toy_transformer("cols-toy", vocab=VOCAB, max_len=16, seed=1),
              *varied_transformer("cols", vocab=VOCAB, max_len=16, seed=2, weights=(None, "int8"), d_model=32,
                                  n_heads=4, n_kv_heads=2)]
    for model in models:
        forward = jax.jit(model.forward)
        _, cache = forward(model.params, model.init_cache(1, 16), tokens[:, :6])
        full, full_cache = forward(model.params, cache, tokens[:, 6:])
        part, part_cache = jax.jit(model.forward_columns)(model.params, cache, tokens[:, 6:], ids)
        assert part.shape == (1, 2, ids.size)
        np.testing.assert_allclose(np.asarray(part, np.float32), np.asarray(full, np.float32)[..., np.asarray(ids)],
                                   rtol=1e-5, atol=1e-5, err_msg=model.name)
        for a, b in zip(jax.tree_util.tree_leaves(full_cache), jax.tree_util.tree_leaves(part_cache)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert len(set(np.argmax(np.asarray(full, np.float32)[0], -1).tolist() + [-1])) >= 2  # not all-equal rows


def test_the_greedy_reference_is_plain_argmax_over_full_forwards(target):
    """The reference itself: for one prompt, each token is the argmax of a standalone full forward (no batching,
    no padding) over the prompt and the tokens before it."""
    prompt, new = [7, 3, 9], 6
    expected = greedy_reference(target, [prompt, [1, 2, 3, 4, 5, 6, 7, 8]], new)[0]
    forward = jax.jit(target.forward)  # one compile per length
    sequence = list(prompt)
    for _ in range(new):
        logits, _ = forward(target.params, target.init_cache(1, len(sequence)), jnp.asarray([sequence], jnp.int32))
        sequence.append(int(jnp.argmax(logits[0, -1])))
    assert tuple(sequence[len(prompt):]) == expected


def test_bf16_target_strategies_are_identical_on_a_model_whose_outputs_vary():
    """The bfloat16 Target on weights whose greedy outputs depend on the context (several distinct tokens per
    prompt): speculative decoding and the vertical cascade give its autoregressive tokens. (tests/test_runtime_models.py
    runs every strategy on 20 prompts, on the training init.)"""
    capacity, new = 40, 16
    fp32, bf16 = varied_transformer("var", vocab=128, max_len=capacity, seed=1, weights=(None, "bfloat16"),
                                    d_model=32, n_heads=4, n_kv_heads=2, d_ff=64)
    draft = perturbed(fp32, "var-draft", noise=0.1, seed=5)
    tiny = toy_projection("var-tiny", vocab=128, max_len=capacity, seed=6)
    prompts = random_prompts(3, 128, seed=13)
    reference = Decoder(Autoregressive(bf16), capacity)
    expected = [reference.generate(p, new).tokens for p in prompts]
    assert all(len(set(tokens)) >= 5 for tokens in expected), expected
    knobs = StrategyKnobs(k=3, k_tiny=2)
    for name in ("speculative", "vertical"):  # the two ways the Target verifies (all K slots; `valid` slots)
        decoder = Decoder(build_strategy(name, tiny, draft, bf16, GREEDY, knobs), capacity)
        assert [decoder.generate(p, new).tokens for p in prompts] == expected, name


def _trio_dir():
    from speccascade.runtime.trio import default_trio_dir

    return default_trio_dir()


# Decoded (greedy, K = 4) Draft acceptance must lie within this band around the trio's held-out greedy agreement
# (teacher-forced argmax agreement on held-out windows, recorded in the trio's manifest at training time).
# Decoded text is easier than held-out text (the Target continues in its own style), so the band is wider above.
TRIO_BAND = (-0.15, 0.25)


@pytest.mark.skipif(not (_trio_dir() / "manifest.json").is_file(),
                    reason=f"no trained trio at {_trio_dir()} (`speccascade runtime train`, about 20 minutes); "
                           "the acceptance band needs the trained models")
def test_trained_trio_decoded_acceptance_is_within_a_band_of_its_heldout_acceptance():
    from speccascade.runtime.bench import DEFAULT_PROMPTS
    from speccascade.runtime.trio import load_trio

    trio = load_trio(_trio_dir(), max_len=256)
    heldout = trio.metadata["evaluation"]["acceptance"]["draft->target"]["greedy"]
    decoder = Decoder(Speculative(trio.draft, trio.target, k=4), 256)
    steps = []
    for text in DEFAULT_PROMPTS:
        prompt = [trio.tokenizer.eot_id] + trio.tokenizer.encode(text)
        steps += decoder.generate(prompt, 96).steps
    from speccascade.runtime.decoding import summarize_acceptance

    alpha = summarize_acceptance(steps)["draft->target"]["alpha"]
    low, high = heldout + TRIO_BAND[0], heldout + TRIO_BAND[1]
    assert low <= alpha <= high, f"decoded alpha {alpha:.3f}, held-out greedy acceptance {heldout:.3f}"
