"""Acceptance maximum likelihood from accept/reject sequences: counts, estimators, likelihood-ratio tests, bootstrap.

Pure functions over numbers (no traces, no files); :mod:`.acceptance` feeds them the steps of runtime traces.

**Data.** A *run* is the steps of one generation in order; a step holds one or more *rounds* (a verification of
consecutive drafts: one per step for ``draft->target``, one per Draft review for ``tiny->draft``); a round is a
string of ``A`` (accepted) and ``R`` (rejected). Acceptance is a prefix, so a round is ``A^j R`` (a rejection at
position j + 1) or ``A^n`` (all n drafts accepted: the round was cut at the draft length, a censored observation).
The *judged* tokens of a run, in order, are the concatenated characters.

**Geometric (i.i.d.) model** (Leviathan et al. 2023): every judged token is accepted with probability alpha, so a
round's likelihood is alpha^(#A) (1 - alpha)^(#R) whether it ends in R or is censored, and the MLE is closed form:
alpha = A / (A + R) over all judged tokens.

**Per-position model**: position i of a round (i = 1 is the first draft) is accepted with alpha_i given that it is
reached: the likelihood factorizes by position and alpha_i = A_i / T_i (T_i = rounds reaching position i).

**Markov model** (lag 1, :class:`speccascade.simulate.Markov`): the chain runs over the judged tokens of a run,
across rounds and steps (the simulator's persistent chain: a step after a rejection starts in the hard state);
p11 = P(A | previous A), p01 = P(A | previous R), MLE p11 = n_AA / (n_AA + n_AR), p01 = n_RA / (n_RA + n_RR)
(conditional on each run's first token), stationary mean alpha = p01 / (1 - p11 + p01), rho = p11 - p01.

**Tests** (Wilks: 2 (log L1 - log L0) ~ chi2(df) under the smaller model):

- positional vs constant alpha over positions 1..P (each with enough trials), df P - 1;
- Markov vs i.i.d. over the tokens that have a predecessor, df 1.

Position and memory are confounded: inside a round every token after the first follows an accepted one, so only
round starts see both previous states. Two controlled tests separate them: *Markov given position* compares the
round starts after A with those after R (df 1), *position given state* compares positions among the tokens that
follow an A (df P - 1). A process with memory but no position effect fails only the second; one with position
effects but no memory fails only the first.

**Bootstrap**: the steps of each run are cut into blocks of consecutive steps (a moving chain carries state across
steps, so single steps are not independent; :func:`block_length` sizes them from the run's length and the fitted
chain's memory), blocks are resampled with replacement (Efron and Tibshirani 1993;
Kuensch 1989 for blocks), every estimator is recomputed from the resampled counts, and the intervals are the
percentiles at (1 - level) / 2 and (1 + level) / 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import xlogy

# Column layout of a count row (one per step): totals, transitions, round starts after A, then per position.
A, R, AA, AR, RA, RR, START_A_ACC, START_A_REJ = range(8)
FIXED = 8


def columns(positions: int) -> int:
    return FIXED + 2 * positions


def trials_col(i: int) -> int:
    """Column of T_i (rounds reaching position i + 1)."""
    return FIXED + 2 * i


def accepts_col(i: int) -> int:
    return FIXED + 2 * i + 1


def run_counts(steps: list[list[str]], positions: int) -> np.ndarray:
    """Counts of one run: one row per step (see the column layout); ``steps[s]`` is step s's rounds. The chain's
    previous token is carried across rounds and steps; the run's first token has no predecessor."""
    out = np.zeros((len(steps), columns(positions)), dtype=np.int64)
    previous = None  # 1 accepted, 0 rejected, None: no judged token yet in this run
    for row, rounds in zip(out, steps):
        for chars in rounds:
            for position, mark in enumerate(chars):
                accepted = mark == "A"
                row[A if accepted else R] += 1
                row[trials_col(position)] += 1
                row[accepts_col(position)] += accepted
                if previous is not None:
                    row[(AA if accepted else AR) if previous else (RA if accepted else RR)] += 1
                    if position == 0 and previous:
                        row[START_A_ACC if accepted else START_A_REJ] += 1
                previous = accepted
    return out


def block_sums(counts: np.ndarray, block: int) -> np.ndarray:
    """Rows summed over consecutive blocks of ``block`` steps (the last block may be shorter)."""
    starts = np.arange(0, len(counts), block)
    return np.add.reduceat(counts, starts, axis=0) if len(counts) else counts


def block_length(steps: int, correlation_steps: float = 1.0) -> int:
    """Steps per bootstrap block for a run of ``steps`` steps: round(max(2 steps^(1/3), 10 correlation_steps)),
    between 1 and ``steps``. The n^(1/3) rate is the usual one for block-bootstrap variances (Hall, Horowitz and
    Jing 1995); a block must also outlast the chain's memory, ``correlation_steps`` (:func:`correlation_steps`),
    or the intervals come out short (simulated: rho = 0.8 with 14-step blocks gave a spread 11% short)."""
    length = max(2.0 * steps ** (1.0 / 3.0), 10.0 * correlation_steps)
    return int(min(max(1, round(length)), max(steps, 1)))


def correlation_steps(totals: np.ndarray, steps: int) -> float:
    """The lag-1 chain's integrated autocorrelation time, tau = (1 + rho) / (1 - rho) judged tokens for rho >= 0
    (1 for rho <= 0, or when no rho is estimable), in steps: tau / (judged tokens per step)."""
    rho = float(markov_of(totals)["rho"])
    rho = 0.0 if not np.isfinite(rho) else min(max(rho, 0.0), 0.999)
    per_step = (totals[A] + totals[R]) / max(steps, 1)
    return (1.0 + rho) / (1.0 - rho) / max(per_step, 1.0)


def _ratio(numerator, denominator):
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def alpha_of(sums: np.ndarray) -> np.ndarray:
    """MLE alpha = A / (A + R) of count sums (``sums[..., column]``)."""
    return _ratio(sums[..., A], sums[..., A] + sums[..., R])


def positional_of(sums: np.ndarray, positions: int) -> np.ndarray:
    """alpha_i = A_i / T_i for i = 1..positions, shape (..., positions)."""
    return np.stack([_ratio(sums[..., accepts_col(i)], sums[..., trials_col(i)]) for i in range(positions)], axis=-1)


def markov_of(sums: np.ndarray) -> dict[str, np.ndarray]:
    """p11, p01, the stationary alpha = p01 / (1 - p11 + p01) and rho = p11 - p01."""
    p11 = _ratio(sums[..., AA], sums[..., AA] + sums[..., AR])
    p01 = _ratio(sums[..., RA], sums[..., RA] + sums[..., RR])
    return {"p11": p11, "p01": p01, "alpha": _ratio(p01, 1.0 - p11 + p01), "rho": p11 - p01}


def bernoulli_loglik(successes, trials) -> float:
    """max over p of log p^s (1 - p)^(n - s) = s log(s/n) + (n - s) log(1 - s/n), summed (0 log 0 = 0)."""
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    failures = trials - successes
    safe = np.where(trials > 0, trials, 1.0)
    return float(np.sum(xlogy(successes, successes / safe) + xlogy(failures, failures / safe)))


def lrt_p_value(groups: list[tuple[float, float]]) -> float | None:
    """LRT that the groups' (successes, trials) share one probability: 2 (sum log L_g - log L_pooled) ~
    chi2(G - 1) over the groups with trials; None with fewer than 2 such groups."""
    groups = [(s, n) for s, n in groups if n > 0]
    if len(groups) < 2:
        return None
    successes, trials = np.array(groups, float).T
    statistic = 2.0 * (bernoulli_loglik(successes, trials) - bernoulli_loglik(successes.sum(), trials.sum()))
    return float(stats.chi2.sf(max(statistic, 0.0), len(groups) - 1))


def supported_positions(totals: np.ndarray, positions: int, min_trials: int) -> int:
    """Leading positions whose trials all reach ``min_trials`` (trials never grow with the position)."""
    count = 0
    while count < positions and totals[trials_col(count)] >= min_trials:
        count += 1
    return count


@dataclass(frozen=True)
class Tests:
    """p-values of the four likelihood-ratio tests (None where the data cannot test)."""

    positional: float | None
    positional_given_state: float | None
    markov: float | None
    markov_given_position: float | None
    positions: int      # positions tested (each with enough trials)


def lrt_tests(totals: np.ndarray, positions: int, min_trials: int, min_transitions: int) -> Tests:
    """The tests on the count totals of a group (module docstring); ``min_trials`` per position and
    ``min_transitions`` from each previous state make a test possible."""
    used = supported_positions(totals, positions, min_trials)
    positional = given_state = None
    if used >= 2:
        positional = lrt_p_value([(totals[accepts_col(i)], totals[trials_col(i)]) for i in range(used)])
        after_a = [(totals[START_A_ACC], totals[START_A_ACC] + totals[START_A_REJ])]
        after_a += [(totals[accepts_col(i)], totals[trials_col(i)]) for i in range(1, used)]
        given_state = lrt_p_value(after_a)
    markov = given_position = None
    if min(totals[AA] + totals[AR], totals[RA] + totals[RR]) >= min_transitions:
        markov = lrt_p_value([(totals[AA], totals[AA] + totals[AR]), (totals[RA], totals[RA] + totals[RR])])
        given_position = lrt_p_value([(totals[START_A_ACC], totals[START_A_ACC] + totals[START_A_REJ]),
                                      (totals[RA], totals[RA] + totals[RR])])
    return Tests(positional, given_state, markov, given_position, used)


def retained(p_value: float | None, controlled: float | None, significance: float) -> bool:
    """A richer model is kept when its test rejects the simpler one and its controlled test (when testable)
    does too."""
    return p_value is not None and p_value < significance and (controlled is None or controlled < significance)


def bootstrap_sums(blocks: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Count sums of ``resamples`` bootstrap samples: each draws len(blocks) blocks with replacement
    (multinomial weights times the block sums), shape (resamples, columns)."""
    weights = rng.multinomial(len(blocks), np.full(len(blocks), 1.0 / len(blocks)), size=resamples)
    return weights.astype(float) @ blocks.astype(float)


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float] | None:
    """(low, high) percentiles of bootstrap samples (NaN samples, from resamples lacking the data, ignored)."""
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    low, high = np.quantile(samples, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def exact_interval(accepted: int, judged: int, level: float) -> tuple[float, float]:
    """Clopper-Pearson interval for accepted of judged (used where the bootstrap has no spread: no rejection, or
    no acceptance, in the data)."""
    tail = (1.0 - level) / 2.0
    low = 0.0 if accepted == 0 else float(stats.beta.ppf(tail, accepted, judged - accepted + 1))
    high = 1.0 if accepted == judged else float(stats.beta.ppf(1.0 - tail, accepted + 1, judged - accepted))
    return low, high
