"""Decoding strategies: greedy token identity with an independent greedy reference, static shapes, statistics,
errors. (Sampled laws: tests/test_decoding_stats.py; acceptance and self-drafts: tests/test_lossless.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from speccascade.errors import InputError
from speccascade.runtime.api import with_position
from speccascade.runtime.decoding import (
    Autoregressive, Decoder, FilteredCascade, SamplingConfig, Speculative, VerticalBudget, VerticalCascade,
    build_strategy,
    to_probs, verify_chain,
)

from lossless_harness import greedy_reference
from runtime_fixtures import random_prompts, toy_trio

VOCAB, CAPACITY, MAX_NEW = 64, 96, 24


@pytest.fixture(scope="module")
def trio():
    return toy_trio(vocab=VOCAB, max_len=CAPACITY)


@pytest.fixture(scope="module")
def prompts():
    return random_prompts(20, VOCAB, seed=7)


@pytest.fixture(scope="module")
def reference(trio, prompts):
    """The expected greedy tokens from the independent reference (a plain argmax loop over full forwards, none of
    the runtime's decoding code), and the runtime's own autoregressive decoder."""
    expected = greedy_reference(trio[2], prompts, MAX_NEW)
    return expected, Decoder(Autoregressive(trio[2]), CAPACITY)


@pytest.fixture(scope="module")
def decoders(trio):
    """One decoder per configuration, shared by the tests (each compiles its step once)."""
    tiny, draft, target = trio
    return {"speculative": Decoder(Speculative(draft, target, k=4), CAPACITY),
            "speculative-k1": Decoder(Speculative(draft, target, k=1), CAPACITY),
            "vertical": Decoder(VerticalCascade(tiny, draft, target, k=3, k_tiny=3), CAPACITY),
            "vertical-small": Decoder(VerticalCascade(tiny, draft, target, k=2, k_tiny=1), CAPACITY),
            "budget": Decoder(VerticalBudget(tiny, draft, target, k=5, k_tiny=3), CAPACITY),
            "budget-small": Decoder(VerticalBudget(tiny, draft, target, k=2, k_tiny=1), CAPACITY),
            "filtered": Decoder(FilteredCascade(tiny, draft, target, k=4, filter_width=8), CAPACITY),
            "filtered-m1": Decoder(FilteredCascade(tiny, draft, target, k=3, filter_width=1), CAPACITY),
            "filtered-masked": Decoder(FilteredCascade(tiny, draft, target, k=4, filter_width=8, draft_columns=False),
                                       CAPACITY)}


def test_cached_decode_equals_full_forward(trio):
    target = trio[2]
    tokens = jnp.asarray([random_prompts(1, VOCAB, seed=3, min_len=12, max_len=12)[0]], jnp.int32)
    forward = jax.jit(target.forward)
    full, _ = forward(target.params, target.init_cache(1, CAPACITY), tokens)
    cache = target.init_cache(1, CAPACITY)
    _, cache = forward(target.params, cache, tokens[:, :5])
    steps = []
    for index in range(5, 12):
        logits, cache = forward(target.params, cache, tokens[:, index:index + 1])
        steps.append(logits[:, 0])
    np.testing.assert_allclose(np.stack(steps, 1), np.asarray(full[:, 5:]), atol=1e-4)
    # rollback: moving the pointer back and re-feeding reproduces the same logits
    again, _ = forward(target.params, with_position(cache, 9), tokens[:, 9:12])
    np.testing.assert_allclose(np.asarray(again), np.asarray(full[:, 9:12]), atol=1e-4)


def test_every_strategy_is_token_identical_to_greedy_autoregressive(decoders, prompts, reference):
    expected, autoregressive = reference
    assert len(prompts) >= 20
    # the outputs vary with the context (a model that repeats one token would make the comparison weak)
    assert all(len(set(tokens)) >= 4 for tokens in expected), expected
    assert len({tokens[:4] for tokens in expected}) >= 15
    for label, decoder in {"autoregressive": autoregressive, **decoders}.items():
        for prompt, tokens in zip(prompts, expected):
            generation = decoder.generate(prompt, MAX_NEW)
            assert generation.tokens == tokens, (label, prompt)
        # static shapes: 20 prompts of 2..12 tokens and every step ran on one compiled step
        assert decoder.compilations() == 1, label


def test_autoregressive_never_recompiles(reference, prompts):
    _, decoder = reference
    for prompt in prompts[:3]:
        decoder.generate(prompt, 4)
    assert decoder.compilations() == 1


def test_staged_run_matches_fused_and_times_every_model(decoders, prompts, reference):
    expected, _ = reference
    decoder = decoders["vertical-small"]
    generation = decoder.generate(prompts[0], MAX_NEW, staged=True)
    assert generation.tokens == expected[0]
    for step in generation.steps:
        assert set(step.stage_ms) == {"tiny", "draft", "target"}
        assert all(ms > 0 for ms in step.stage_ms.values())


def test_step_statistics_are_consistent(decoders, prompts):
    decoder = decoders["budget"]
    generations = [decoder.generate(prompt, 60) for prompt in prompts[:2]]
    saw_reject = saw_all = False
    for step in generations[0].steps + generations[1].steps:
        outer, inner = step.pairs["draft->target"], step.pairs["tiny->draft"]
        assert outer.proposed == 5 and step.emitted == outer.accepted + 1
        assert outer.tested == min(outer.accepted + 1, 5) == len(outer.sequence)
        assert outer.sequence == "A" * outer.accepted + ("R" if outer.accepted < 5 else "")
        assert 0 <= outer.beta_sum <= outer.tested + 1e-5  # greedy: beta is 0 or 1 per tested position
        assert inner.accepted <= inner.tested <= inner.proposed and inner.proposed % 3 == 0
        rounds = inner.sequence.split("|")
        assert len(rounds) == inner.proposed // 3 and sum(len(r) for r in rounds) == inner.tested
        saw_reject |= outer.accepted < 5
        saw_all |= outer.accepted == 5
    assert saw_reject and saw_all  # both the corrected-token and the bonus-token paths ran
    report = generations[0].acceptance()
    assert 0 < report["draft->target"]["alpha"] < 1 and 0 < report["tiny->draft"]["alpha"] < 1


def test_fixed_review_cascade_verifies_every_delivered_token(decoders, prompts):
    """``vertical``: exactly k reviews per step; the Target is offered all delivered tokens (k .. k (k_tiny + 1))."""
    k, k_tiny = 3, 3
    saw_bonus = saw_reject = saw_short = False
    for prompt in prompts[:3]:
        for step in decoders["vertical"].generate(prompt, 40).steps:
            outer, inner = step.pairs["draft->target"], step.pairs["tiny->draft"]
            assert inner.proposed == k * k_tiny and len(inner.sequence.split("|")) == k
            delivered = inner.accepted + k  # every review adds its own token to its accepted run
            assert outer.proposed == delivered and k <= delivered <= k * (k_tiny + 1)
            assert step.emitted == outer.accepted + 1 and outer.accepted <= delivered
            assert outer.sequence == "A" * outer.accepted + ("R" if outer.accepted < delivered else "")
            saw_bonus |= outer.accepted == delivered
            saw_reject |= outer.accepted < delivered
            saw_short |= delivered < k * (k_tiny + 1)
    assert saw_bonus and saw_reject and saw_short


def test_verify_chain_with_fewer_valid_slots_is_the_shorter_chain():
    """Slots past ``valid`` are never accepted; all valid accepted -> the bonus comes from p_{valid+1}."""
    vocab = 6
    p = jax.nn.one_hot(jnp.asarray([1, 2, 3, 4, 5]), vocab)
    drafts = jnp.asarray([1, 2, 3, 4])
    q = jax.nn.one_hot(drafts, vocab)
    for config in (SamplingConfig(), SamplingConfig(greedy=False)):
        logits = p if config.greedy else jnp.log(p)
        verdict = verify_chain(jax.random.key(0), drafts, q, logits, config, jnp.asarray(2))
        assert int(verdict.accepted) == 2 and int(verdict.token) == 3 and int(verdict.proposed) == 2
        assert verdict.flags.tolist() == [1, 1, -1, -1] and int(verdict.beta_count) == 2


def test_filtered_cascade_draft_computes_only_the_top_m_columns_when_it_can(decoders):
    assert decoders["filtered"].strategy.columns and not decoders["filtered-masked"].strategy.columns
    assert decoders["filtered"].strategy.config()["draft_head"] == "8 columns"


def test_filtered_cascade_reports_topm_coverage(decoders, prompts):
    generation = decoders["filtered-masked"].generate(prompts[2], 12)
    for step in generation.steps:
        assert 0 <= step.extras["topm_coverage_sum"] <= 4 + 1e-5
    assert any(step.extras["topm_coverage_sum"] < 4 for step in generation.steps)  # the filter binds sometimes


def test_to_probs_transforms():
    logits = jnp.asarray([[2.0, 1.0, 0.5, 0.0, -1.0]])
    greedy = to_probs(logits, SamplingConfig())
    assert greedy.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]
    top2 = to_probs(logits, SamplingConfig(greedy=False, top_k=2))
    assert np.count_nonzero(np.asarray(top2)) == 2 and abs(float(top2.sum()) - 1) < 1e-6
    plain = np.asarray(to_probs(logits, SamplingConfig(greedy=False)))[0]
    nucleus = np.asarray(to_probs(logits, SamplingConfig(greedy=False, top_p=0.8)))[0]
    kept = np.count_nonzero(nucleus)
    assert plain[:kept].sum() >= 0.8 > plain[:kept - 1].sum()
    np.testing.assert_allclose(nucleus[:kept], plain[:kept] / plain[:kept].sum(), rtol=1e-6)
    hot = np.asarray(to_probs(logits, SamplingConfig(greedy=False, temperature=0.5)))[0]
    assert hot[0] > plain[0]


def test_verify_chain_under_greedy_accepts_exactly_the_matching_prefix():
    vocab = 6
    p = jax.nn.one_hot(jnp.asarray([1, 2, 3, 4]), vocab)
    q = jax.nn.one_hot(jnp.asarray([1, 2, 5]), vocab)
    verdict = verify_chain(jax.random.key(0), jnp.asarray([1, 2, 5]), q, p, SamplingConfig())
    assert int(verdict.accepted) == 2 and int(verdict.token) == 3
    assert verdict.flags.tolist() == [1, 1, 0] and float(verdict.beta_sum) == 2.0
    q_all = jax.nn.one_hot(jnp.asarray([1, 2, 3]), vocab)
    verdict = verify_chain(jax.random.key(0), jnp.asarray([1, 2, 3]), q_all, p, SamplingConfig())
    assert int(verdict.accepted) == 3 and int(verdict.token) == 4  # bonus from p_{K+1}
    # the sampled rule with point masses gives the same verdicts
    sampled = SamplingConfig(greedy=False)
    verdict = verify_chain(jax.random.key(0), jnp.asarray([1, 2, 5]), q, jnp.log(p), sampled)
    assert int(verdict.accepted) == 2 and int(verdict.token) == 3


def test_bad_input_is_an_input_error(trio, decoders):
    tiny, draft, target = trio
    decoder = decoders["speculative"]
    with pytest.raises(InputError, match="at least 2 tokens"):
        decoder.generate([5], 4)
    with pytest.raises(InputError, match="capacity"):
        decoder.generate([1, 2, 3], CAPACITY)
    with pytest.raises(InputError, match="token ids"):
        decoder.generate([1, VOCAB], 4)
    with pytest.raises(InputError, match="capacity"):
        Decoder(Autoregressive(target), CAPACITY + 1)
    with pytest.raises(InputError, match="unknown strategy"):
        build_strategy("no-such-strategy", tiny, draft, target)
    with pytest.raises(InputError, match="runtime does not implement strategy 'horizontal'"):
        build_strategy("horizontal", tiny, draft, target)
    with pytest.raises(InputError, match="strategy 'heads' needs a heads model"):
        build_strategy("medusa", tiny, draft, target)
    with pytest.raises(InputError, match="needs a tiny model"):
        build_strategy("cascade", None, draft, target)
    with pytest.raises(InputError, match="k must be"):
        Speculative(draft, target, k=0)
    with pytest.raises(InputError, match="temperature"):
        SamplingConfig(greedy=False, temperature=0.0)
