"""Peak memory and time of loading a real-size Hugging Face checkpoint (docs/real-models.md, "Memory").

    python3 benchmarks/hf_load_memory.py --profile gemma-2b --dir /tmp/gemma-2b-hf --formats bf16,int8

writes (once; kept for reruns) a checkpoint of the profile's exact shape in the Hugging Face layout, bf16 values
from a seeded random block (config.json + model-0000N-of-0000M.safetensors + model.safetensors.index.json, about
2 GB per shard), then loads it with the runtime's loader in a fresh process per format and reports, as one JSON
line, the checkpoint bytes, the loaded weight bytes, the largest tensor, the load seconds and the process's peak
resident set size (``ru_maxrss``: everything the process touched, the file's mapped pages included).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARD_BYTES = 2 << 30


def write_checkpoint(profile_name: str, directory: Path) -> dict:
    import ml_dtypes
    import numpy as np
    from safetensors.numpy import save_file

    from speccascade.hardware import load_model

    profile = load_model(profile_name)
    hd, q, kv = profile.head_dim, profile.heads * profile.head_dim, profile.kv_heads * profile.head_dim
    d, f, v = profile.d_model, profile.d_ff, profile.vocab
    gemma = profile.family == "gemma"
    config = {"model_type": "gemma" if gemma else "llama", "vocab_size": v, "hidden_size": d,
              "num_hidden_layers": profile.layers, "num_attention_heads": profile.heads,
              "num_key_value_heads": profile.kv_heads, "intermediate_size": f, "head_dim": hd,
              "max_position_embeddings": profile.max_positions or 4096, "rms_norm_eps": profile.norm_eps,
              "rope_theta": profile.rope_theta, "tie_word_embeddings": profile.tied_embeddings, "bos_token_id": 2,
              "hidden_act": "gelu" if gemma else "silu", "torch_dtype": "bfloat16"}
    shapes = {"model.embed_tokens.weight": (v, d)}
    for layer in range(profile.layers):
        at = f"model.layers.{layer}."
        shapes.update({at + "input_layernorm.weight": (d,), at + "self_attn.q_proj.weight": (q, d),
                       at + "self_attn.k_proj.weight": (kv, d), at + "self_attn.v_proj.weight": (kv, d),
                       at + "self_attn.o_proj.weight": (d, q), at + "post_attention_layernorm.weight": (d,),
                       at + "mlp.gate_proj.weight": (f, d), at + "mlp.up_proj.weight": (f, d),
                       at + "mlp.down_proj.weight": (d, f)})
    shapes["model.norm.weight"] = (d,)
    if not profile.tied_embeddings:
        shapes["lm_head.weight"] = (v, d)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    rng = np.random.default_rng(0)
    block = (rng.standard_normal(1 << 22, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
    shards, current, size = [], {}, 0
    for name, shape in shapes.items():
        count = math.prod(shape)
        if size and size + 2 * count > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[name] = np.resize(np.roll(block, int(rng.integers(block.size))), count).reshape(shape)
        size += 2 * count
    shards.append(current)
    weight_map = {}
    for index, tensors in enumerate(shards):
        file = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(directory / file), metadata={"format": "pt"})
        weight_map.update({name: file for name in tensors})
        tensors.clear()
    total = 2 * sum(math.prod(shape) for shape in shapes.values())
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                         "weight_map": weight_map}))
    return {"checkpoint_bytes": total, "largest_tensor_bytes": 2 * max(math.prod(s) for s in shapes.values()),
            "shards": len(shards)}


def load_once(directory: str, fmt: str) -> None:
    """(In a fresh process) load the checkpoint and print one JSON line."""
    import jax

    from speccascade.runtime.hf import load_checkpoint

    started = time.perf_counter()
    model = load_checkpoint(directory, fmt)
    jax.block_until_ready(model.params)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"format": fmt, "load_s": round(seconds, 1), "weight_bytes": model.param_bytes,
                      "peak_rss_bytes": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="gemma-2b")
    parser.add_argument("--dir", default="/tmp/gemma-2b-hf")
    parser.add_argument("--formats", default="bf16,int8")
    parser.add_argument("--load-only", metavar="FORMAT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        load_once(args.dir, args.load_only)
        return
    directory = Path(args.dir)
    written = None
    if not (directory / "model.safetensors.index.json").is_file():
        started = time.perf_counter()
        written = write_checkpoint(args.profile, directory)
        written["write_s"] = round(time.perf_counter() - started, 1)
    results = []
    for fmt in args.formats.split(","):
        done = subprocess.run([sys.executable, __file__, "--dir", str(directory), "--load-only", fmt],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps({"profile": args.profile, "dir": str(directory), "written": written, "loads": results}))


if __name__ == "__main__":
    main()
