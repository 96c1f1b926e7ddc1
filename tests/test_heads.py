"""Decoding heads and tree verification (runtime/heads, runtime/decoding/heads.py).

* the tree mask: each node sees the cached context, its ancestors and itself only, so a tree forward gives every
  node the logits of a plain causal forward over the context and its path (and the mask is the ancestor relation
  of the builder's paths);
* greedy tree decoding is token-identical to the independent greedy reference on 20 prompts for every variant
  (Medusa, Cascadusa, Cascadusa-var, Hydra-style), with trees deep and wide enough to accept paths through
  non-first siblings, and compiles one step;
* sampled tree decoding follows the Target's law (the shared chi-square harness, fixed seed), with the accepted
  paths that matter (depth >= 2, a non-first child) taken; a deliberately broken variant (children verified against
  a child's logits instead of their parent's) fails;
* a trained head beats a random head's top-1 (a few dozen self-distillation steps); heads checkpoints round-trip;
* typical acceptance is labelled lossy and still greedy-identical under greedy decoding.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from speccascade.runtime.api import with_position
from speccascade.runtime.decoding import Decoder, SamplingConfig, build_strategy
from speccascade.runtime.decoding.heads import PAIR, HeadsTree
from speccascade.runtime.heads import VARIANTS, random_heads
from speccascade.runtime.heads import tree as tree_module
from speccascade.runtime.heads.tree import make_tree
from speccascade.strategy_names import StrategyKnobs

from lossless_harness import greedy_reference, strategy_law, varied_transformer
from runtime_fixtures import random_prompts

VOCAB, CAPACITY, NEW = 64, 64, 24
# a tree with depth 3 and several siblings per level (best-first over these accuracies)
ACCURACY = [[0.45, 0.2, 0.1, 0.05], [0.35, 0.15, 0.08], [0.3, 0.1]]
NODES = 12


@pytest.fixture(scope="module")
def target():
    (model,) = varied_transformer("heads-target", vocab=VOCAB, max_len=CAPACITY, seed=0, d_model=32, n_layers=1,
                                  n_heads=4, n_kv_heads=2, d_ff=64)
    return model


@pytest.fixture(scope="module")
def prompts():
    return random_prompts(20, VOCAB, seed=3, min_len=2, max_len=8)  # one prefill bucket


@pytest.fixture(scope="module")
def reference(target, prompts):
    return greedy_reference(target, prompts, NEW)


def test_the_tree_mask_is_the_ancestor_relation_and_each_node_sees_only_its_ancestors(target):
    tree = make_tree(ACCURACY, NODES)
    paths = [()] + list(tree.candidate.paths)
    expected = np.array([[len(b) <= len(a) and a[:len(b)] == b for b in paths] for a in paths])
    np.testing.assert_array_equal(tree.mask, expected)
    assert tree.depth == 3 and tree.children.shape[1] >= 2
    assert all(tree.parent[i] < i for i in range(1, tree.nodes + 1))

    rng = np.random.default_rng(0)
    context = rng.integers(0, VOCAB, 6).tolist()
    tokens = rng.integers(0, VOCAB, tree.nodes + 1).astype(np.int32)
    cache = target.init_cache(1, CAPACITY)
    _, cache = target.forward(target.params, cache, jnp.asarray([context[:-1]], jnp.int32))
    base = len(context) - 1
    tokens[0] = context[-1]
    logits, _, _ = jax.jit(target.forward_hidden)(target.params, with_position(cache, base),
                                                  jnp.asarray(tokens)[None], base + jnp.asarray(tree.depth_of),
                                                  jnp.asarray(tree.mask))
    for node in range(tree.nodes + 1):
        chain = [a for a in range(tree.nodes + 1) if tree.mask[node, a]]
        sequence = context[:-1] + tokens[chain].tolist()
        full, _ = target.forward(target.params, target.init_cache(1, len(sequence)),
                                 jnp.asarray([sequence], jnp.int32))
        np.testing.assert_allclose(np.asarray(logits[0, node]), np.asarray(full[0, -1]), rtol=2e-4, atol=2e-4,
                                   err_msg=f"node {node}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_tree_decoding_is_token_identical_to_autoregressive(target, prompts, reference, variant):
    heads = random_heads(target, variant, heads=3, seed=1, scale=0.5)
    strategy = build_strategy("heads", None, None, target, knobs=StrategyKnobs(tree_nodes=NODES), heads=heads)
    assert isinstance(strategy, HeadsTree)
    strategy = HeadsTree(heads, target, NODES, accuracy=ACCURACY)
    decoder = Decoder(strategy, CAPACITY)
    accepted, off_top1 = [], 0
    for prompt, expected in zip(prompts, reference):
        generation = decoder.generate(prompt, NEW)
        assert generation.tokens == expected, (variant, prompt)
        for step in generation.steps:
            accepted.append(step.pairs[PAIR].accepted)
            assert step.emitted == step.pairs[PAIR].accepted + 1
            off_top1 += step.extras["off_top1"] > 0
    assert decoder.compilations() == 1
    assert max(accepted) >= 2 and np.mean(accepted) > 0.3 and off_top1 > 0, (variant, np.mean(accepted), off_top1)


def test_typical_acceptance_is_labelled_lossy_and_greedy_identical(target, prompts, reference):
    heads = random_heads(target, "medusa", heads=3, seed=2, scale=0.5)
    strategy = HeadsTree(heads, target, NODES, accuracy=ACCURACY, acceptance="typical")
    assert "LOSSY" in strategy.config()["acceptance"]
    assert HeadsTree(heads, target, NODES).acceptance == "lossless"  # the default
    decoder = Decoder(strategy, CAPACITY)
    assert decoder.generate(prompts[0], NEW).tokens == reference[0]


# --- sampled law ------------------------------------------------------------------------------------------------

LAW_VOCAB, LAW_CAPACITY, LAW_PROMPT = 8, 32, [3, 1, 4]
LAW_ACCURACY = [[0.4, 0.3, 0.1], [0.4, 0.2], [0.3]]
LAW_NODES = 7
PLAIN = SamplingConfig(greedy=False)


@pytest.fixture(scope="module")
def law_target():
    (model,) = varied_transformer("heads-law", vocab=LAW_VOCAB, max_len=LAW_CAPACITY, seed=4, d_model=16, n_layers=1,
                                  n_heads=2, n_kv_heads=2, d_ff=32)
    return model


def _observe(state):
    """[steps with >= 2 accepted nodes, steps whose accepted path holds a non-first child]"""
    stats = state["stats"]
    return jnp.stack([stats["pairs"][PAIR]["accepted"] >= 2, stats["extras"]["off_top1"] > 0])


def _law(law_target, variant, runs, tree=None):
    heads = random_heads(law_target, variant, heads=3, seed=5, scale=1.0)
    strategy = HeadsTree(heads, law_target, LAW_NODES, sampling=PLAIN, accuracy=LAW_ACCURACY, tree=tree)
    decoder = Decoder(strategy, LAW_CAPACITY, donate=False)
    return strategy_law(decoder, law_target, LAW_PROMPT, strategy.tree.depth + 2, runs, seed=11, observe=_observe)


def test_sampled_tree_decoding_follows_the_target_law(law_target):
    """Hydra-style heads (tokens depend on the path); the verification is the same code for every variant."""
    result, seen = _law(law_target, "hydra", 20_000)
    assert result.pvalue > 1e-3, str(result)
    deep, sibling = seen
    assert deep > 500 and sibling > 500, seen  # the paths a tree-only bug would hide in were taken


def test_a_broken_tree_verifier_fails_the_law(law_target, monkeypatch):
    """NOT LOSSLESS, on purpose: each node's children verified against the first child's logits instead of their
    parent's (the off-by-one of tree verification). The harness must reject it. (That the mask matters is
    checked directly above: a node's logits equal the causal forward over its path only.)"""
    real = tree_module.verify_tree

    def off_by_one(key, tokens, logits, tree, config):
        shifted = jnp.asarray(logits)[jnp.asarray(np.maximum(tree.children[:, 0], 0))]
        return real(key, tokens, shifted, tree, config)

    monkeypatch.setattr(tree_module, "verify_tree", off_by_one)
    broken, _ = _law(law_target, "medusa", 3_000)
    assert broken.pvalue < 1e-6, str(broken)


# --- training ---------------------------------------------------------------------------------------------------

def test_a_trained_head_beats_a_random_head_and_checkpoints_round_trip(target, tmp_path):
    """Self-distillation on a small Target's own greedy continuations (a few dozen steps): the training loss falls
    and the trained Medusa and Hydra heads' held-out top-1 beats random heads' (random blocks and output layers);
    the safetensors file round-trips and a flipped byte is caught by the manifest's sha256."""
    from speccascade.errors import InputError
    from speccascade.runtime.checkpoint import read_manifest, write_manifest
    from speccascade.runtime.heads.evaluate import evaluate_heads
    from speccascade.runtime.heads.model import HeadsConfig, heads_model, init_heads, lm_head_of
    from speccascade.runtime.heads.data import annotate, continue_greedily
    from speccascade.runtime.heads.train import HeadsPlan, read_heads_file, save_heads, train_heads

    small = target
    plan = HeadsPlan(prompt_len=8, generate=16, steps=30, batch=128, learning_rate=3e-3, warmup_steps=4)
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, VOCAB, (64, plan.prompt_len)).astype(np.int32)
    tokens = continue_greedily(small, prompts, plan.generate, batch=64)
    data = annotate(small, tokens, plan.prompt_len, batch=64)
    train, heldout = (dataclasses.replace(data, tokens=data.tokens[rows], hidden=data.hidden[rows],
                                          labels=data.labels[rows]) for rows in (slice(0, 48), slice(48, 64)))
    assert np.mean(train.labels[:, plan.prompt_len - 1:-1] == train.tokens[:, plan.prompt_len:]) > 0.95
    lm_head, embed = lm_head_of(small)
    for variant in ("medusa", "hydra"):
        config = HeadsConfig(variant, plan.heads, 32, VOCAB)
        params, history = train_heads(config, init_heads(config, lm_head, embed), train, plan, seed=1)
        assert np.mean(history[-5:], axis=0)[1] < np.mean(history[:5], axis=0)[1]
        trained = evaluate_heads(heads_model(config, params), heldout)["cumulative"]
        randomized = evaluate_heads(heads_model(config, init_heads(config, None, None, seed=2, random_blocks=1.0)),
                                    heldout)["cumulative"]
        for k in range(config.heads):
            assert trained[k][0] > randomized[k][0] + 0.05, (variant, k, trained[k][0], randomized[k][0])
        model = heads_model(config, params, name=variant)
        save_heads(model, tmp_path / f"{variant}.safetensors", "abc")
        loaded_config, loaded, header = read_heads_file(tmp_path / f"{variant}.safetensors")
        assert loaded_config == config and header["target_sha256"] == "abc"
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    write_manifest(tmp_path, ["medusa.safetensors"], {})
    data = bytearray((tmp_path / "medusa.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "medusa.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupted"):
        read_manifest(tmp_path)


def test_heads_cli_rejects_bad_input_in_one_line(capsys):
    from cli_runner import run

    for argv, needle in [(("bench", "--sizes", "100"), "error: --sizes must lie in [0, 64]"),
                         (("bench", "--sizes", "a,b"), "error: --sizes must be comma-separated integers"),
                         (("bench", "--variants", "nope"), "error: --variants: unknown"),
                         (("bench", "--new-tokens", "0"), "error: --new-tokens must be in [1,")]:
        code, out, err = run(capsys, "runtime", "heads", *argv)
        assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(needle), (argv, code, err)
