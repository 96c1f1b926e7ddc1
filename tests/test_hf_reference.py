"""The runtime's Llama, Gemma and Mistral against an implementation written elsewhere: transformers 4.x's Flax
models (FlaxLlamaForCausalLM, FlaxGemmaForCausalLM, FlaxMistralForCausalLM), loading the same tiny random
checkpoint (written with numpy in the Hugging Face layout; no download). Compared in float32: logits of a full
forward (max abs difference <= 1e-4), the runtime's cached decode path (token by token and in chunks) against the
reference's full forward, and greedy generation (the reference's own cached ``generate``) token for token, by
the runtime's autoregressive and speculative decoders.

The Flax references hard-code the rotary base 10,000 (they ignore config.json's rope_theta); one test patches
the reference's sinusoid table to Llama 3's base 500,000 (the formula of transformers' PyTorch models) to check
rope_theta too."""

from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers", reason="the reference check needs transformers<5 (test extra)")

import jax.numpy as jnp  # noqa: E402

from hf_fixtures import make_checkpoint  # noqa: E402
from speccascade.runtime.decoding import Autoregressive, Decoder, Speculative  # noqa: E402
from speccascade.runtime.hf import load_checkpoint  # noqa: E402

TOLERANCE = 1e-4
REFERENCE = {"llama": "FlaxLlamaForCausalLM", "gemma-2b": "FlaxGemmaForCausalLM",
             "gemma-7b": "FlaxGemmaForCausalLM", "mistral": "FlaxMistralForCausalLM"}
PROMPT = [1, 17, 42, 5, 88, 23, 9, 61, 30, 2, 77, 14]


def reference_model(family: str, directory):
    import transformers as hf

    return getattr(hf, REFERENCE[family]).from_pretrained(str(directory), dtype=jnp.float32)


@pytest.fixture(scope="module", params=sorted(REFERENCE))
def pair(request, tmp_path_factory):
    family = request.param
    directory = make_checkpoint(tmp_path_factory.mktemp(family), family, seed=3)
    return family, load_checkpoint(directory, "fp32"), reference_model(family, directory)


def test_logits_equal_the_reference(pair):
    family, ours, reference = pair
    ids = np.asarray([PROMPT])
    expected = np.asarray(reference(jnp.asarray(ids)).logits)
    logits, _ = ours.forward(ours.params, None, jnp.asarray(ids, jnp.int32))
    assert np.abs(np.asarray(logits) - expected).max() <= TOLERANCE, family
    assert np.abs(expected).max() > 1.0  # the logits are not near zero (the comparison is not vacuous)
    assert ours.profile.family == family.split("-")[0] and ours.profile.dtype == "fp32"


def test_cached_decode_equals_the_reference(pair):
    family, ours, reference = pair
    ids = jnp.asarray([PROMPT], jnp.int32)
    expected = np.asarray(reference(ids).logits)
    for chunk in (1, 5):
        cache, pieces = ours.init_cache(1, 32), []
        _, cache = ours.forward(ours.params, cache, ids[:, :2])
        for start in range(2, len(PROMPT), chunk):
            logits, cache = ours.forward(ours.params, cache, ids[:, start:start + chunk])
            pieces.append(np.asarray(logits))
        assert np.abs(np.concatenate(pieces, axis=1) - expected[:, 2:]).max() <= TOLERANCE, (family, chunk)


def test_greedy_generation_is_token_identical_to_the_reference(pair):
    family, ours, reference = pair
    new = 16
    reference.generation_config.eos_token_id = 10**6  # no such token: no early stop, every token compared
    output = reference.generate(jnp.asarray([PROMPT[:6]]), max_new_tokens=new, do_sample=False, pad_token_id=0)
    expected = tuple(int(t) for t in np.asarray(output.sequences)[0, 6:6 + new])
    assert len(set(expected)) >= 3, expected  # not a degenerate repetition
    assert Decoder(Autoregressive(ours), 48).generate(PROMPT[:6], new).tokens == expected
    # speculative with the model as its own drafter: every draft accepted, the tokens still the reference's (the
    # rejection path with these families: tests/test_real_models.py)
    accepted = Decoder(Speculative(ours, ours, k=3), 48).generate(PROMPT[:6], new)
    assert accepted.tokens == expected and accepted.acceptance()["draft->target"]["alpha"] == 1.0


def test_rope_theta_500000_against_the_patched_reference(tmp_path, monkeypatch):
    from transformers.models.llama import modeling_flax_llama

    theta = 500_000.0

    def sinusoids(num_pos, dim):  # transformers' PyTorch rotary table with base theta
        inv_freq = 1.0 / (theta ** (np.arange(0, dim, 2) / dim))
        freqs = np.einsum("i , j -> i j", np.arange(num_pos), inv_freq).astype("float32")
        emb = np.concatenate((freqs, freqs), axis=-1)
        return jnp.array(np.concatenate((np.sin(emb)[:, None, :], np.cos(emb)[:, None, :]), axis=-1))

    directory = make_checkpoint(tmp_path / "llama3", "llama", seed=5, theta=theta)
    monkeypatch.setattr(modeling_flax_llama, "create_sinusoidal_positions", sinusoids)
    reference = reference_model("llama", directory)
    ours = load_checkpoint(directory, "fp32")
    assert ours.profile.rope_theta == theta
    ids = jnp.asarray([PROMPT + PROMPT], jnp.int32)  # 24 positions: the base matters
    expected = np.asarray(reference(ids).logits)
    logits, _ = ours.forward(ours.params, None, ids)
    assert np.abs(np.asarray(logits) - expected).max() <= TOLERANCE
    base = load_checkpoint(make_checkpoint(tmp_path / "llama2", "llama", seed=5), "fp32")
    other, _ = base.forward(base.params, None, ids)
    assert np.abs(np.asarray(other) - expected).max() > 10 * TOLERANCE  # theta changes the logits
