"""Real models in the runtime: Hugging Face checkpoints (loader, formats, shards, tokenizer, bad input), profile-
shaped random-weight models (every strategy lossless with them, labelled everywhere), the forward with explicit
positions / mask / hidden states (tree verification), and ``runtime microbench`` traces that calibration reads.
(The comparison with transformers' Flax models is tests/test_hf_reference.py; multi-host tests/test_multihost.py.)"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from cli_runner import run
from hf_fixtures import hf_config, hf_tensors, make_checkpoint, write_checkpoint, write_tokenizer
from speccascade.errors import InputError
from speccascade.hardware import list_models, load_chip, load_model, write_model_toml
from speccascade.runtime import hf
from speccascade.runtime.decoding import (Autoregressive, Decoder, FilteredCascade, Speculative, VerticalBudget,
                                          VerticalCascade)
from speccascade.runtime.models.quant import quantize_rows
from speccascade.runtime.random_models import RANDOM_LABEL, random_model, transformer_config_of_profile
from speccascade.traces import read_trace

IDS = jnp.asarray([[1, 17, 42, 5, 88, 23, 9, 61]], jnp.int32)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECCASCADE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    directory = make_checkpoint(tmp_path_factory.mktemp("llama"), "llama", seed=3)
    write_tokenizer(directory)
    return directory


def small_profile(tmp_path, base: str, name: str, **shape):
    """A shipped profile's architecture at test size, written as a profile TOML (what a user would write)."""
    sizes = dict(vocab=320, d_model=48, layers=2, heads=4, kv_heads=2, head_dim=12, d_ff=96)
    sizes.update(shape)
    profile = load_model(base).model_copy(update={"name": name, **sizes, "params_total": 1e6,
                                                 "params_embedding": sizes["vocab"] * sizes["d_model"]})
    return str(write_model_toml(profile, tmp_path / f"{name}.toml"))


# --- the loader -------------------------------------------------------------------------------------------------
def test_shards_formats_and_profile(llama_dir, tmp_path, monkeypatch):
    config = hf_config(**{k: v for k, v in dict(model_type="llama", d=32, heads=4, kv=2, ff=64).items()})
    sharded = write_checkpoint(tmp_path / "sharded", config, hf_tensors(config, seed=3), shards=3)
    assert len(list(sharded.glob("model-*.safetensors"))) == 3
    single = hf.load_checkpoint(llama_dir, "fp32")
    split = hf.load_checkpoint(sharded, "fp32")
    reference = np.asarray(single.forward(single.params, None, IDS)[0])
    assert np.array_equal(np.asarray(split.forward(split.params, None, IDS)[0]), reference)
    # formats: cast or quantized at load; bytes as stored
    bf16 = hf.load_checkpoint(llama_dir, "bf16")
    monkeypatch.setattr(hf, "QUANT_ROWS", 7)  # several row blocks per matrix
    int8 = hf.load_checkpoint(llama_dir, "int8")
    scale = np.abs(reference).max()
    for model, tolerance in ((bf16, 0.05), (int8, 0.1)):  # of the largest logit (3x-scaled random weights)
        logits = np.asarray(model.forward(model.params, None, IDS)[0])
        assert np.abs(logits - reference).max() <= tolerance * scale, (model.name, np.abs(logits - reference).max())
    assert single.param_bytes == 4 * single.profile.params_total
    assert bf16.param_bytes < 0.51 * single.param_bytes and int8.param_bytes < 0.3 * single.param_bytes
    # blocked quantization = the runtime's per-row rule
    tensors = hf_tensors(config, seed=3)
    q, s = quantize_rows(tensors["model.layers.0.self_attn.q_proj.weight"])
    kv = tensors["model.layers.0.self_attn.k_proj.weight"].shape[0]
    assert np.array_equal(np.asarray(int8.params["layers"][0]["attn"]["qkv"]["q"])[:32], np.asarray(q))
    assert np.allclose(np.asarray(int8.params["layers"][0]["attn"]["qkv"]["scale"])[:32], np.asarray(s))
    assert int8.params["layers"][0]["attn"]["qkv"]["q"].shape[0] == 32 + 2 * kv
    profile = single.profile
    assert (profile.family, profile.tied_embeddings, profile.mlp_activation, profile.dtype) == \
        ("llama", False, "silu", "fp32")
    assert int8.profile.dtype == "int8" and str(llama_dir) in profile.source


def test_tokenizer_and_generate_from_a_checkpoint(llama_dir, capsys):
    from speccascade.runtime.hf_tokenizer import load_tokenizer

    tokenizer = load_tokenizer(llama_dir, 96)
    text = "def main(argv):"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.prompt_ids(text)[0] == 1  # config.json's bos_token_id first
    code, out, err = run(capsys, "runtime", "generate", "--strategy", "speculative", "--k", "3", "--prompt", text,
                         "--max-new", "10", "--greedy", "--json", "--target-model", f"{llama_dir}:fp32",
                         "--draft-model", f"{llama_dir}:int8")
    assert code == 0, err
    result = json.loads(out)
    model = hf.load_checkpoint(llama_dir, "fp32")
    expected = Decoder(Autoregressive(model), 40).generate(tokenizer.prompt_ids(text), 10).tokens
    assert tuple(result["tokens"]) == expected and "random_weights" not in result
    assert result["text"] == tokenizer.decode(expected)


def one_line_error(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and err.startswith("error:") and "Traceback" not in err + out, err
    return err


def test_bad_checkpoints_are_one_line_exit_2(llama_dir, tmp_path, capsys):
    def generate(target, *extra):
        return one_line_error(capsys, "runtime", "generate", "--strategy", "autoregressive", "--prompt", "x",
                              "--max-new", "2", "--target-model", str(target), *extra)

    assert "no such checkpoint directory" in generate(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "config.json: file not found" in generate(tmp_path / "empty/")
    config = hf_config()
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps(config))
    assert "no model.safetensors or model.safetensors.index.json" in generate(tmp_path / "noweights")
    gpt = write_checkpoint(tmp_path / "gpt2", {**config, "model_type": "gpt2"}, hf_tensors(config))
    assert "unknown architecture model_type='gpt2'" in generate(gpt)
    wrong = write_checkpoint(tmp_path / "wrong", {**config, "intermediate_size": 80}, hf_tensors(config))
    err = generate(wrong)
    assert "has shape (64, 32), config.json implies (80, 32)" in err and "gate_proj" in err
    tensors = hf_tensors(config)
    del tensors["model.layers.1.mlp.down_proj.weight"]
    assert "model.layers.1.mlp.down_proj.weight is missing" in generate(write_checkpoint(tmp_path / "m", config,
                                                                                          tensors))
    scaled = write_checkpoint(tmp_path / "scaled", {**config, "rope_scaling": {"type": "llama3", "factor": 8}},
                              hf_tensors(config))
    assert "rope_scaling" in generate(scaled)
    other = write_checkpoint(tmp_path / "other", hf_config(vocab=128), hf_tensors(hf_config(vocab=128)))
    err = generate(llama_dir, "--draft-model", str(other), "--strategy", "speculative")
    assert "vocabulary of 128 tokens" in err and "96" in err
    assert "no weights: add --random-weights" in generate("gemma-2b")
    assert "unknown model 'gemma-99b'" in generate("gemma-99b")
    with pytest.raises(InputError, match="exceeds Mistral's sliding window"):
        hf.transformer_config(hf_config("mistral", max_pos=64), tmp_path, max_len=65)


def test_hostile_checkpoint_files_are_one_line_exit_2(tmp_path, capsys):
    """config.json, model.safetensors.index.json and tokenizer.json go through speccascade.readers: a FIFO (would
    hang), a link to /dev/zero (would read forever), deep JSON, a huge integer and NaN are each one line."""
    import os

    config = hf_config()

    def generate(target):
        return one_line_error(capsys, "runtime", "generate", "--strategy", "autoregressive", "--prompt", "x",
                              "--max-new", "2", "--target-model", str(target))

    hostile = {"fifo": None, "zero": None, "deep": "[" * 5000 + "]" * 5000,
               "bigint": '{"vocab_size": ' + "9" * 400 + "}", "nan": '{"vocab_size": NaN}'}
    for kind, text in hostile.items():
        bad = tmp_path / f"config-{kind}"
        write_checkpoint(bad, config, hf_tensors(config))
        (bad / "config.json").unlink()
        if kind == "fifo":
            os.mkfifo(bad / "config.json")
        elif kind == "zero":
            os.symlink("/dev/zero", bad / "config.json")
        else:
            (bad / "config.json").write_text(text)
        err = generate(bad)
        assert "config.json" in err, (kind, err)
    index = write_checkpoint(tmp_path / "index", config, hf_tensors(config), shards=2)
    for text, needle in (('{"weight_map": [1]}', "needs a 'weight_map' object"),
                         ('{"weight_map": {"a": 3}}', "needs a 'weight_map' object"), ("{", "not valid JSON")):
        (index / "model.safetensors.index.json").write_text(text)
        assert needle in generate(index)
    (index / "model.safetensors.index.json").unlink()
    os.mkfifo(index / "model.safetensors.index.json")
    assert "is a FIFO" in generate(index)

    from speccascade.runtime.tokenizer import ByteBPETokenizer

    os.mkfifo(tmp_path / "tokenizer.json")
    with pytest.raises(InputError, match="is a FIFO"):
        ByteBPETokenizer.load(tmp_path / "tokenizer.json")


def test_hostile_checkpoint_manifests_are_one_line(tmp_path):
    import os

    from speccascade.runtime.checkpoint import MANIFEST, MANIFEST_FORMAT, read_manifest

    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / MANIFEST)
    with pytest.raises(InputError, match="is a FIFO"):
        read_manifest(tmp_path / "fifo")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / MANIFEST).write_text(json.dumps({"format": MANIFEST_FORMAT, "files": []}))
    with pytest.raises(InputError, match="'files' must map file names"):
        read_manifest(tmp_path / "files")
    with pytest.raises(InputError, match="is missing"):
        read_manifest(tmp_path)


# --- profile-shaped random models -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in list_models() if load_model(n).architecture == "decoder"])
def test_every_decoder_profile_builds_a_runtime_model_of_its_size(name):
    profile = load_model(name)
    config = transformer_config_of_profile(profile)
    assert config.param_count() == pytest.approx(profile.params_total, rel=2e-3)  # gemma: 256,128 table rows
    assert config.head_dim == profile.head_dim and config.tied_embeddings == profile.tied_embeddings
    assert (config.activation == "gelu_tanh") == (profile.family == "gemma")


@pytest.fixture(scope="module")
def random_trio(tmp_path_factory):
    """Llama-3-shaped Target (fp32, GQA, untied head), its bf16 copy (same seed: the same weights rounded) as the
    Draft, a seed-Tiny of tiny-10m's form at the same vocabulary."""
    directory = tmp_path_factory.mktemp("profiles")
    target_spec = small_profile(directory, "llama-3-8b", "llama-mini", dtype="fp32")
    tiny_spec = small_profile(directory, "tiny-10m", "tiny-mini", d_model=16, d_ff=24, layers=0, heads=0,
                              kv_heads=0, head_dim=0)
    return (random_model(tiny_spec, seed=2, max_len=64), random_model(f"{target_spec}:bf16", seed=0, max_len=64),
            random_model(target_spec, seed=0, max_len=64))


def test_every_strategy_is_lossless_with_random_profile_models(random_trio):
    tiny, draft, target = random_trio
    assert all(model.random_weights and model.name.endswith(RANDOM_LABEL) for model in random_trio)
    assert target.vocab_size == draft.vocab_size == tiny.vocab_size == 320
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 320, size=int(rng.integers(2, 9))).tolist() for _ in range(6)]
    capacity, new = 48, 12
    reference = Decoder(Autoregressive(target), capacity)
    expected = [reference.generate(prompt, new).tokens for prompt in prompts]
    assert all(len(set(tokens)) >= 3 for tokens in expected), expected
    strategies = {"speculative": Speculative(draft, target, k=3),
                  "vertical": VerticalCascade(tiny, draft, target, k=2, k_tiny=2),
                  "vertical-budget": VerticalBudget(tiny, draft, target, k=4, k_tiny=2),
                  "filtered": FilteredCascade(tiny, draft, target, k=3, filter_width=16)}
    accepted = 0.0
    for name, strategy in strategies.items():
        decoder = Decoder(strategy, capacity)
        for prompt, tokens in zip(prompts, expected):
            generation = decoder.generate(prompt, new)
            assert generation.tokens == tokens, name
        accepted = max(accepted, generation.acceptance()["draft->target"]["alpha"])
    assert accepted > 0.5  # the bf16 copy agrees often: the acceptance path is exercised, not only rejection


def test_gemma_shaped_random_models_decode_losslessly(tmp_path):
    spec = small_profile(tmp_path, "gemma-7b", "gemma-mini", heads=4, kv_heads=4, head_dim=16, dtype="fp32")
    target = random_model(spec, seed=4, max_len=48)
    assert target.profile.mlp_activation == "gelu_tanh" and target.profile.head_dim * 4 != 48
    draft = random_model(f"{spec}:int8", seed=4, max_len=48)
    prompt = [3, 1, 4, 1, 5]
    expected = Decoder(Autoregressive(target), 40).generate(prompt, 12).tokens
    assert Decoder(Speculative(draft, target, k=3), 40).generate(prompt, 12).tokens == expected
    assert any(RANDOM_LABEL.strip() in note or "random weights" in note for note in target.profile.notes)


# --- explicit positions, mask and hidden states (tree verification) ---------------------------------------------
def test_tree_forward_equals_the_chain_forwards_of_each_path(llama_dir):
    model = hf.load_checkpoint(llama_dir, "fp32")
    prefix = IDS[:, :5]
    # a tree of 5 nodes after the prefix: 0 -> (1 -> 3), (2 -> 4); parents: [-1, 0, 0, 1, 2]
    nodes = jnp.asarray([[11, 12, 13, 14, 15]], jnp.int32)
    parents = [-1, 0, 0, 1, 2]
    depth = [0, 1, 1, 2, 2]
    ancestors = np.eye(5, dtype=bool)
    for node, parent in enumerate(parents):
        while parent >= 0:
            ancestors[node, parent] = True
            parent = parents[parent]
    cache = model.init_cache(1, 32)
    _, cache = model.forward(model.params, cache, prefix)
    logits, hidden, after = model.forward_hidden(model.params, cache, nodes, 5 + jnp.asarray(depth, jnp.int32),
                                                 jnp.asarray(ancestors))
    assert int(after["pos"]) == 10 and hidden.shape == (1, 5, 32)
    for node in range(5):
        path = [n for n in range(5) if ancestors[node, n]]  # root .. node in depth order
        chain = jnp.concatenate([prefix, nodes[:, path]], axis=1)
        full = np.asarray(model.forward(model.params, None, chain)[0])[0, -1]
        assert np.abs(np.asarray(logits)[0, node] - full).max() <= 1e-4, node
    # no mask, default positions: the plain forward, and the hidden states give the logits through the head
    plain, hidden, _ = model.forward_hidden(model.params, cache, nodes)
    assert np.allclose(np.asarray(plain), np.asarray(model.forward(model.params, cache, nodes)[0]), atol=1e-5)
    head = np.asarray(model.params["head"]["kernel"])
    assert np.allclose(np.asarray(hidden)[0] @ head.T, np.asarray(plain)[0], atol=1e-4)


# --- microbench -------------------------------------------------------------------------------------------------
def test_microbench_writes_forward_records_calibration_reads(tmp_path, capsys, llama_dir):
    spec = small_profile(tmp_path, "gemma-2b", "gemma-mini", kv_heads=1, head_dim=12)
    out = tmp_path / "mb"
    code, stdout, err = run(capsys, "runtime", "microbench", f"{spec}:int8", f"target={llama_dir}",
                            "--random-weights", "--tokens", "1,3", "--contexts", "4,20", "--repeats", "1",
                            "--chain", "2", "--out", str(out), "--chip", "tpu-v5e", "--json")
    assert code == 0, err
    document = json.loads(stdout)
    trace = read_trace(out / "trace.jsonl")
    assert [m.role for m in trace.header.models] == ["gemma-mini:int8", "target"]
    assert len(trace.forwards) == 2 * 2 * 2 and len(document["records"]) == 8
    assert all(m.name.endswith(RANDOM_LABEL) for m in trace.header.models)
    assert sum("random weights" in note for note in trace.header.notes) == 2
    assert {(f.tokens, f.context) for f in trace.forwards} == {(1, 4), (1, 20), (3, 4), (3, 20)}
    assert all(row["achieved_gb_s"] > 0 for row in document["records"])
    _, models = trace.header.profiles(("gemma-mini:int8", "target"))
    assert models["gemma-mini:int8"].dtype == "int8" and models["target"].family == "llama"
    points = pytest.importorskip("speccascade.calibrate.points")
    device = points.Device(load_chip("tpu-v5e"), (trace,))
    used, unused = points.forward_points(device)
    assert len(used) == 8 and not unused
    assert "microbench roles must be unique" in one_line_error(capsys, "runtime", "microbench", "gemma-2b",
                                                               "gemma-2b", "--random-weights")


def test_bench_with_checkpoint_specs_labels_random_weights(llama_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    code, stdout, err = run(capsys, "runtime", "bench", "--target-model", f"{llama_dir}:fp32", "--draft-model",
                            str(llama_dir), "--random-weights", "--new-tokens", "6", "--repeats", "1",
                            "--staged-repeats", "0", "--no-microbench", "--overhead-steps", "0", "--out", str(out))
    assert code == 0, err
    assert "random weights (timing only" in stdout
    trace = read_trace(out / "trace.jsonl")
    assert {m.role for m in trace.header.models} == {"target", "draft"}
    assert all(m.name.endswith(RANDOM_LABEL) for m in trace.header.models)
    assert {"target", "draft"} == {note.split()[0] for note in trace.header.notes if "random weights" in note}
    assert trace.header.config["models"] == {"target": f"{llama_dir}:fp32", "draft": str(llama_dir)}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"autoregressive", "speculative"}  # what a target + draft can run
