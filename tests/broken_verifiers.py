"""DELIBERATELY BROKEN verifiers, for the power tests of the sampled-law harness only (tests/test_decoding_stats.py).

!!! NOT LOSSLESS. TEST CODE ONLY. NEVER IMPORT FROM THE PRODUCT. !!!

Each is a copy of :func:`speccascade.runtime.decoding.sampling.verify_chain`'s sampled branch with one mistake
people actually make when they write speculative sampling. The tests swap one in with ``monkeypatch`` in the
decoding modules' namespaces for the length of one test (:func:`broken`), so the product never sees them: the
product's own modules neither import nor name this file.

* ``residual-is-p``:     at the first rejection, resample from p_i instead of norm(max(0, p_i - q_i)).
* ``bonus-from-p_K``:    when every draft passes, draw the bonus token from p_K instead of p_{K+1}.
* ``ratio-inverted``:    accept x_i with probability min(1, q_i(x_i) / p_i(x_i)) instead of min(1, p / q).
* ``accept-always``:     accept every draft (no test at all; the bonus still comes from p_{K+1}).
* ``q-row-off-by-one``:  verify draft i against q_{i+1} (the q buffer read one row late; the last row reads 0).

Under greedy decoding they defer to the real ``verify_chain`` (the sampled branch is what the harness tests).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import jax
import jax.numpy as jnp

from speccascade.runtime.decoding import cascade as cascade_module
from speccascade.runtime.decoding import strategies as strategies_module
from speccascade.runtime.decoding.sampling import Verdict, overlap, sample, to_probs, verify_chain

MISTAKES = ("residual-is-p", "bonus-from-p_K", "ratio-inverted", "accept-always", "q-row-off-by-one")


def broken_verify_chain(mistake: str) -> Callable[..., Verdict]:
    """A verify_chain with ``mistake`` (one of :data:`MISTAKES`) in its sampled branch. NOT LOSSLESS."""
    if mistake not in MISTAKES:
        raise ValueError(f"unknown mistake {mistake!r}")

    def broken_verify(key, drafts, q, logits, config, valid=None) -> Verdict:
        if config.greedy:
            return verify_chain(key, drafts, q, logits, config, valid)
        k = drafts.shape[0]
        rows = jnp.arange(k)
        valid = jnp.asarray(k if valid is None else valid, jnp.int32)
        real = rows < valid
        p = to_probs(logits, config)
        q = jnp.where(real[:, None], q, 0.0)
        if mistake == "q-row-off-by-one":  # BROKEN: row i of the buffer is read as q_{i+1}
            q = jnp.concatenate([q[1:], jnp.zeros_like(q[:1])], axis=0)
        accept_key, residual_key = jax.random.split(key)
        p_draft = p[rows, drafts]
        q_draft = q[rows, drafts]
        uniform = jax.random.uniform(accept_key, (k,), dtype=jnp.float32)
        if mistake == "ratio-inverted":  # BROKEN: min(1, q / p)
            ok = uniform * p_draft < q_draft
        elif mistake == "accept-always":  # BROKEN: no test
            ok = jnp.ones((k,), jnp.bool_)
        else:
            ok = uniform * q_draft < p_draft
        ok = ok & real
        accepted = jnp.sum(jnp.cumprod(ok.astype(jnp.int32))).astype(jnp.int32)
        q_padded = jnp.concatenate([q, jnp.zeros_like(q[:1])], axis=0)
        residual = jnp.maximum(p[accepted] - q_padded[accepted], 0.0)
        mass = jnp.sum(residual)
        residual = jnp.where(mass > 0, residual / jnp.where(mass > 0, mass, 1.0), p[accepted])
        if mistake == "residual-is-p":  # BROKEN: p instead of norm(max(0, p - q))
            residual = p[accepted]
        if mistake == "bonus-from-p_K":  # BROKEN: the bonus from the last draft's p, not the next position's
            residual = jnp.where(accepted == valid, p[jnp.maximum(accepted - 1, 0)], residual)
        token = sample(residual_key, residual, config)
        betas = overlap(p[:k], q)
        reached = (rows <= accepted) & real
        flags = jnp.where(rows < accepted, 1, jnp.where(reached, 0, -1)).astype(jnp.int8)
        return Verdict(accepted, token, flags, jnp.sum(jnp.where(reached, betas, 0.0)),
                       jnp.sum(reached).astype(jnp.int32), valid)

    broken_verify.__name__ = f"BROKEN_verify_chain_{mistake.replace('-', '_')}"
    return broken_verify


@contextlib.contextmanager
def broken(monkeypatch, mistake: str, where: tuple[str, ...] = ("target",)) -> Iterator[None]:
    """Within the block, the decoding modules call the broken verifier: ``"target"`` the final verification
    (``verify_stage``: speculative, filtered and both vertical cascades), ``"draft"`` the cascades' Draft reviews.
    Build the Decoder inside the block (the verifier is looked up when the step is traced)."""
    with monkeypatch.context() as patch:
        if "target" in where:
            patch.setattr(strategies_module, "verify_chain", broken_verify_chain(mistake))
        if "draft" in where:
            patch.setattr(cascade_module, "verify_chain", broken_verify_chain(mistake))
        yield
