"""Run by tests/test_sharding.py in a subprocess with 8 fake CPU devices (XLA_FLAGS set before JAX starts).

Decodes greedily with the target on one device and with the target tensor-parallel over 8 devices (drafters
replicated), for the repository's transformer and for the toy test model, and prints one JSON line."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from runtime_fixtures import perturbed, random_prompts, toy_trio  # noqa: E402
from speccascade.runtime.decoding import Autoregressive, Decoder, Speculative, VerticalCascade  # noqa: E402
from speccascade.runtime.models.transformer import Transformer, TransformerConfig, as_causal_lm  # noqa: E402
from speccascade.runtime.sharding import (  # noqa: E402
    AXIS, ShardingRule, make_mesh, replicate_model, shard_model, sharding_plan,
)

CAPACITY, NEW = 48, 16
TOY_RULES = (ShardingRule(r"(wq|wk|wv|w_up)$", 1), ShardingRule(r"(wo|w_down)$", 0), ShardingRule(r"head$", 1))


def transformer_trio():
    config = TransformerConfig(vocab_size=512, d_model=64, n_layers=2, n_heads=8, n_kv_heads=8, d_ff=128,
                               max_len=CAPACITY)
    target = as_causal_lm(Transformer(config, rngs=nnx.Rngs(0)), "tp-target")
    # the training init (std 0.02) gives nearly flat logits (near-ties) and, with the tied head, a model that
    # repeats its input token; rescale every matrix to std 1/sqrt(fan_in) (embedding 0.5, residual outputs x8)
    # so greedy choices are clear-cut and depend on the context
    def rescale(path, leaf):
        if leaf.ndim != 2:
            return leaf
        name = jax.tree_util.keystr(path)
        std = 0.5 if "embed" in name else leaf.shape[1] ** -0.5 * (8.0 if ("out" in name or "down" in name) else 1.0)
        return leaf / jnp.std(leaf) * std
    params = jax.tree_util.tree_map_with_path(rescale, target.params)
    target = dataclasses.replace(target, params=params)
    draft = perturbed(target, "tp-draft", noise=0.1, seed=1)
    tiny = perturbed(target, "tp-tiny", noise=0.3, seed=2)
    return tiny, draft, target


def decode(tiny, draft, target, prompts, names):
    outputs = {}
    strategies = {"autoregressive": lambda: Autoregressive(target), "speculative": lambda: Speculative(draft, target, k=3),
                  "vertical": lambda: VerticalCascade(tiny, draft, target, 2, 2)}
    for strategy in (strategies[name]() for name in names):
        decoder = Decoder(strategy, CAPACITY)
        outputs[strategy.name] = [list(decoder.generate(prompt, NEW).tokens) for prompt in prompts]
    return outputs, decoder


def compare(trio, rules, prompts, mesh, names):
    tiny, draft, target = trio
    single, _ = decode(tiny, draft, target, prompts, names)
    kwargs = {} if rules is None else {"rules": rules, "kv_axis": None}
    sharded_target = shard_model(target, mesh, **kwargs)
    sharded, decoder = decode(replicate_model(tiny, mesh), replicate_model(draft, mesh), sharded_target, prompts, names)
    split = [path for path, spec in sharding_plan(target.params, mesh, *(() if rules is None else (rules,))).items()
             if AXIS in spec]
    state = decoder.start(prompts[0])
    hlo = decoder._step.lower(decoder.strategy.params, state).compile().as_text()
    return {"identical": single == sharded, "single": single, "sharded": sharded, "split_leaves": split,
            "collectives": any(op in hlo for op in ("all-reduce", "all-gather", "reduce-scatter", "all-to-all"))}


def main() -> None:
    mesh = make_mesh(8)
    result = {"devices": jax.device_count(), "mesh": dict(mesh.shape)}
    result["transformer"] = compare(transformer_trio(), None, random_prompts(2, 512, seed=4), mesh,
                                    ("autoregressive", "speculative"))
    result["toy"] = compare(toy_trio(vocab=64, max_len=CAPACITY), TOY_RULES, random_prompts(2, 64, seed=5), mesh,
                            ("vertical",))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
