"""Tiny random Hugging Face checkpoints written with numpy (config.json + safetensors, no download), for the
loader and reference tests: Llama (GQA, untied head), Gemma (MQA like 2B, or MHA with n_heads x head_dim !=
d_model like 7B), Mistral (GQA, sliding window); optionally sharded with an index, and a tokenizer.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

ARCHITECTURES = {"llama": "LlamaForCausalLM", "gemma": "GemmaForCausalLM", "mistral": "MistralForCausalLM"}
# small shapes of each family's layout (vocab 96 so byte prompts and a small tokenizer fit)
FAMILIES = {
    "llama": dict(model_type="llama", d=32, heads=4, kv=2, ff=64),                          # GQA, untied head
    "gemma-2b": dict(model_type="gemma", d=32, heads=4, kv=1, ff=64, head_dim=8),           # MQA, tied
    "gemma-7b": dict(model_type="gemma", d=24, heads=4, kv=4, ff=48, head_dim=8),           # MHA, 4 x 8 != 24
    "mistral": dict(model_type="mistral", d=32, heads=8, kv=2, ff=64),                       # GQA, window
}


# Weight scales that keep greedy outputs of these random models varied (a tied head over a residual stream that
# the input embedding dominates repeats the last token): matrices 3 / sqrt(in), embeddings N(0, 0.1^2), gains
# 1 (Llama) or 0 (Gemma's 1 + g) plus N(0, 0.1^2). Measured: 8-15 distinct tokens in 16 for every family.
MATRIX_SCALE, EMBEDDING_STD = 3.0, 0.1


def hf_config(model_type: str = "llama", vocab: int = 96, d: int = 32, layers: int = 2, heads: int = 4,
              kv: int = 2, ff: int = 64, head_dim: int | None = None, tied: bool | None = None,
              theta: float = 10_000.0, max_pos: int = 128) -> dict:
    tied = (model_type == "gemma") if tied is None else tied
    config = {"model_type": model_type, "architectures": [ARCHITECTURES[model_type]], "vocab_size": vocab,
              "hidden_size": d, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv, "intermediate_size": ff, "max_position_embeddings": max_pos,
              "rms_norm_eps": 1e-6, "rope_theta": theta, "tie_word_embeddings": tied, "bos_token_id": 1,
              "eos_token_id": 2, "pad_token_id": 0, "hidden_act": "gelu" if model_type == "gemma" else "silu",
              "torch_dtype": "float32"}
    if model_type == "gemma":
        config["head_dim"] = head_dim or d // heads
    if model_type == "mistral":
        config["sliding_window"] = max_pos
    return config


def hf_tensors(config: dict, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Random weights in Hugging Face names and [out, in] layout (norm gains near 1, or near 0 for Gemma)."""
    rng = np.random.default_rng(seed)
    d, vocab, ff = config["hidden_size"], config["vocab_size"], config["intermediate_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim") or d // heads
    gemma = config["model_type"] == "gemma"

    def matrix(rows, cols, scale=MATRIX_SCALE):
        return (scale * rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(dtype)

    def gain():
        return ((0.0 if gemma else 1.0) + 0.1 * rng.standard_normal(d)).astype(dtype)

    tensors = {"model.embed_tokens.weight": (EMBEDDING_STD * rng.standard_normal((vocab, d))).astype(dtype)}
    for layer in range(config["num_hidden_layers"]):
        at = f"model.layers.{layer}."
        tensors.update({
            at + "input_layernorm.weight": gain(), at + "post_attention_layernorm.weight": gain(),
            at + "self_attn.q_proj.weight": matrix(heads * hd, d), at + "self_attn.k_proj.weight": matrix(kv * hd, d),
            at + "self_attn.v_proj.weight": matrix(kv * hd, d), at + "self_attn.o_proj.weight": matrix(d, heads * hd),
            at + "mlp.gate_proj.weight": matrix(ff, d), at + "mlp.up_proj.weight": matrix(ff, d),
            at + "mlp.down_proj.weight": matrix(d, ff)})
    tensors["model.norm.weight"] = gain()
    if not config["tie_word_embeddings"]:
        tensors["lm_head.weight"] = matrix(vocab, d)
    return tensors


def write_checkpoint(directory: str | Path, config: dict, tensors: dict[str, np.ndarray],
                     shards: int = 1) -> Path:
    """config.json + model.safetensors (or ``shards`` files + model.safetensors.index.json), metadata format
    "pt" as transformers' save_pretrained writes it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    if shards == 1:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return directory
    names = list(tensors)
    weight_map = {}
    for index in range(shards):
        part = names[index::shards]
        file = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        save_file({name: tensors[name] for name in part}, str(directory / file), metadata={"format": "pt"})
        weight_map.update({name: file for name in part})
    total = int(sum(t.nbytes for t in tensors.values()))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                         "weight_map": weight_map}))
    return directory


def make_checkpoint(directory: str | Path, family: str = "llama", seed: int = 0, shards: int = 1,
                    **overrides) -> Path:
    spec = {**FAMILIES[family], **overrides}
    config = hf_config(**spec)
    return write_checkpoint(directory, config, hf_tensors(config, seed), shards)


def write_tokenizer(directory: str | Path, vocab: int = 96) -> Path:
    """A byte-level BPE tokenizer.json trained with the ``tokenizers`` library on a few lines (ids < vocab)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet()[:0], show_progress=False)
    text = ["def main(argv):", "import os", "return value", "for name in names:", "print(name)"] * 20
    tokenizer.train_from_iterator(text, trainer)
    path = Path(directory) / "tokenizer.json"
    tokenizer.save(str(path))
    return path
