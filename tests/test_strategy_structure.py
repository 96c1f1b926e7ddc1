"""One vocabulary for strategies: what the runtime executes = the registry's step shape = what the cost model charges.

The runtime side is measured, not read from the strategy: every model forward of a compiled step reports its token
count through ``jax.debug.callback``, so a step that ran an extra Draft review, fed the wrong lag or verified the
wrong number of tokens fails here. The simulator side: replaying a runtime run's own accept/reject outcomes, the
simulator's mean tokens per step equals the run's.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import jax
import numpy as np
import pytest

from speccascade import strategies as registry
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.costmodel.strategies import COSTMODEL
from speccascade.runtime.decoding import RUNTIME, Decoder, build_strategy
from speccascade.simulate import simulate
from speccascade.simulate.build import SIMULATOR
from speccascade.simulate.empirical import empirical_process, parse_empirical
from speccascade.strategy_names import StrategyKnobs

from runtime_fixtures import random_prompts, toy_trio

VOCAB, CAPACITY = 64, 160

# (strategy, knobs): every runtime strategy, with knobs that make reviews/lag edge cases run
GRID = [("autoregressive", {}), ("speculative", {"k": 1}), ("speculative", {"k": 3}),
        ("vertical", {"k": 1, "k_tiny": 1}), ("vertical", {"k": 2, "k_tiny": 3}),
        ("vertical-budget", {"k": 3, "k_tiny": 2}), ("vertical-budget", {"k": 5, "k_tiny": 1}),
        ("filtered", {"k": 2, "filter_width": 4}), ("heads", {"tree_nodes": 6})]
HEADS_ACCURACY = [[0.6, 0.1], [0.6, 0.1], [0.5]]  # marginal rank accuracies: a depth-3 tree of 6 nodes


def counted(model, log: list):
    """The same model, each forward reporting (model name, new tokens) when it runs."""
    def report(tokens):
        count = tokens.shape[1]
        jax.debug.callback(lambda _: log.append((model.name, count)), tokens[0, 0])

    def forward(params, cache, tokens):
        report(tokens)
        return model.forward(params, cache, tokens)

    if hasattr(model, "propose"):  # decoding heads: one call over the hidden state of one position
        def propose(params, hidden, root, tree):
            jax.debug.callback(lambda _: log.append((model.name, 1)), hidden[0])
            return model.propose(params, hidden, root, tree)

        return dataclasses.replace(model, propose=propose)

    columns = hidden = None
    if model.forward_columns is not None:
        def columns(params, cache, tokens, ids):
            report(tokens)
            return model.forward_columns(params, cache, tokens, ids)

    if model.forward_hidden is not None:  # tree verification (heads)
        def hidden(params, cache, tokens, positions=None, mask=None):
            report(tokens)
            return model.forward_hidden(params, cache, tokens, positions, mask)

    return dataclasses.replace(model, forward=forward, forward_columns=columns, forward_hidden=hidden)


@pytest.fixture(scope="module")
def trio():
    return toy_trio(vocab=VOCAB, max_len=CAPACITY)


@pytest.fixture(scope="module")
def heads_pair():
    """(random Medusa heads, their Target): the heads need a Target with forward_hidden (the runtime's Transformer)."""
    from lossless_harness import varied_transformer
    from speccascade.runtime.heads import random_heads

    (target,) = varied_transformer("structure-target", vocab=VOCAB, max_len=CAPACITY, seed=2, d_model=32, n_heads=4,
                                   n_kv_heads=2, d_ff=64)
    return random_heads(target, "medusa", heads=3, seed=3, scale=0.5), target


def test_every_layer_implements_the_registry():
    assert set(COSTMODEL.names()) == set(registry.names())
    assert set(SIMULATOR.names()) == set(registry.names())
    assert RUNTIME.names() == registry.runtime_names()  # the runtime flag is what the runtime registers
    assert {name for name, _ in GRID} == set(registry.runtime_names())


def _expected(spec: registry.StrategySpec, knobs: dict, reviews: int | None, names: dict) -> Counter:
    shape = spec.step_shape(knobs)
    return Counter({(names[f.role], int(f.tokens)): int(f.count) for f in shape.forwards(reviews)})


@pytest.mark.parametrize("name,knobs", GRID, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in GRID])
def test_runtime_step_runs_the_registry_step_shape(trio, heads_pair, name, knobs):
    log: list = []
    tiny, draft, target = (counted(model, log) for model in trio)
    heads = None
    if "heads" in registry.get(name).roles:
        heads, target = (counted(model, log) for model in heads_pair)
        heads = dataclasses.replace(heads, accuracy=tuple(map(tuple, HEADS_ACCURACY)))
    strategy = build_strategy(name, tiny, draft, target, knobs=StrategyKnobs(**knobs), heads=heads)
    names = dict(zip(("tiny", "draft", "target"), (tiny.name, draft.name, target.name)))
    if heads is not None:
        names["heads"] = heads.name
    decoder = Decoder(strategy, CAPACITY)
    spec = registry.get(name)
    seen_reviews = set()
    for prompt in random_prompts(3, VOCAB, seed=1):
        state = decoder.start(prompt)
        for step in range(6):
            jax.effects_barrier()
            log.clear()
            state = decoder.step(state)
            stats, _ = decoder.read_stats(state, step, 0.0)
            jax.effects_barrier()
            reviews = strategy.reviews({pair: value.proposed for pair, value in stats.pairs.items()})
            seen_reviews.add(reviews)
            expected = _expected(spec, strategy.knobs(), reviews if spec.step_shape(knobs).reviews is None else None,
                                 names)
            assert Counter(log) == expected, (name, knobs, step)
    if name == "vertical-budget" and knobs["k"] > 1:
        assert len(seen_reviews) > 1, "the budget cascade should need different review counts"


def test_cost_model_charges_the_heads_step_shape():
    """heads (abstract mode, --verify-cost R): the charged forwards are the registry shape's, 1 x heads(1) (free
    here) and 1 x target(tree_nodes + 1) at R decode steps, at the tree size the runtime builds."""
    from speccascade.costmodel.config import HeadsAccuracy
    from speccascade.costmodel.predict import evaluate

    config = PredictConfig(strategy="heads", heads_accuracy=HeadsAccuracy(cumulative=False, heads=HEADS_ACCURACY),
                           tree_nodes=6, verify_cost=1.3)
    result = evaluate("heads", config)
    shape = registry.get("heads").step_shape({"tree_nodes": 6})
    assert [(f.role, float(f.count), float(f.tokens)) for f, _ in result["forwards"]] == \
        [(f.role, float(f.count), float(f.tokens)) for f in shape.forwards()] == [("heads", 1, 1), ("target", 1, 7)]
    assert float(result["step_ms"]) == pytest.approx(1.3)
    assert result["tree"].nodes == 6 and result["tree"].depth == 3


@pytest.mark.parametrize("name,knobs", [item for item in GRID if item[0] not in ("autoregressive", "heads")])
def test_cost_model_charges_the_registry_step_shape(name, knobs):
    """predict's stages (abstract mode: every forward costs c, c_tiny or 1) are the registry shape's forwards."""
    config = PredictConfig(strategy=name, c=0.1, c_tiny=0.01, alpha=0.7, alpha_tiny=0.6,
                           **{key: value for key, value in knobs.items()})
    prediction = predict(config, alternatives=False)
    spec = registry.get(name)
    shape = spec.step_shape({**spec.defaults(), **knobs, "k_tiny": config.k_tiny, "k": config.k})
    reviews = shape.reviews
    if reviews is None:  # the cost model charges the expected number of reviews, E[R]
        from speccascade.costmodel.acceptance import expected_reviews

        reviews = float(expected_reviews(config.k, config.k_tiny, config.alpha_tiny))
    charged = [(stage.forwards, stage.tokens_per_forward) for stage in prediction.stages]
    shaped = [(float(f.count), float(f.tokens)) for f in shape.forwards(reviews)]
    np.testing.assert_allclose(np.asarray(charged), np.asarray(shaped), rtol=1e-12)
    cost = {"target": 1.0, "draft": 0.1, "tiny": 0.01}
    assert prediction.step_ms == pytest.approx(sum(float(f.count) * cost[f.role] for f in shape.forwards(reviews)))


def _sequences(steps, pair: str) -> list[list[int]]:
    """Accept/reject outcomes of ``pair`` in step order, one list per verification (rounds split at '|')."""
    out = []
    for step in steps:
        for round_ in step.pairs[pair].sequence.split("|"):
            if round_:
                out.append([1 if flag == "A" else 0 for flag in round_])
    return out


@pytest.mark.parametrize("name,knobs", [("speculative", {"k": 3}), ("vertical", {"k": 2, "k_tiny": 2}),
                                        ("vertical-budget", {"k": 4, "k_tiny": 2}), ("filtered", {"k": 3, "filter_width": 8})])
def test_simulator_replaying_a_run_matches_its_tokens_per_step(trio, name, knobs):
    """Same per-pair outcomes (an empirical replay of the run itself) -> the same mean tokens per step."""
    strategy = build_strategy(name, *trio, knobs=StrategyKnobs(**knobs))
    decoder = Decoder(strategy, CAPACITY)
    steps = [step for prompt in random_prompts(24, VOCAB, seed=5)
             for step in decoder.generate(prompt, 48).steps[:-1]]  # the last step may be cut at the length limit
    measured = np.mean([step.emitted for step in steps])
    outer = empirical_process(parse_empirical({"outcomes": _sequences(steps, "draft->target")}))
    inner = None
    if "tiny->draft" in strategy.pairs:
        inner = empirical_process(parse_empirical({"outcomes": _sequences(steps, "tiny->draft")}))
    config = PredictConfig(strategy=name, c=0.1, c_tiny=0.01, alpha=0.5, alpha_tiny=0.5,
                           gamma_tiny=1.0, gamma_draft_given_tiny=1.0, **knobs)
    result = simulate(config, process=outer, inner_process=inner, steps=400_000, seed=3, progress=False)
    # the replay draws outer and inner outcomes independently; the run couples them (a review that delivers
    # more tokens gives the Target more to accept), so the cascades agree to a few percent, not exactly
    tolerance = 0.01 if inner is None else 0.05
    assert result.mean_tokens_per_step == pytest.approx(measured, rel=tolerance), (name, len(steps))
