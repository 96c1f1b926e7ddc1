"""Sampled strategies emit exactly the Target's distribution: the joint law of the first K + 2 emitted tokens.

Every strategy runs through the shared harness (tests/lossless_harness.py): the exact law of the first n tokens
after a fixed prompt, from full Target forwards alone, against 10,000 vmapped runs with fixed keys, by chi-square
(the whole joint and every adjacent pair, Bonferroni). Vocabulary 8, so every outcome is enumerated.

The cases are chosen so that the paths a sampled-only bug would hide in are inside the tested window, and each
asserts (from the runs' own step statistics) that its path was really taken:
* chain positions >= 3, the bonus token (every draft accepted, drawn from p_{K+1} through the zero q row) and the
  step after an all-accepted step: n = K + 2 tokens; the bonus forced (K = 1 with the Target as its own Draft);
* the vertical cascade's second Draft review (its q rows written at the offset the first review left), every
  delivered token accepted (the Target as Draft and Tiny: the bonus after k (k_tiny + 1) slots), and the budget
  variant's second and third reviews;
* the filtered cascade with the Draft's m-column head and with the full masked head;
* temperature, top-k and top-p transforms.

Power: the same harness rejects, at p < 1e-6, each deliberately broken verifier of tests/broken_verifiers.py
(residual = p, bonus from p_K, acceptance ratio inverted, accept-always, q row off by one) swapped in for one
test, with 5,000 runs (measured: p below 1e-400 for each; p = 0 where a token of Target probability 0 came out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from speccascade.runtime.decoding import (
    Decoder, FilteredCascade, SamplingConfig, Speculative, VerticalBudget, VerticalCascade,
    verify_chain,
)

from broken_verifiers import broken
from lossless_harness import chi_square_pvalue, exact_joint, law_pvalue, sample_joint
from runtime_fixtures import perturbed, toy_transformer

VOCAB, CAPACITY, PROMPT = 8, 20, [3, 1, 4]  # capacity: prompt + 6 + the largest lookahead (9)
RUNS, BROKEN_RUNS = 10_000, 5_000
PASS, REJECT = 1e-3, 1e-6  # a real strategy's p-value must exceed PASS; a broken one's must fall below REJECT
PLAIN = SamplingConfig(greedy=False)
SHAPED = SamplingConfig(greedy=False, temperature=0.7, top_k=6, top_p=0.9)
HOT = SamplingConfig(greedy=False, temperature=1.3, top_p=0.95)
TOP_K = SamplingConfig(greedy=False, top_k=5)
MAX_REVIEWS = 4


@pytest.fixture(scope="module")
def trio():
    target = toy_transformer("stat-target", vocab=VOCAB, d_model=16, layers=1, heads=2, max_len=CAPACITY, seed=5,
                             logit_scale=2.0)
    draft = perturbed(target, "stat-draft", noise=0.25, seed=6)
    tiny = perturbed(draft, "stat-tiny", noise=0.6, seed=7)  # accepted often enough, rejected often enough
    return tiny, draft, target


def observe(state: dict) -> jax.Array:
    """Per step: [1, every draft the Target saw accepted (the bonus path), Draft reviews == 1 .. MAX_REVIEWS]."""
    outer = state["stats"]["pairs"]["draft->target"]
    rounds = state.get("rounds", jnp.zeros((), jnp.int32))
    reviews = jnp.arange(1, MAX_REVIEWS + 1) == rounds
    return jnp.concatenate([jnp.ones((1,), jnp.int32), (outer["accepted"] == outer["proposed"])[None],
                            reviews]).astype(jnp.int32)


@dataclass(frozen=True)
class Case:
    build: Callable  # (tiny, draft, target, config) -> strategy
    config: SamplingConfig
    n: int  # tokens in the tested window: K + 2 (capped at 6: 8^6 outcomes)
    bonus_share: float = 0.0  # at least this share of steps must take the bonus path (every draft accepted)
    reviews: tuple[int, ...] = ()  # Draft review counts that must occur in some steps
    models: str = "trio"  # "self": the Target is also the Draft and the Tiny


CASES = {
    # K = 3: positions 1..3 drafted, the bonus at 4, then the next step's first token (drafter after a full accept)
    "speculative": Case(lambda t, d, T, c: Speculative(d, T, k=3, sampling=c), PLAIN, 5, bonus_share=0.1),
    # K = 1 and the Target as its own Draft: every draft is accepted, every step ends with a bonus token
    "speculative-bonus": Case(lambda t, d, T, c: Speculative(T, T, k=1, sampling=c), SHAPED, 3, bonus_share=0.99,
                              models="self"),
    # k = 2 fixed reviews of 2 Tiny drafts: the second review's tokens and q rows, 2..6 tokens verified per step
    "vertical": Case(lambda t, d, T, c: VerticalCascade(t, d, T, k=2, k_tiny=2, sampling=c), SHAPED, 6,
                     bonus_share=0.05, reviews=(2,)),
    # the Target as Draft and Tiny: all k (k_tiny + 1) = 4 delivered tokens accepted, the bonus the 5th, every step
    "vertical-bonus": Case(lambda t, d, T, c: VerticalCascade(T, T, T, k=2, k_tiny=1, sampling=c), HOT, 6,
                           bonus_share=0.99, reviews=(2,), models="self"),
    # reviews until 3 tokens are delivered (1 or 2 per review): two or three reviews per step
    "vertical-budget": Case(lambda t, d, T, c: VerticalBudget(t, d, T, k=3, k_tiny=1, sampling=c), TOP_K, 5,
                            bonus_share=0.05, reviews=(2, 3)),
    "filtered": Case(lambda t, d, T, c: FilteredCascade(t, d, T, k=3, filter_width=3, sampling=c), HOT, 5,
                     bonus_share=0.05),
    "filtered-masked": Case(lambda t, d, T, c: FilteredCascade(t, d, T, k=3, filter_width=3, sampling=c,
                                                               draft_columns=False), SHAPED, 5, bonus_share=0.05),
}

_EXACT: dict = {}


def exact_law(target, case: Case) -> np.ndarray:
    key = (case.n, case.config)
    if key not in _EXACT:
        _EXACT[key] = exact_joint(target, PROMPT, case.n, case.config)
    return _EXACT[key]


def run_case(trio, name: str, runs: int = RUNS):
    case = CASES[name]
    tiny, draft, target = trio
    strategy = case.build(tiny, draft, target, case.config)
    samples, seen = sample_joint(Decoder(strategy, CAPACITY, donate=False), PROMPT, case.n, runs, observe=observe)
    return law_pvalue(samples, exact_law(target, case), VOCAB), seen


@pytest.mark.parametrize("name", list(CASES))
def test_sampled_strategy_follows_the_target_law(trio, name):
    case = CASES[name]
    result, seen = run_case(trio, name)
    assert result.pvalue > PASS, (name, case.config.describe(), str(result))
    steps, bonus, reviews = seen[0], seen[1], seen[2:]
    assert bonus >= case.bonus_share * steps, f"{name}: the bonus path ran in {bonus} of {steps} steps"
    for count in case.reviews:
        assert reviews[count - 1] > 0.01 * steps, f"{name}: no step ran {count} reviews ({reviews})"


# (mistake, case, where the broken verifier goes: "target" = the final verification, "draft" = the cascades' Draft
# reviews): each mistake once, spread over the strategies and both levels of the cascade
BROKEN = [
    ("residual-is-p", "speculative", ("target",)),
    ("bonus-from-p_K", "speculative-bonus", ("target",)),
    ("ratio-inverted", "vertical-budget", ("draft",)),
    ("accept-always", "filtered", ("target",)),
    ("q-row-off-by-one", "vertical", ("target",)),
]


@pytest.mark.parametrize("mistake,name,where", BROKEN, ids=[f"{m}-{n}-{'+'.join(w)}" for m, n, w in BROKEN])
def test_the_harness_rejects_a_broken_verifier(trio, monkeypatch, mistake, name, where):
    """POWER: each deliberately broken verifier (tests/broken_verifiers.py, NOT LOSSLESS) fails at p < 1e-6."""
    with broken(monkeypatch, mistake, where):
        result, _ = run_case(trio, name, BROKEN_RUNS)
    assert result.pvalue < REJECT, (mistake, name, str(result))


def test_verify_chain_output_distribution_is_exact_and_the_bonus_is_from_the_next_position():
    """One draft position, V = 5: the emitted token follows p_1 whatever q_1 is, and when the draft is accepted the
    bonus token follows p_2, independent of the draft (enumerated over many keys)."""
    p = jnp.asarray([[0.5, 0.2, 0.2, 0.1, 0.0], [0.1, 0.1, 0.1, 0.1, 0.6]])
    q = jnp.asarray([[0.1, 0.6, 0.1, 0.1, 0.1]])
    runs = 40_000

    def once(key):
        draw_key, verify_key = jax.random.split(key)
        draft = jax.random.categorical(draw_key, jnp.log(q[0]))[None].astype(jnp.int32)
        verdict = verify_chain(verify_key, draft, q, jnp.log(p), PLAIN)
        return jnp.where(verdict.accepted == 1, draft[0], verdict.token), verdict.accepted, verdict.token

    emitted, accepted, token = map(np.asarray, jax.jit(jax.vmap(once))(jax.random.split(jax.random.key(1), runs)))
    p1, p2 = (np.asarray(row, np.float64) / np.asarray(row, np.float64).sum() for row in p)
    assert chi_square_pvalue(np.bincount(emitted, minlength=5), p1) > PASS  # (an emitted token 4 gives p = 0)
    bonus = token[accepted == 1]
    assert 0.4 * runs < bonus.size  # P(accept) = sum min(p_1, q_1) = 0.5
    assert chi_square_pvalue(np.bincount(bonus, minlength=5), p2) > PASS
    for first in range(4):  # independent of the accepted draft token (each accepted >= 4,000 times)
        given = token[(accepted == 1) & (emitted == first)]
        assert given.size > 2000 and chi_square_pvalue(np.bincount(given, minlength=5), p2) > PASS
