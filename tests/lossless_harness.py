"""The sampled-law harness every lossless test shares: the exact law of the first n emitted tokens, computed from
full Target forwards alone, against the counts of many independent decoding runs, by chi-square.

*Exact law* (:func:`exact_joint`). For a prompt and n tokens, the probability of every token sequence t_1..t_n is
prod_j p(t_j | prompt, t_1..t_{j-1}), p = ``to_probs`` of the Target's logits. One full forward (a fresh cache,
every token at once, from position 0) over prompt + s for each of the V^(n-1) sequences s of length n - 1 gives
every conditional at once (a causal model's logits at position P - 1 + j see only the prompt and s[:j]). Nothing
of the strategy under test runs: no prefill, no cache pointer, no lag, no verifier.

*Samples* (:func:`sample_joint`). The strategy's own decoder prefills the prompt once; then ``runs`` copies of
that state, each with its own PRNG key (split from a fixed seed), run the strategy's pure step under ``jax.vmap``
until each has emitted n tokens. A step emits a random number of tokens, so the loop runs to the slowest run.

*Test* (:func:`law_pvalue`). Chi-square of the counts against the exact law on (a) the whole joint (cells
expected below 5 pooled into one) and (b) every pair of adjacent tokens (t_j, t_{j+1}) (V^2 cells, pooled the
same way), which keeps power where the joint is too sparse for its cells to hold counts; the reported p-value is
the smallest of these n tests times n (Bonferroni), so under the exact law it is a valid (conservative) p-value.
A token the Target gives probability 0 (outside its top-k / top-p) that is emitted fails at once.

Nothing here is specific to one strategy: any :class:`~speccascade.runtime.decoding.DecodingStrategy` that runs
in a :class:`~speccascade.runtime.decoding.Decoder` (the heads' tree verification too, when it lands) is tested
the same way. Broken verifiers for the power tests live in tests/broken_verifiers.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from speccascade.runtime.api import CausalLM
from speccascade.runtime.decoding import Decoder, SamplingConfig, to_probs


def _digits(codes: np.ndarray, vocab: int, n: int) -> np.ndarray:
    """int[..., n]: the base-``vocab`` digits of ``codes`` (most significant first)."""
    out = np.empty(codes.shape + (n,), np.int64)
    rest = codes.copy()
    for j in range(n - 1, -1, -1):
        out[..., j] = rest % vocab
        rest //= vocab
    return out


def encode(tokens: np.ndarray, vocab: int) -> np.ndarray:
    """Sequences int[R, n] -> cell indices int[R] (base ``vocab``, first token most significant)."""
    codes = np.zeros(tokens.shape[0], np.int64)
    for j in range(tokens.shape[1]):
        codes = codes * vocab + tokens[:, j]
    return codes


def exact_joint(target: CausalLM, prompt: list[int], n: int, config: SamplingConfig,
                batch: int = 8192) -> np.ndarray:
    """The exact probability of each of the V^n sequences of the first ``n`` tokens after ``prompt``, float64[V^n]
    indexed like :func:`encode`, from full Target forwards (see the module docstring)."""
    vocab, length = target.vocab_size, len(prompt) + n - 1
    prefixes = _digits(np.arange(vocab ** (n - 1), dtype=np.int64), vocab, n - 1)  # [V^(n-1), n-1]
    sequences = np.concatenate([np.tile(np.asarray(prompt, np.int64), (len(prefixes), 1)), prefixes], axis=1)

    @jax.jit
    def conditionals(params, tokens):
        logits, _ = target.forward(params, target.init_cache(tokens.shape[0], length), tokens)
        return to_probs(logits[:, len(prompt) - 1:], config)  # [B, n, V]: p(t_{j+1} | prompt, s[:j])

    probs = np.concatenate([np.asarray(conditionals(target.params, jnp.asarray(sequences[i:i + batch], jnp.int32)),
                                       np.float64) for i in range(0, len(sequences), batch)])
    probs /= probs.sum(-1, keepdims=True)
    rows = np.arange(len(prefixes))
    prefix_mass = np.ones(len(prefixes))
    for j in range(n - 1):
        prefix_mass *= probs[rows, j, prefixes[:, j]]
    return (prefix_mass[:, None] * probs[:, n - 1, :]).ravel()


def sample_joint(decoder: Decoder, prompt: list[int], n: int, runs: int, seed: int = 0,
                 observe: Callable[[dict], jax.Array] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``n`` tokens emitted after ``prompt`` in ``runs`` independent runs of ``decoder``'s strategy,
    int64[runs, n] (vmapped over keys split from ``seed``), and the sum over every run and step of
    ``observe(state after the step)`` (None without ``observe``): what the runs went through (reviews per step,
    all-accepted steps), so a test can assert that the paths it is about were taken."""
    strategy = decoder.strategy
    end = len(prompt) + n
    if end + strategy.lookahead > decoder.capacity:
        raise ValueError(f"capacity {decoder.capacity} < prompt + n + lookahead")
    state = decoder.start(prompt, seed=0)
    seen = (lambda s: jnp.zeros((), jnp.int32)) if observe is None else observe

    def step(params, carry):
        current, total = carry
        current = decoder.step_fn(params, current)
        return current, total + seen(current).astype(jnp.int32)

    def run(params, key):
        start = {**state, "key": key}
        carry = step(params, (start, jnp.zeros_like(seen(start), jnp.int32)))  # >= 1 step
        current, total = jax.lax.while_loop(lambda c: c[0]["length"] < end, lambda c: step(params, c), carry)
        return jax.lax.dynamic_slice_in_dim(current["seq"], len(prompt), n), total

    keys = jax.random.split(jax.random.key(seed), runs)
    tokens, totals = jax.jit(jax.vmap(run, in_axes=(None, 0)))(strategy.params, keys)
    return np.asarray(tokens, np.int64), None if observe is None else np.asarray(totals).sum(axis=0)


def chi_square_log10_pvalue(counts: np.ndarray, exact: np.ndarray) -> float:
    """log10 of the Pearson chi-square p-value of ``counts`` against the probabilities ``exact`` (same shape); cells
    expected below 5 are pooled into one. A count in a cell of probability 0 gives -inf (p = 0). The log keeps
    p-values far below 1e-308 comparable (a broken verifier's are)."""
    observed, probs = counts.ravel().astype(np.float64), exact.ravel()
    if observed[probs <= 0].sum() > 0:
        return -np.inf
    expected = probs * observed.sum()
    small = expected < 5
    observed = np.append(observed[~small], observed[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    if keep.sum() < 2:
        return 0.0
    observed, expected = observed[keep], expected[keep] * observed[keep].sum() / expected[keep].sum()
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return _chi2_log10_sf(statistic, len(observed) - 1)


def _chi2_log10_sf(statistic: float, dof: int) -> float:
    """log10 P(chi2_dof > statistic); scipy's survival function underflows to 0 below 1e-308, so the far tail is
    the regularized upper incomplete gamma Q(dof / 2, statistic / 2) in arbitrary precision (mpmath, via sympy)."""
    log_sf = float(stats.chi2.logsf(statistic, dof))
    if np.isfinite(log_sf):
        return log_sf / np.log(10)
    import mpmath

    return float(mpmath.log10(mpmath.gammainc(dof / 2, statistic / 2, mpmath.inf, regularized=True)))


def chi_square_pvalue(counts: np.ndarray, exact: np.ndarray) -> float:
    return float(10.0 ** chi_square_log10_pvalue(counts, exact))


@dataclass(frozen=True)
class LawTest:
    """The outcome of :func:`law_pvalue`: ``log10_pvalue`` (Bonferroni over the tests) and each test's own
    log10 p-value (``"joint"``, ``"t1,t2"``, ...)."""

    log10_pvalue: float
    tests: dict[str, float]
    runs: int
    n: int

    @property
    def pvalue(self) -> float:
        return float(10.0 ** self.log10_pvalue)

    def __str__(self) -> str:
        worst = min(self.tests, key=self.tests.get)
        return (f"p = {_p(self.log10_pvalue)} over {self.runs} runs of {self.n} tokens (smallest: {worst} "
                f"{_p(self.tests[worst])}; " + ", ".join(f"{k} {_p(v)}" for k, v in self.tests.items()) + ")")


def _p(log10: float) -> str:
    return "0" if log10 == -np.inf else f"{10 ** log10:.3g}" if log10 > -300 else f"1e{log10:.0f}"


def law_pvalue(samples: np.ndarray, exact: np.ndarray, vocab: int) -> LawTest:
    """Compare sequences int[R, n] with the exact law float[V^n] (see the module docstring)."""
    runs, n = samples.shape
    counts = np.bincount(encode(samples, vocab), minlength=vocab ** n)
    joint = exact.reshape((vocab,) * n)
    tests = {"joint": chi_square_log10_pvalue(counts, exact)}
    for j in range(n - 1):
        axes = tuple(a for a in range(n) if a not in (j, j + 1))
        pair = joint.sum(axis=axes) if axes else joint
        pair_counts = np.bincount(samples[:, j] * vocab + samples[:, j + 1], minlength=vocab * vocab)
        tests[f"t{j + 1},t{j + 2}"] = chi_square_log10_pvalue(pair_counts, pair.ravel())
    log10_pvalue = min(0.0, min(tests.values()) + np.log10(len(tests)))
    return LawTest(float(log10_pvalue), tests, runs, n)


def strategy_law(decoder: Decoder, target: CausalLM, prompt: list[int], n: int, runs: int, seed: int = 0,
                 observe: Callable[[dict], jax.Array] | None = None) -> tuple[LawTest, np.ndarray | None]:
    """Sample ``decoder``'s strategy and test it against the exact law of ``target`` under the strategy's sampling
    config; also returns what ``observe`` summed (see :func:`sample_joint`)."""
    samples, observed = sample_joint(decoder, prompt, n, runs, seed, observe)
    exact = exact_joint(target, prompt, n, decoder.strategy.sampling)
    return law_pvalue(samples, exact, target.vocab_size), observed


# --- greedy: an independent reference and models whose outputs vary ------------------------------------------------

def greedy_reference(model: CausalLM, prompts: list[list[int]], new: int) -> list[tuple[int, ...]]:
    """Greedy decoding by the definition: a plain argmax loop where every token comes from one full forward (a
    fresh cache, the whole sequence from position 0) over the prompt and the tokens so far. None of the runtime's
    decoding code runs (no prefill buckets, no cache pointer, no lag, no verification); the prompts run side by
    side, right-padded (a causal model's logits at position i do not see the padding after i)."""
    width = max(len(prompt) for prompt in prompts) + new
    seqs = np.zeros((len(prompts), width), np.int32)
    for row, prompt in enumerate(prompts):
        seqs[row, :len(prompt)] = prompt
    lengths = np.asarray([len(prompt) for prompt in prompts])
    rows = np.arange(len(prompts))
    next_tokens = _reference_step(model, width)
    for _ in range(new):
        seqs[rows, lengths] = np.asarray(next_tokens(model.params, jnp.asarray(seqs), jnp.asarray(lengths)))
        lengths = lengths + 1
    return [tuple(int(t) for t in seqs[row, len(prompt):len(prompt) + new]) for row, prompt in enumerate(prompts)]


_REFERENCE_STEPS: dict = {}


def _reference_step(model: CausalLM, width: int) -> Callable:
    """The jitted argmax of one full forward over [B, width] tokens (one per model and width: compiled once)."""
    if (model, width) not in _REFERENCE_STEPS:
        @jax.jit
        def next_tokens(params, tokens, lengths):
            logits, _ = model.forward(params, model.init_cache(tokens.shape[0], width), tokens)
            return jnp.argmax(logits[jnp.arange(tokens.shape[0]), lengths - 1], axis=-1)

        _REFERENCE_STEPS[(model, width)] = next_tokens
    return _REFERENCE_STEPS[(model, width)]


def varied_transformer(name: str, vocab: int = 512, max_len: int = 64, seed: int = 0,
                       weights: tuple[str | None, ...] = (None,), d_model: int = 64, n_layers: int = 2,
                       n_heads: int = 8, n_kv_heads: int = 8, d_ff: int = 128) -> list[CausalLM]:
    """The repository's Transformer with weights whose greedy outputs depend on the context, one CausalLM per
    entry of ``weights`` (None: float32; "bfloat16", "int8"), named ``name-<weights>``. The training init (std
    0.02) gives nearly flat logits (near-ties) and, with the tied head, a model that repeats its input token, which
    makes an identity test weak; every matrix is rescaled to std 1/sqrt(its second dimension) (embedding 0.5,
    residual outputs x8) first."""
    from flax import nnx

    from speccascade.runtime.models.transformer import Transformer, TransformerConfig, as_causal_lm

    config = TransformerConfig(vocab_size=vocab, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                               n_kv_heads=n_kv_heads, d_ff=d_ff, max_len=max_len)
    module = Transformer(config, rngs=nnx.Rngs(seed))

    def rescale(path, leaf):
        if leaf.ndim != 2:
            return leaf
        key = jax.tree_util.keystr(path)
        std = 0.5 if "embed" in key else leaf.shape[1] ** -0.5 * (8.0 if ("out" in key or "down" in key) else 1.0)
        return leaf / jnp.std(leaf) * std

    nnx.update(module, jax.tree_util.tree_map_with_path(rescale, nnx.state(module)))
    return [as_causal_lm(module, f"{name}-{kind or 'float32'}", max_len, weights=kind) for kind in weights]
