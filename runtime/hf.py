"""Hugging Face checkpoints in the runtime: ``config.json`` + ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``) + ``tokenizer.json``, for the Llama family (``model_type`` llama, mistral) and
Gemma 1 (``gemma``).

Loading is tensor by tensor: every shape is checked against config.json from the safetensors headers first (no
weight is read before the whole checkpoint is known to match), then each layer's tensors are read with
``safetensors.safe_open`` (one handle per layer, closed after it, so the file's mapped pages do not accumulate),
converted to the requested format (``float32``, ``bfloat16``, or ``int8``: weight-only, per output channel,
quantized in row blocks of :data:`QUANT_ROWS` so no full-precision copy of a large tensor is built), and put on
the device; the host copy is dropped before the next tensor. Peak memory is the loaded model plus about two of its
largest tensors (measured in docs/real-models.md). The fused matrices of the runtime's layout (q/k/v, gate/up) are
concatenations of the checkpoint's per-projection weights, which Hugging Face stores ``[out, in]`` like the runtime.

Name mapping (``L`` = layer index)::

    model.embed_tokens.weight                 -> embed.embedding            [V, d]
    model.layers.L.self_attn.{q,k,v}_proj     -> layers.L.attn.qkv          [(H + 2 KV) hd, d]
    model.layers.L.self_attn.o_proj           -> layers.L.attn.out          [d, H hd]
    model.layers.L.mlp.{gate,up}_proj         -> layers.L.mlp.gate_up       [2 f, d]
    model.layers.L.mlp.down_proj              -> layers.L.mlp.down          [d, f]
    model.layers.L.input_layernorm            -> layers.L.attn_norm.scale   [d]
    model.layers.L.post_attention_layernorm   -> layers.L.mlp_norm.scale    [d]
    model.norm                                -> final_norm.scale           [d]
    lm_head.weight (untied only)              -> head.kernel                [V, d]

Hugging Face stores rotary q/k features in the rotate-half order (pairs (i, i + hd/2)), the runtime's rotary.
What is refused, one line each (:class:`InputError`, exit 2 in the CLI): a missing directory or file, an unknown
``model_type``, ``rope_scaling``, attention/MLP biases, an activation other than SiLU / GELU, a tensor whose shape
disagrees with config.json, a missing or unexpected tensor, a cache longer than Mistral's sliding window (the
runtime attends over the whole cache, exact only below the window).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from speccascade.errors import InputError
from speccascade.readers import read_json

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.json"
FAMILIES = {"llama": "llama", "mistral": "llama", "gemma": "gemma"}   # model_type -> runtime architecture
FORMATS = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "int8": "int8"}
QUANT_ROWS = 8192            # rows quantized per block (a 256,000 x 2,048 table: 32 blocks of 64 MB in float32)
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)   # buffers some older conversions saved


def weight_format(name: str) -> str:
    """``fp32|bf16|int8`` (or the long names) -> the runtime's weight format."""
    if name not in FORMATS:
        raise InputError(f"unknown weight format '{name}'; the runtime stores fp32, bf16 or int8")
    return FORMATS[name]


def is_checkpoint_dir(path: str | Path) -> bool:
    config = Path(path).expanduser() / CONFIG_FILE
    return Path(path).expanduser().is_dir() and (config.exists() or config.is_symlink())  # read_config checks it


def read_config(directory: str | Path) -> dict:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise InputError(f"checkpoint directory {directory} does not exist")
    path = directory / CONFIG_FILE
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: file not found (a Hugging Face checkpoint needs config.json)")
    config = read_json(path)  # regular file, size limit, UTF-8, strict JSON, depth: one line otherwise
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object")
    return config


def _field(config: dict, key: str, where: Path, default: Any = None, required: bool = True):
    value = config.get(key, default)
    if value is None and required:
        raise InputError(f"{where}: config.json lacks '{key}'")
    return value


def _activation(config: dict, family: str, where: Path) -> str:
    """The gated MLP's activation as the runtime names it. Gemma: ``hidden_activation`` if set, else the
    tanh-approximated GELU whatever ``hidden_act`` says (what transformers does since its PR 29402: Gemma was
    trained with the approximation; the original config.json files say "gelu")."""
    if family == "gemma":
        name = config.get("hidden_activation") or "gelu_pytorch_tanh"
    else:
        name = config.get("hidden_act", "silu")
    known = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
             "gelu": "gelu"}
    if name not in known:
        raise InputError(f"{where}: activation '{name}' is not supported (silu, gelu_pytorch_tanh, gelu)")
    return known[name]


def architecture(config: dict, directory: str | Path) -> str:
    """``llama`` or ``gemma`` from config.json's ``model_type``; an unknown one is an InputError."""
    where = Path(directory) / CONFIG_FILE
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise InputError(f"{where}: unknown architecture model_type={model_type!r} "
                         f"(architectures={config.get('architectures')}); supported: {', '.join(FAMILIES)}")
    return FAMILIES[model_type]


def transformer_config(config: dict, directory: str | Path, weights: str = "bfloat16",
                       max_len: int | None = None):
    """The runtime's ``TransformerConfig`` of a Hugging Face config.json (checked; see the module docstring)."""
    from speccascade.runtime.models.transformer import TransformerConfig

    where = Path(directory) / CONFIG_FILE
    family = architecture(config, directory)
    if config.get("rope_scaling"):
        raise InputError(f"{where}: rope_scaling {config['rope_scaling']} is not supported (plain rotary only)")
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise InputError(f"{where}: {key} = true is not supported (bias-free projections only)")
    d_model = int(_field(config, "hidden_size", where))
    heads = int(_field(config, "num_attention_heads", where))
    head_dim = int(config.get("head_dim") or d_model // heads)
    positions = int(_field(config, "max_position_embeddings", where, 4096))
    limit = positions
    window = config.get("sliding_window") if config.get("model_type") == "mistral" else None
    if window:
        limit = min(limit, int(window))
    if max_len is not None and max_len > limit:
        why = (f"Mistral's sliding window ({window}): the runtime attends over the whole cache, exact only below it"
               if window and max_len > int(window) else f"max_position_embeddings ({positions})")
        raise InputError(f"{where}: a context of {max_len} exceeds {why}")
    tied = bool(config.get("tie_word_embeddings", family == "gemma"))
    try:
        return TransformerConfig(
            vocab_size=int(_field(config, "vocab_size", where)), d_model=d_model,
            n_layers=int(_field(config, "num_hidden_layers", where)), n_heads=heads,
            n_kv_heads=int(config.get("num_key_value_heads") or heads),
            d_ff=int(_field(config, "intermediate_size", where)), max_len=max_len or limit,
            rope_theta=float(config.get("rope_theta") or 10_000.0),
            norm_eps=float(config.get("rms_norm_eps") or 1e-6), weights=weights,
            activation=_activation(config, family, where), norm_unit_offset=family == "gemma",
            scaled_embeddings=family == "gemma", tied_embeddings=tied,
            attn_head_dim=head_dim if head_dim * heads != d_model or "head_dim" in config else 0)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None


# --- the checkpoint's tensors ---------------------------------------------------------------------------------
def weight_files(directory: str | Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (one file, or the shards of the index)."""
    from safetensors import SafetensorError, safe_open

    directory = Path(directory).expanduser()
    single, index = directory / WEIGHTS_FILE, directory / INDEX_FILE
    if index.exists() or index.is_symlink():
        index_data = read_json(index)
        weight_map = index_data.get("weight_map") if isinstance(index_data, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
            raise InputError(f"{index}: not a safetensors index (needs a 'weight_map' object of file names)")
        files = {name: directory / shard for name, shard in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise InputError(f"{shard}: file not found (listed in {index.name})")
        return files
    if single.is_file():
        try:
            with safe_open(str(single), framework="np") as handle:
                return {name: single for name in handle.keys()}
        except (SafetensorError, OSError) as error:
            raise InputError(f"{single}: not a readable safetensors file: {error}") from None
    raise InputError(f"{directory}: no {WEIGHTS_FILE} or {INDEX_FILE} (Hugging Face safetensors weights)")


def expected_tensors(config) -> dict[str, tuple[tuple[int, ...], str, str]]:
    """Hugging Face tensor name -> (shape config.json implies, runtime leaf path, fused part) in load order."""
    d, hd, f, v = config.d_model, config.head_dim, config.d_ff, config.vocab_size
    q, kv = config.n_heads * hd, config.n_kv_heads * hd
    tensors = {"model.embed_tokens.weight": ((v, d), "embed", "")}
    for layer in range(config.n_layers):
        at = f"model.layers.{layer}."
        tensors.update({
            at + "input_layernorm.weight": ((d,), f"layers.{layer}.attn_norm", ""),
            at + "self_attn.q_proj.weight": ((q, d), f"layers.{layer}.attn.qkv", "q"),
            at + "self_attn.k_proj.weight": ((kv, d), f"layers.{layer}.attn.qkv", "k"),
            at + "self_attn.v_proj.weight": ((kv, d), f"layers.{layer}.attn.qkv", "v"),
            at + "self_attn.o_proj.weight": ((d, q), f"layers.{layer}.attn.out", ""),
            at + "post_attention_layernorm.weight": ((d,), f"layers.{layer}.mlp_norm", ""),
            at + "mlp.gate_proj.weight": ((f, d), f"layers.{layer}.mlp.gate_up", "gate"),
            at + "mlp.up_proj.weight": ((f, d), f"layers.{layer}.mlp.gate_up", "up"),
            at + "mlp.down_proj.weight": ((d, f), f"layers.{layer}.mlp.down", ""),
        })
    tensors["model.norm.weight"] = ((d,), "final_norm", "")
    if not config.tied_embeddings:
        tensors["lm_head.weight"] = ((v, d), "head", "")
    return tensors


def check_tensors(directory: Path, config, files: dict[str, Path]) -> None:
    """Every expected tensor is present with the shape config.json implies; nothing unknown is there."""
    from safetensors import SafetensorError, safe_open

    expected = expected_tensors(config)
    missing = [name for name in expected if name not in files]
    if missing:
        raise InputError(f"{directory}: tensor {missing[0]} is missing from the checkpoint"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = [name for name in files if name not in expected and not name.endswith(IGNORED_SUFFIXES)
             and not (name == "lm_head.weight" and config.tied_embeddings)]
    if extra:
        raise InputError(f"{files[extra[0]]}: unexpected tensor {extra[0]} for this config.json "
                         f"({len(extra)} unexpected)")
    by_file: dict[Path, list[str]] = {}
    for name in expected:
        by_file.setdefault(files[name], []).append(name)
    for path, names in by_file.items():
        try:
            with safe_open(str(path), framework="np") as handle:
                for name in names:
                    shape = tuple(handle.get_slice(name).get_shape())
                    if shape != expected[name][0]:
                        raise InputError(f"{path}: tensor {name} has shape {shape}, config.json implies "
                                         f"{expected[name][0]}")
        except SafetensorError as error:
            raise InputError(f"{path}: not a readable safetensors file: {error}") from None


def quantize_rows_blocked(slice_, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(W8 int8 [rows, in], scale float32 [rows]) of a safetensors slice, :data:`QUANT_ROWS` rows at a time (the
    rule of :func:`speccascade.runtime.models.quant.quantize_rows`: s = max|W| / 127 per row, W8 = round(W / s))."""
    blocks_q, blocks_s = [], []
    for start in range(0, rows, QUANT_ROWS):
        block = np.asarray(slice_[start:min(start + QUANT_ROWS, rows)], dtype=np.float32)
        peak = np.max(np.abs(block), axis=-1)
        scale = np.where(peak > 0, peak / np.float32(127.0), np.float32(1.0)).astype(np.float32)
        blocks_q.append(np.clip(np.round(block / scale[:, None]), -127, 127).astype(np.int8))
        blocks_s.append(scale)
        del block
    return np.concatenate(blocks_q), np.concatenate(blocks_s)


def _read(handle, name: str, matrix: bool, weights: str):
    """One tensor in the runtime format: a norm gain float32; a matrix float32 / bfloat16 / (int8, scale)."""
    import ml_dtypes

    if not matrix:
        return np.asarray(handle.get_tensor(name), dtype=np.float32)
    if weights == "int8":
        slice_ = handle.get_slice(name)
        return quantize_rows_blocked(slice_, slice_.get_shape()[0])
    target = np.float32 if weights == "float32" else ml_dtypes.bfloat16
    return np.asarray(handle.get_tensor(name), dtype=target)


def _leaf(parts: list, weights: str, matrix_key: str) -> dict:
    """Fused parts -> the runtime module's leaves ({"kernel"} / {"embedding"} or int8 {"q", "scale"})."""
    import jax.numpy as jnp

    if weights == "int8":
        q = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
        s = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
        return {"q": jnp.asarray(q), "scale": jnp.asarray(s)}
    value = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return {matrix_key: jnp.asarray(value)}


def load_params(directory: str | Path, config, files: dict[str, Path] | None = None,
                progress=None) -> dict:
    """The runtime's parameter dict for ``config`` from the checkpoint, tensor by tensor (module docstring)."""
    import jax
    import jax.numpy as jnp
    from safetensors import safe_open

    directory = Path(directory).expanduser()
    files = files or weight_files(directory)
    check_tensors(directory, config, files)
    expected = expected_tensors(config)
    groups: dict[str, list[str]] = {}          # runtime leaf path -> HF names, in fused order
    for name, (_, path, _) in expected.items():
        groups.setdefault(path, []).append(name)
    params: dict = {}
    layer_of = lambda path: path.split(".")[1] if path.startswith("layers.") else path  # noqa: E731
    batches: dict[str, list[str]] = {}
    for path in groups:
        batches.setdefault(layer_of(path), []).append(path)
    for batch in batches.values():
        handles: dict[Path, Any] = {}
        try:
            for path in batch:
                names = groups[path]
                norm = path.endswith("norm")
                parts = []
                for name in names:
                    if files[name] not in handles:
                        handles[files[name]] = safe_open(str(files[name]), framework="np").__enter__()
                    parts.append(_read(handles[files[name]], name, not norm, config.weights))
                if norm:
                    leaf = {"scale": jnp.asarray(parts[0])}
                else:
                    leaf = _leaf(parts, config.weights, "embedding" if path == "embed" else "kernel")
                del parts
                # wait for the host -> device copy: its host buffer is released only then (without this, copies
                # queued under load kept ~3 GB of host buffers alive while loading Gemma-2B in int8)
                jax.block_until_ready(leaf)
                node = params
                keys = [int(k) if k.isdigit() else k for k in path.split(".")]
                for key in keys[:-1]:
                    node = node.setdefault(key, {})
                node[keys[-1]] = leaf
                if progress is not None:
                    progress(path)
        finally:
            for handle in handles.values():
                handle.__exit__(None, None, None)
    return params


# --- models ---------------------------------------------------------------------------------------------------
def checkpoint_profile(config, hf_config: dict, directory: Path, name: str):
    """The ModelProfile of a loaded checkpoint: the runtime profile of its config, named after the checkpoint,
    with config.json as the source of every number."""
    from speccascade.runtime.profiles import model_profile

    profile = model_profile(config, name=name, kind="transformer")
    notes = [f"loaded from {directory} ({hf_config.get('model_type')}, architectures "
             f"{hf_config.get('architectures')}); weights {config.weights} at load time"]
    if hf_config.get("sliding_window") and hf_config.get("model_type") == "mistral":
        notes.append(f"sliding window {hf_config['sliding_window']}: the cache stays below it (full attention)")
    return profile.model_copy(update={
        "family": str(hf_config.get("model_type")),
        "source": f"Hugging Face checkpoint {directory}: every number from its config.json",
        "notes": notes, "max_positions": int(hf_config.get("max_position_embeddings") or config.max_len),
        "sliding_window": int(hf_config["sliding_window"]) if hf_config.get("sliding_window") else None})


def load_checkpoint(directory: str | Path, weights: str = "bf16", max_len: int | None = None,
                    name: str | None = None, progress=None):
    """A :class:`~speccascade.runtime.api.CausalLM` from a Hugging Face checkpoint directory, its weights in
    ``weights`` (fp32, bf16 or int8; cast or quantized while loading)."""
    from speccascade.runtime.models.transformer import causal_lm

    directory = Path(directory).expanduser()
    hf_config = read_config(directory)
    config = transformer_config(hf_config, directory, weight_format(weights), max_len)
    files = weight_files(directory)
    params = load_params(directory, config, files, progress)
    short = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8"}[config.weights]
    name = name or f"{directory.name}:{short}"
    return causal_lm(config, params, name, config.max_len,
                     profile=checkpoint_profile(config, hf_config, directory, name))


def config_summary(directory: str | Path) -> dict:
    """What a checkpoint is, without reading a weight: family, shapes and bytes per format (docs, --dry-run)."""
    directory = Path(directory).expanduser()
    hf_config = read_config(directory)
    config = transformer_config(hf_config, directory, "float32")
    params = config.param_count()
    return {"model_type": hf_config.get("model_type"), "architecture": architecture(hf_config, directory),
            "params": params, "bytes": {"fp32": 4 * params, "bf16": 2 * params, "int8": params},
            "config": replace(config, weights="float32").to_dict(),
            "head_dim": config.head_dim, "sqrt_d_model": math.sqrt(config.d_model)}
