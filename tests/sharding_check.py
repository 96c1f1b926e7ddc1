"""Run by tests/test_sharding.py in a subprocess with 8 fake CPU devices (XLA_FLAGS set before JAX starts).

Decodes greedily with the Target tensor-parallel over 8 devices (drafters replicated), with every strategy the
runtime executes, for the repository's transformer and for the toy test model, and compares each with the same
Target's greedy decoding on one device (the autoregressive decoder, and the independent reference of
tests/lossless_harness.py: an argmax loop over full forwards). Prints one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402

from lossless_harness import greedy_reference, varied_transformer  # noqa: E402
from runtime_fixtures import perturbed, random_prompts, toy_trio  # noqa: E402
from speccascade.runtime.decoding import Autoregressive, Decoder, build_strategy  # noqa: E402
from speccascade.runtime.decoding.sampling import GREEDY  # noqa: E402
from speccascade.runtime.sharding import (  # noqa: E402
    AXIS, ShardingRule, make_mesh, replicate_model, shard_model, sharding_plan,
)
from speccascade.strategy_names import StrategyKnobs  # noqa: E402

CAPACITY, NEW, PROMPTS = 64, 24, 4
KNOBS = StrategyKnobs(k=3, k_tiny=2, filter_width=16)
TOY_RULES = (ShardingRule(r"(wq|wk|wv|w_up)$", 1), ShardingRule(r"(wo|w_down)$", 0), ShardingRule(r"head$", 1))
ALL = ("autoregressive", "speculative", "vertical", "vertical-budget", "filtered")


def transformer_trio():
    # vocabulary 512, 8 heads and 8 KV heads (the KV cache splits 8 ways); weights rescaled so that greedy choices
    # are clear-cut and depend on the context (see varied_transformer)
    (target,) = varied_transformer("tp-target", vocab=512, max_len=CAPACITY, seed=0)
    draft = perturbed(target, "tp-draft", noise=0.1, seed=1)
    tiny = perturbed(target, "tp-tiny", noise=0.3, seed=2)
    return tiny, draft, target


def compare(trio, rules, prompts, mesh, names):
    tiny, draft, target = trio
    single_decoder = Decoder(Autoregressive(target), CAPACITY)
    single = [list(single_decoder.generate(prompt, NEW).tokens) for prompt in prompts]
    reference = [list(tokens) for tokens in greedy_reference(target, prompts, NEW)]
    kwargs = {} if rules is None else {"rules": rules, "kv_axis": None}
    sharded_target = shard_model(target, mesh, **kwargs)
    sharded_tiny, sharded_draft = replicate_model(tiny, mesh), replicate_model(draft, mesh)
    sharded, collectives = {}, {}
    for name in names:
        decoder = Decoder(build_strategy(name, sharded_tiny, sharded_draft, sharded_target, GREEDY, KNOBS), CAPACITY)
        sharded[name] = [list(decoder.generate(prompt, NEW).tokens) for prompt in prompts]
        if name == names[-1]:  # the filtered cascade: Tiny and Draft replicated, the Target's verification split
            hlo = decoder._step.lower(decoder.strategy.params, decoder.start(prompts[0])).compile().as_text()
            collectives[name] = any(op in hlo for op in ("all-reduce", "all-gather", "reduce-scatter", "all-to-all"))
    split = [path for path, spec in sharding_plan(target.params, mesh, *(() if rules is None else (rules,))).items()
             if AXIS in spec]
    return {"identical": {name: tokens == single for name, tokens in sharded.items()},
            "reference_identical": reference == single, "single": single, "reference": reference,
            "sharded": sharded, "split_leaves": split, "collectives": collectives}


def main() -> None:
    mesh = make_mesh(8)
    result = {"devices": jax.device_count(), "mesh": dict(mesh.shape), "new_tokens": NEW}
    result["transformer"] = compare(transformer_trio(), None, random_prompts(PROMPTS, 512, seed=4), mesh, ALL)
    result["toy"] = compare(toy_trio(vocab=64, max_len=CAPACITY), TOY_RULES, random_prompts(PROMPTS, 64, seed=5),
                            mesh, ("vertical", "filtered"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
