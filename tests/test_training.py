"""Corpus, tokenizer, checkpoints and training (the quick trio plan; well under a minute)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from flax import nnx

from speccascade.errors import InputError
from speccascade.runtime.checkpoint import load_model, read_manifest, save_model, write_manifest
from speccascade.runtime.corpus import stdlib_corpus
from speccascade.runtime.models import Tiny, TinyConfig, Transformer, TransformerConfig, params_of
from speccascade.runtime.tokenizer import ByteBPETokenizer, train_bpe
from speccascade.runtime.train import StageConfig, acceptance, train_model
from speccascade.runtime.trio import load_default_trio, load_trio, train_trio


@pytest.fixture(scope="module")
def corpus():
    return stdlib_corpus(max_files=8)


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_bpe(corpus.texts(), vocab_size=400)


def test_corpus_is_sorted_hashed_and_split(corpus):
    assert list(corpus.files) == sorted(corpus.files) and len(corpus.files) == 8
    assert all(f.endswith(".py") and "site-packages" not in f for f in corpus.files)
    assert len(corpus.sha256) == 64 and corpus.sha256 == stdlib_corpus(max_files=8).sha256
    assert corpus.sha256 != stdlib_corpus(max_files=7).sha256
    train, heldout = corpus.split(4)
    assert heldout == (corpus.files[0], corpus.files[4]) and not set(train) & set(heldout)
    assert corpus.metadata()["files"] == list(corpus.files)


def test_tokenizer_round_trip_and_determinism(corpus, tokenizer):
    assert tokenizer.vocab_size == 400 and tokenizer.eot_id == 399
    for text in corpus.texts()[:3] + ["", "héllo wörld ✓ 中文\n\tx = 1\r\n", "    return self._x  # é"]:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert all(0 <= i < tokenizer.eot_id for i in ids)
    sample = corpus.texts()[0]
    assert len(tokenizer.encode(sample)) < 0.7 * len(sample.encode())  # 144 merges already compress
    assert train_bpe(corpus.texts(), vocab_size=400).merges == tokenizer.merges


def test_tokenizer_save_load(tmp_path, tokenizer):
    path = tmp_path / "tok.json"
    tokenizer.save(path)
    loaded = ByteBPETokenizer.load(path)
    text = "def f(x):\n    return x + 1\n"
    assert loaded.encode(text) == tokenizer.encode(text) and loaded.vocab_size == tokenizer.vocab_size
    path.write_text("{not json")
    with pytest.raises(InputError, match="cannot read tokenizer"):
        ByteBPETokenizer.load(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="format"):
        ByteBPETokenizer.load(path)


def test_model_checkpoint_round_trip_and_errors(tmp_path):
    config = TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                               max_len=32)
    module = Transformer(config, rngs=nnx.Rngs(0))
    path = tmp_path / "m.safetensors"
    digest = save_model(module, path, "m")
    name, loaded = load_model(path, expected_sha256=digest)
    assert name == "m" and loaded.config == config
    for a, b in zip(jax_leaves(params_of(module)), jax_leaves(params_of(loaded))):
        np.testing.assert_array_equal(a, b)
    tiny = Tiny(TinyConfig(vocab_size=64, d_embed=8, d_hidden=16), rngs=nnx.Rngs(1))
    save_model(tiny, tmp_path / "t.safetensors", "t")
    assert isinstance(load_model(tmp_path / "t.safetensors")[1], Tiny)

    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "flipped.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupted"):
        load_model(tmp_path / "flipped.safetensors", expected_sha256=digest)
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_model(tmp_path / "cut.safetensors")
    other = Transformer(TransformerConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                          d_ff=48, max_len=32), rngs=nnx.Rngs(0))
    save_model(other, tmp_path / "other.safetensors", "other")
    header_swapped = (tmp_path / "other.safetensors").read_bytes().replace(b'"d_ff\\": 48', b'"d_ff\\": 64')
    (tmp_path / "mismatch.safetensors").write_bytes(header_swapped)
    with pytest.raises(InputError, match="does not match its config"):
        load_model(tmp_path / "mismatch.safetensors")
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "absent.safetensors")


def jax_leaves(tree):
    import jax

    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def test_manifest_detects_corruption(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"hello")
    write_manifest(tmp_path, ["a.bin"], {"seed": 1})
    assert read_manifest(tmp_path)["metadata"] == {"seed": 1}
    (tmp_path / "a.bin").write_bytes(b"hellp")
    with pytest.raises(InputError, match="corrupted"):
        read_manifest(tmp_path)
    (tmp_path / "a.bin").unlink()
    with pytest.raises(InputError, match="missing"):
        read_manifest(tmp_path)


def test_distillation_reduces_kl(tokenizer, corpus):
    tokens = tokenizer.encode_documents(corpus.texts())
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=1, n_heads=2,
                               n_kv_heads=1, d_ff=64, max_len=64)
    teacher = Transformer(config, rngs=nnx.Rngs(0))
    teacher.embed.embedding[...] = teacher.embed.embedding[...] * 100.0  # confident (peaked) teacher
    student = Transformer(config, rngs=nnx.Rngs(1))
    losses = train_model(student, tokens, StageConfig(steps=25, batch=4, seq_len=32, learning_rate=1e-2,
                                                      warmup_steps=3), seed=0, teacher=teacher)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])


def test_acceptance_measures():
    target = np.log(np.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]]))
    draft = np.log(np.array([[[0.5, 0.4, 0.1], [0.6, 0.3, 0.1]]]))
    stats = acceptance(draft, target)
    assert stats["greedy"] == pytest.approx(0.5)
    assert stats["sampled"] == pytest.approx((0.5 + 0.2 + 0.1 + 0.1 + 0.1 + 0.1) / 2)
    assert stats["positions"] == 2


@pytest.fixture(scope="module")
def quick_trio(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trio")
    metadata = train_trio(directory, seed=0, quick=True, progress=False)
    return directory, metadata


def test_quick_trio_trains_saves_and_loads(quick_trio):
    directory, metadata = quick_trio
    losses = metadata["losses"]
    assert np.mean(losses["target"][-5:]) < np.mean(losses["target"][:3]) - 0.5
    assert np.mean(losses["draft"][-5:]) < np.mean(losses["draft"][:3])
    assert np.mean(losses["tiny"][-5:]) < np.mean(losses["tiny"][:3])
    assert (directory / "loss_curves.png").stat().st_size > 1000
    trio = load_trio(directory)
    assert trio.metadata["corpus"]["sha256"] == metadata["corpus"]["sha256"]
    assert trio.metadata["seed"] == 0 and len(trio.metadata["corpus"]["files"]) == 12
    evaluation = metadata["evaluation"]
    for pair in ("draft->target", "draft_int8->target", "tiny->draft", "tiny->target"):
        assert 0.0 <= evaluation["acceptance"][pair]["sampled"] <= 1.0
    assert trio.draft_int8.param_bytes < 0.4 * trio.draft.param_bytes
    assert trio.target_bf16.param_bytes < 0.55 * trio.target.param_bytes
    assert trio.models()["target"] is trio.target and trio.models(target="bf16")["target"] is trio.target_bf16
    assert trio.models(draft="int8")["draft"] is trio.draft_int8
    with pytest.raises(InputError, match="target weights"):
        trio.models(target="fp8")
    for lm in (trio.target, trio.draft, trio.draft_int8, trio.tiny):
        assert lm.vocab_size == trio.tokenizer.vocab_size
    assert load_default_trio(directory, train_if_missing=False).metadata == trio.metadata



def test_quick_trio_writes_model_profiles_that_predict(quick_trio, tmp_path):
    from speccascade.costmodel.config import PredictConfig
    from speccascade.costmodel.predict import predict
    from speccascade.hardware import load_model
    from speccascade.runtime.checkpoint import read_manifest

    directory, _ = quick_trio
    trio = load_trio(directory)
    hashes = read_manifest(directory)["files"]
    for role in ("target", "draft", "tiny"):
        profile = load_model(str(directory / f"{role}.toml"))
        assert profile == getattr(trio, role).profile and hashes[f"{role}.safetensors"] in profile.source
        assert profile.params_total == trio.modules[role].config.param_count()
        assert profile.vocab == trio.tokenizer.vocab_size
    assert trio.draft_int8.profile == trio.draft.profile.with_dtype("int8")
    assert trio.target_bf16.profile.dtype == "bf16"
    prediction = predict(PredictConfig(hardware="tpu-v5e", target=str(directory / "target.toml"),
                                       draft=str(directory / "draft.toml"), alpha=0.8, k=4), "speculative")
    assert prediction.ms_per_token > 0
    older = tmp_path / "older"  # a trio trained before the profiles existed gets them on load
    shutil.copytree(directory, older)
    for role in ("target", "draft", "tiny"):
        (older / f"{role}.toml").unlink()
    assert load_trio(older).target.profile == trio.target.profile
    assert load_model(str(older / "target.toml")) == trio.target.profile


def test_trio_checkpoint_errors(quick_trio, tmp_path):
    directory, _ = quick_trio
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    with (copy / "draft.safetensors").open("r+b") as handle:
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(InputError, match="draft.safetensors is corrupted"):
        load_trio(copy)
    with pytest.raises(InputError, match="no trained trio"):
        load_default_trio(tmp_path / "empty", train_if_missing=False)
