"""Property tests (hypothesis): physics the cost model must never break."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from speccascade.costmodel.acceptance import expected_tokens, vertical_expected_tokens
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.hardware import load_chip

CHIPS = ["tpu-v5e", "tpu-v5p", "a100-80g", "h100-sxm", "l4"]
probability = st.floats(0.0, 1.0, allow_nan=False)


def _scaled(chip, factor):
    memory = [level.model_copy(update={"bandwidth_bytes_per_s": level.bandwidth_bytes_per_s * factor})
              for level in chip.memory]
    return chip.model_copy(update={"memory": memory})


hardware_configs = st.builds(
    dict, hardware=st.sampled_from(CHIPS), chips=st.integers(1, 8), alpha=probability, alpha_tiny=probability,
    k=st.integers(1, 12), k_tiny=st.integers(1, 6), batch=st.integers(1, 64), context=st.integers(0, 8192),
    combine=st.sampled_from(["max", "sum"]), strategy=st.sampled_from(["speculative", "vertical", "filtered",
                                                                       "autoregressive"]))


@settings(max_examples=60, deadline=None)
@given(hardware_configs, st.floats(1.0, 50.0))
def test_more_bandwidth_is_never_slower(fields, factor):
    config = PredictConfig(target="llama-2-13b", draft="llama-2-7b:int8", tiny="tiny-10m", **fields)
    chip = load_chip(config.hardware)
    slow = predict(config, alternatives=False, chip=chip)
    fast = predict(config, alternatives=False, chip=_scaled(chip, factor))
    assert fast.ms_per_token <= slow.ms_per_token * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(hardware_configs)
def test_never_faster_than_the_physical_bound(fields):
    config = PredictConfig(target="gemma-7b", draft="gemma-2b:int8", tiny="tiny-10m", **fields)
    prediction = predict(config, alternatives=False)
    assert prediction.ms_per_token >= prediction.bound_ms_per_token * (1 - 1e-12)
    assert prediction.speedup <= prediction.baseline_ms_per_token / prediction.bound_ms_per_token * (1 + 1e-12)


@settings(max_examples=200, deadline=None)
@given(probability, st.integers(1, 64), st.floats(0.0, 1.0), probability)
def test_expected_tokens_within_one_and_k_plus_one(alpha, k, c, alpha_tiny):
    e = float(expected_tokens(alpha, k))
    assert 1.0 - 1e-12 <= e <= k + 1 + 1e-9
    prediction = predict(PredictConfig(alpha=alpha, k=k, c=c), alternatives=False)
    assert 1.0 - 1e-12 <= prediction.expected_tokens_per_step <= k + 1 + 1e-9
    assert prediction.ms_per_token >= prediction.bound_ms_per_token * (1 - 1e-12)
    vertical = float(vertical_expected_tokens(alpha, alpha_tiny, k, 3))
    assert 1.0 - 1e-12 <= vertical <= 4 * k + 1 + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 0.999), st.integers(1, 32))
def test_expected_tokens_increase_with_alpha_and_k(alpha, k):
    assert float(expected_tokens(alpha + 1e-3, k)) >= float(expected_tokens(alpha, k))
    assert float(expected_tokens(alpha, k + 1)) >= float(expected_tokens(alpha, k))


def test_vectorized_evaluation_equals_the_scalar_path():
    from speccascade.costmodel.predict import evaluate

    config = PredictConfig(hardware="tpu-v5e", chips=2, target="gemma-7b", draft="gemma-2b:int8", tiny="tiny-10m",
                           alpha=0.8, alpha_tiny=0.7)
    alphas = np.linspace(0.1, 0.99, 7)[:, None]
    ks = np.arange(1, 9)[None, :]
    grid = evaluate("vertical", config, alpha=alphas, k=ks)["speedup"]
    for i, alpha in enumerate(alphas[:, 0]):
        for j, k in enumerate(ks[0]):
            single = predict(config.model_copy(update={"alpha": float(alpha), "k": int(k)}), alternatives=False)
            assert grid[i, j] == single.speedup or abs(grid[i, j] - single.speedup) < 1e-9 * single.speedup
