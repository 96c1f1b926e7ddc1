"""Model profiles of the runtime's own models (runtime/profiles.py): exact parameter counts, TOML files that the
cost model and ``speccascade predict --target FILE.toml`` read, profiles on every runtime CausalLM."""

from __future__ import annotations

import json

import pytest

from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.errors import InputError
from speccascade.hardware import load_model
from speccascade.hardware.registry import split_quantization
from speccascade.runtime.profiles import (model_profile, model_profile_with_sources, tiny_param_count,
                                          transformer_param_count, write_profile_toml)

from cli_runner import run

# the configs as a checkpoint's safetensors header stores them (the quick plan's sizes)
TARGET = {"vocab_size": 512, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 128,
          "max_len": 128, "rope_theta": 10000.0, "norm_eps": 1e-6, "weights": "float32"}
DRAFT = {**TARGET, "d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "d_ff": 64}
TINY = {"vocab_size": 512, "d_embed": 16, "d_hidden": 32, "max_len": 128, "norm_eps": 1e-5}
SHA = "ab" * 32


def test_profiles_of_runtime_configs():
    target, sources = model_profile_with_sources(TARGET, name="t", checkpoint="target.safetensors", sha256=SHA)
    assert target.architecture == "decoder" and target.tied_embeddings and target.dtype == "fp32"
    assert (target.layers, target.d_model, target.heads, target.kv_heads, target.head_dim, target.d_ff,
            target.vocab) == (2, 64, 4, 2, 16, 128, 512)
    assert target.params_embedding == 512 * 64 and target.params_total == transformer_param_count(TARGET)
    assert "own trained model" in target.source and SHA in target.source and "target.safetensors" in target.source
    numbers = {"params_total", "params_embedding", "layers", "d_model", "heads", "kv_heads", "head_dim", "d_ff",
               "vocab", "dtype", "tied_embeddings", "architecture"}
    assert numbers <= set(sources)  # every number says where it came from
    tiny = model_profile(TINY, name="tn")
    assert tiny.architecture == "projection" and not tiny.tied_embeddings and tiny.kv_bytes_per_token == 0
    assert (tiny.d_model, tiny.d_ff, tiny.params_total) == (16, 32, tiny_param_count(TINY))
    assert model_profile(DRAFT, name="d", weights="int8").dtype == "int8"
    assert model_profile({**TARGET, "weights": "bfloat16"}, name="t").dtype == "bf16"
    with pytest.raises(InputError, match="cannot tell the model kind"):
        model_profile({"vocab_size": 3}, name="x")
    with pytest.raises(InputError, match="unknown weight format"):
        model_profile(TARGET, name="t", weights="fp8")


def test_a_tiny_model_profile_file_predicts_with_the_cost_model(tmp_path, capsys):
    paths = {role: write_profile_toml(config, tmp_path / f"{role}.toml", name=f"quick-{role}",
                                      checkpoint=f"{role}.safetensors", sha256=SHA)
             for role, config in (("target", TARGET), ("draft", DRAFT), ("tiny", TINY))}
    text = paths["tiny"].read_text()
    assert "params_total = " in text and "# V e + e h + h + 2 h + h V + V" in text and SHA in text
    assert load_model(str(paths["tiny"])) == model_profile(TINY, name="quick-tiny", checkpoint="tiny.safetensors",
                                                           sha256=SHA)
    assert load_model(f"{paths['draft']}:int8").dtype == "int8"
    assert split_quantization(f"{paths['draft']}:int8") == (str(paths["draft"]), "int8")
    ar = predict(PredictConfig(hardware="tpu-v5e", target=str(paths["target"])), "autoregressive")
    assert ar.mode == "hardware" and ar.ms_per_token > 0
    spec = predict(PredictConfig(hardware="tpu-v5e", target=str(paths["target"]), draft=str(paths["draft"]),
                                 alpha=0.8, k=4), "speculative")
    assert spec.ms_per_token > 0 and spec.expected_tokens_per_step > 1
    tiny = predict(PredictConfig(hardware="tpu-v5e", target=str(paths["tiny"])), "autoregressive")
    assert tiny.ms_per_token > 0
    code, out, err = run(capsys, "predict", "--hardware", "tpu-v5e", "--target", str(paths["target"]), "--json")
    assert code == 0, err
    assert json.loads(out)["ms_per_token"] == pytest.approx(ar.ms_per_token)


def test_runtime_models_carry_their_profiles():
    pytest.importorskip("flax")
    from flax import nnx

    from speccascade.runtime.models import (Tiny, TinyConfig, Transformer, TransformerConfig, as_causal_lm,
                                            tiny_causal_lm)

    transformer_config, tiny_config = TransformerConfig(**TARGET), TinyConfig(**TINY)
    assert transformer_param_count(TARGET) == transformer_config.param_count()
    assert tiny_param_count(TINY) == tiny_config.param_count()
    target = Transformer(transformer_config, rngs=nnx.Rngs(0))
    lm = as_causal_lm(target, "target")
    assert lm.profile == model_profile(transformer_config, name="target")
    assert as_causal_lm(target, "target-bf16", weights="bfloat16").profile.dtype == "bf16"
    assert as_causal_lm(target, "target-int8", weights="int8").profile.dtype == "int8"
    assert tiny_causal_lm(Tiny(tiny_config, rngs=nnx.Rngs(1))).profile.architecture == "projection"
