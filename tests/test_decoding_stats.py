"""Sampled strategies follow the target's distribution exactly (chi-square against the exact joint law).

Small vocabulary (8), a fixed prompt, 10,000 independent runs (vmapped over PRNG keys, two steps each, fixed
seed): the first two emitted tokens have 64 outcomes whose exact probabilities p(t1) p(t2 | t1) come from target
forwards. Cells expected below 5 are pooled. A check that the test has power: samples of the draft model alone
(a different distribution) are rejected by the same test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from speccascade.runtime.decoding import (
    Autoregressive, Decoder, FilteredCascade, SamplingConfig, Speculative, VerticalBudget, VerticalCascade, to_probs,
    verify_chain,
)

from runtime_fixtures import perturbed, toy_transformer

VOCAB, CAPACITY, RUNS, PROMPT = 8, 40, 10_000, [3, 1, 4]
PLAIN = SamplingConfig(greedy=False)
SHAPED = SamplingConfig(greedy=False, temperature=0.7, top_k=6, top_p=0.9)
HOT = SamplingConfig(greedy=False, temperature=1.3, top_p=0.95)


@pytest.fixture(scope="module")
def trio():
    target = toy_transformer("stat-target", vocab=VOCAB, d_model=16, layers=1, heads=2, max_len=CAPACITY, seed=5,
                             logit_scale=2.0)
    draft = perturbed(target, "stat-draft", noise=0.25, seed=6)
    tiny = perturbed(draft, "stat-tiny", noise=0.25, seed=7)
    return tiny, draft, target


def exact_first_two(target, config: SamplingConfig) -> np.ndarray:
    """Exact joint probability of the first two tokens after PROMPT, float64[V, V]."""
    forward = jax.jit(target.forward)
    prompt = jnp.asarray([PROMPT], jnp.int32)
    logits, _ = forward(target.params, target.init_cache(1, CAPACITY), prompt)
    first = np.asarray(to_probs(logits[0, -1], config), np.float64)
    extended = jnp.concatenate([jnp.tile(prompt, (VOCAB, 1)), jnp.arange(VOCAB)[:, None]], axis=1)
    logits, _ = forward(target.params, target.init_cache(VOCAB, CAPACITY), extended)
    second = np.asarray(to_probs(logits[:, -1], config), np.float64)
    return first[:, None] * second


def sample_first_two(strategy, seed: int = 0) -> np.ndarray:
    """Counts of the first two emitted tokens over RUNS independent runs, int[V, V]."""
    decoder = Decoder(strategy, CAPACITY, donate=False)
    state = decoder.start(PROMPT, seed=0)

    def run(params, key):
        current = {**state, "key": key}
        current = decoder.step_fn(params, current)
        current = decoder.step_fn(params, current)  # every step emits >= 1 token
        return jax.lax.dynamic_slice_in_dim(current["seq"], len(PROMPT), 2)

    keys = jax.random.split(jax.random.key(seed), RUNS)
    pairs = np.asarray(jax.jit(jax.vmap(run, in_axes=(None, 0)))(strategy.params, keys))
    counts = np.zeros((VOCAB, VOCAB), np.int64)
    np.add.at(counts, (pairs[:, 0], pairs[:, 1]), 1)
    return counts


def chi_square_pvalue(counts: np.ndarray, exact: np.ndarray) -> float:
    observed, expected = counts.ravel(), exact.ravel() * counts.sum()
    small = expected < 5
    assert observed[expected == 0].sum() == 0, "a token with zero target probability was emitted"
    observed = np.append(observed[~small], observed[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    expected = expected[keep] * observed[keep].sum() / expected[keep].sum()  # float32 probabilities sum to 1 +- 1e-7
    return float(stats.chisquare(observed[keep], expected).pvalue)


CASES = {
    "speculative": lambda tiny, draft, target, config: Speculative(draft, target, k=3, sampling=config),
    "vertical": lambda tiny, draft, target, config: VerticalCascade(tiny, draft, target, 2, 2, sampling=config),
    "vertical-budget": lambda tiny, draft, target, config: VerticalBudget(tiny, draft, target, 3, 2, sampling=config),
    "filtered": lambda tiny, draft, target, config: FilteredCascade(tiny, draft, target, k=3, filter_width=3,
                                                                     sampling=config),
    "filtered-masked": lambda tiny, draft, target, config: FilteredCascade(tiny, draft, target, k=3, filter_width=3,
                                                                            sampling=config, draft_columns=False),
}


@pytest.mark.parametrize("name,config", [("speculative", PLAIN), ("vertical", SHAPED), ("vertical-budget", SHAPED), ("filtered", HOT),
                                         ("filtered-masked", SHAPED)])
def test_sampled_strategy_follows_the_target_distribution(trio, name, config):
    strategy = CASES[name](*trio, config)
    pvalue = chi_square_pvalue(sample_first_two(strategy), exact_first_two(trio[2], config))
    assert pvalue > 1e-3, (name, config.describe(), pvalue)


def test_the_chi_square_test_rejects_a_different_distribution(trio):
    tiny, draft, target = trio
    exact = exact_first_two(target, PLAIN)
    draft_exact = exact_first_two(draft, PLAIN)
    assert 0.5 * np.abs(exact - draft_exact).sum() > 0.05  # the draft really differs
    pvalue = chi_square_pvalue(sample_first_two(Autoregressive(draft, PLAIN)), exact)
    assert pvalue < 1e-6


def test_verify_chain_output_distribution_is_exact():
    """One draft position, V = 5: P(emitted token) must equal p_1 whatever q_1 is (enumerated over many keys)."""
    p = jnp.asarray([[0.5, 0.2, 0.2, 0.1, 0.0], [0.1, 0.1, 0.1, 0.1, 0.6]])
    q = jnp.asarray([[0.1, 0.6, 0.1, 0.1, 0.1]])
    runs = 40_000

    def once(key):
        draw_key, verify_key = jax.random.split(key)
        draft = jax.random.categorical(draw_key, jnp.log(q[0]))[None].astype(jnp.int32)
        verdict = verify_chain(verify_key, draft, q, jnp.log(p), PLAIN)
        return jnp.where(verdict.accepted == 1, draft[0], verdict.token)

    emitted = np.asarray(jax.jit(jax.vmap(once))(jax.random.split(jax.random.key(1), runs)))
    counts = np.bincount(emitted, minlength=5)
    assert counts[4] == 0
    expected = np.asarray(p[0, :4], np.float64)
    assert stats.chisquare(counts[:4], expected / expected.sum() * runs).pvalue > 1e-3
