"""Distribution transforms, sampling and the lossless acceptance rule shared by every strategy.

All strategies work on *probabilities that already went through the same transform* (temperature, top-k,
top-p, or greedy = a point mass on the argmax). Losslessness is with respect to the transformed target
distribution: a strategy emits exactly what autoregressive sampling from ``to_probs(target logits)`` emits.

The acceptance rule (Leviathan et al. 2023; Chen et al. 2023), for draft tokens x_1..x_K drawn from
q_1..q_K and target distributions p_1..p_{K+1} from one verification forward:

    accept x_i with probability min(1, p_i(x_i) / q_i(x_i))          (tested as u * q_i(x_i) < p_i(x_i))
    at the first rejection i: emit a sample of norm(max(0, p_i - q_i)) and stop
    if all K are accepted:    emit a bonus sample of p_{K+1}

It is correct for ANY q as long as q_i is the distribution x_i was actually drawn from. Padding q with a zero
row makes the bonus case the same formula: max(0, p_{K+1} - 0) = p_{K+1}. Under greedy every distribution is a
point mass, so the rule reduces to "accept while the draft token is the target's argmax, then emit the
target's argmax": greedy speculative output equals greedy autoregressive output token for token.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from speccascade.errors import InputError


@dataclass(frozen=True)
class SamplingConfig:
    """How logits become a distribution. ``greedy`` overrides the rest (a point mass on the argmax).

    ``top_k = 0`` and ``top_p = 1`` switch those filters off. The transform order is temperature, then top-k,
    then top-p (the smallest set of most likely tokens whose mass reaches ``top_p``), then renormalization.
    """

    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise InputError(f"temperature must be > 0 (use greedy for temperature 0), got {self.temperature}")
        if self.top_k < 0:
            raise InputError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")

    def describe(self) -> str:
        if self.greedy:
            return "greedy"
        return f"T={self.temperature:g} top_k={self.top_k} top_p={self.top_p:g}"


GREEDY = SamplingConfig()


def to_probs(logits: jax.Array, config: SamplingConfig) -> jax.Array:
    """Transform logits (float[..., V]) into the distribution a strategy samples from and verifies against."""
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    if config.greedy:
        return jax.nn.one_hot(jnp.argmax(logits, axis=-1), vocab, dtype=jnp.float32)
    scaled = logits / config.temperature
    if 0 < config.top_k < vocab:
        kth = jax.lax.top_k(scaled, config.top_k)[0][..., -1:]
        scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
    probs = jax.nn.softmax(scaled, axis=-1)
    if config.top_p < 1.0:
        ordered = jnp.sort(probs, axis=-1)[..., ::-1]
        mass_before = jnp.cumsum(ordered, axis=-1) - ordered
        kept = jnp.where(mass_before < config.top_p, ordered, jnp.inf)
        threshold = jnp.min(kept, axis=-1, keepdims=True)
        probs = jnp.where(probs >= threshold, probs, 0.0)
        probs = probs / jnp.sum(probs, axis=-1, keepdims=True)
    return probs


def sample(key: jax.Array, probs: jax.Array, config: SamplingConfig) -> jax.Array:
    """One token (int32) from ``probs`` (float[V]); the argmax under greedy."""
    if config.greedy:
        return jnp.argmax(probs, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, jnp.log(probs), axis=-1).astype(jnp.int32)


def overlap(p: jax.Array, q: jax.Array) -> jax.Array:
    """beta = sum_x min(p(x), q(x)), the probability that one draft token drawn from q is accepted against p."""
    return jnp.sum(jnp.minimum(p, q), axis=-1)


@dataclass(frozen=True)
class Verdict:
    """Outcome of verifying one chain of K draft tokens (all arrays; a pytree via ``jax.tree_util``)."""

    accepted: jax.Array   # int32: number of leading draft tokens accepted, 0..valid
    token: jax.Array      # int32: the corrected (first rejection) or bonus (all accepted) token
    flags: jax.Array      # int8[K]: 1 accepted, 0 rejected, -1 not reached
    beta_sum: jax.Array   # float32: sum of beta over the reached positions
    beta_count: jax.Array  # int32: number of reached positions, min(accepted + 1, valid)
    proposed: jax.Array   # int32: draft tokens offered (``valid``; K unless fewer were real)


jax.tree_util.register_dataclass(
    Verdict, data_fields=["accepted", "token", "flags", "beta_sum", "beta_count", "proposed"], meta_fields=[])


def verify_chain(key: jax.Array, drafts: jax.Array, q: jax.Array | None, logits: jax.Array,
                 config: SamplingConfig, valid: jax.Array | None = None) -> Verdict:
    """Lossless verification of ``drafts`` (int32[K], drawn from ``q`` float[K, V]) against the verifier's
    ``logits`` float[K+1, V] (transformed by ``config`` into p_1..p_{K+1}).

    ``valid`` (int32, <= K; default K): only the first ``valid`` drafts are real (a static buffer of K slots that
    one step filled partly, as in the vertical cascade with a fixed number of reviews). Slots from ``valid`` on are
    never accepted and their q rows count as zero, so when all ``valid`` drafts pass, the extra token is the bonus
    sample of p_{valid+1}, exactly as if the chain had length ``valid``.

    Returns how many drafts are accepted and the one extra token to emit after them (see module docstring).
    Greedy: every distribution is a point mass, so the rule needs only argmaxes (``q`` may be None): accept while
    the draft token is the verifier's argmax, then emit the argmax; beta (overlap of two point masses) is 1 where
    the argmaxes agree."""
    k = drafts.shape[0]
    rows = jnp.arange(k)
    valid = jnp.asarray(k if valid is None else valid, jnp.int32)
    real = rows < valid
    if config.greedy:
        best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        ok = (drafts == best[:k]) & real
        accepted = jnp.sum(jnp.cumprod(ok.astype(jnp.int32))).astype(jnp.int32)
        token = best[accepted]
        betas = ok.astype(jnp.float32)
    else:
        p = to_probs(logits, config)
        q = jnp.where(real[:, None], q, 0.0)
        accept_key, residual_key = jax.random.split(key)
        p_draft = p[rows, drafts]
        q_draft = q[rows, drafts]
        uniform = jax.random.uniform(accept_key, (k,), dtype=jnp.float32)
        ok = (uniform * q_draft < p_draft) & real
        accepted = jnp.sum(jnp.cumprod(ok.astype(jnp.int32))).astype(jnp.int32)
        q_padded = jnp.concatenate([q, jnp.zeros_like(q[:1])], axis=0)
        residual = jnp.maximum(p[accepted] - q_padded[accepted], 0.0)
        mass = jnp.sum(residual)
        residual = jnp.where(mass > 0, residual / jnp.where(mass > 0, mass, 1.0), p[accepted])
        token = sample(residual_key, residual, config)
        betas = overlap(p[:k], q)
    reached = (rows <= accepted) & real
    flags = jnp.where(rows < accepted, 1, jnp.where(reached, 0, -1)).astype(jnp.int8)
    beta_sum = jnp.sum(jnp.where(reached, betas, 0.0))
    beta_count = jnp.sum(reached).astype(jnp.int32)
    return Verdict(accepted, token, flags, beta_sum, beta_count, valid)


def draw(key: jax.Array, logits: jax.Array, config: SamplingConfig) -> tuple[jax.Array, jax.Array | None]:
    """One draft token from ``logits`` float[V] and the distribution it was drawn from (None under greedy, where
    it is the point mass on the token and nothing needs storing)."""
    if config.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), None
    probs = to_probs(logits, config)
    return sample(key, probs, config), probs
