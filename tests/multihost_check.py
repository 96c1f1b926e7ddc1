"""Run by tests/test_multihost.py as two processes (SPECCASCADE_* multi-host variables set, 4 CPU devices each):
one 8-device mesh over both; the Target tensor-parallel over it; prints one JSON line per process.

Checked in each process: the sharded verification forward (K + 1 = 5 tokens after a prefill) gives the logits of
the same forward on one local device, and greedy decoding with the sharded Target (autoregressive and
speculative, drafter replicated) gives the single-device tokens."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from speccascade.runtime.distributed import initialize, shard_roles  # noqa: E402

process = initialize()  # from SPECCASCADE_COORDINATOR / NUM_PROCESSES / PROCESS_ID / LOCAL_DEVICES

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from speccascade.hardware import load_model  # noqa: E402
from speccascade.runtime.decoding import Autoregressive, Decoder, Speculative  # noqa: E402
from speccascade.runtime.random_models import random_transformer  # noqa: E402

# Llama-3-shaped (GQA, untied head) at test size, float32; 8 kv heads so the KV cache splits over 8 devices too
shape = dict(vocab=256, d_model=64, layers=2, heads=8, kv_heads=8, head_dim=8, d_ff=128, dtype="fp32")
profile = load_model("llama-3-8b").model_copy(update=shape)
target = random_transformer(profile, seed=0, max_len=64)
draft = random_transformer(profile.model_copy(update={"layers": 1}), seed=1, max_len=64)
prompt, new, capacity = [1, 5, 9, 33, 70, 2], 16, 48

single = {"autoregressive": Decoder(Autoregressive(target), capacity).generate(prompt, new).tokens,
          "speculative": Decoder(Speculative(draft, target, k=4), capacity).generate(prompt, new).tokens}

tokens = jnp.asarray([prompt], jnp.int32)
verify = jnp.asarray([[7, 11, 13, 17, 19]], jnp.int32)


def verification(model):
    cache = model.init_cache(1, capacity)
    _, cache = model.forward(model.params, cache, tokens)
    return model.forward(model.params, cache, verify)[0]


expected = np.asarray(verification(target))
models = shard_roles({"target": target, "draft": draft})
sharded_logits = np.asarray(multihost_utils.process_allgather(verification(models["target"]), tiled=True))
sharded = {"autoregressive": Decoder(Autoregressive(models["target"]), capacity).generate(prompt, new).tokens,
           "speculative": Decoder(Speculative(models["draft"], models["target"], k=4), capacity)
           .generate(prompt, new).tokens}
split = [path for path, leaf in jax.tree_util.tree_flatten_with_path(models["target"].params)[0]
         if not leaf.sharding.is_fully_replicated]
print(json.dumps({"process": process.process_index, "processes": process.process_count,
                  "local_devices": process.local_devices, "devices": process.devices,
                  "max_logit_diff": float(np.abs(sharded_logits - expected).max()),
                  "logit_scale": float(np.abs(expected).max()), "split_leaves": len(split),
                  "single": {k: list(v) for k, v in single.items()},
                  "sharded": {k: list(v) for k, v in sharded.items()}}))
