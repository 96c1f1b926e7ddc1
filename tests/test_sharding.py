"""Tensor-parallel target verification on 8 fake CPU devices gives the same tokens as one device.

JAX fixes its device count when it starts, so the check runs in a subprocess (tests/sharding_check.py) with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before JAX is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speccascade.errors import InputError

CHECK = Path(__file__).parent / "sharding_check.py"


@pytest.fixture(scope="module")
def result():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_eight_devices_and_a_model_axis(result):
    assert result["devices"] == 8 and result["mesh"] == {"model": 8}


@pytest.mark.parametrize("model", ["transformer", "toy"])
def test_sharded_decoding_gives_the_single_device_tokens_for_every_strategy(result, model):
    check = result[model]
    expected = {"transformer": {"autoregressive", "speculative", "vertical", "vertical-budget", "filtered"},
                "toy": {"vertical", "filtered"}}[model]
    assert set(check["identical"]) == expected
    for name, same in check["identical"].items():
        assert same, (name, check["single"], check["sharded"][name])
    assert check["reference_identical"], (check["single"], check["reference"])  # one device = the plain argmax loop
    assert len(check["single"]) >= 4 and all(len(tokens) == result["new_tokens"] >= 24 for tokens in check["single"])
    assert check["split_leaves"], "no weight was split"
    assert check["collectives"] == {"filtered": True}, "the compiled step has no collective: nothing ran in parallel"
    # the outputs are not degenerate (a model repeating one token would make the comparison weak)
    for tokens in check["single"]:
        assert len(set(tokens)) >= 4, check["single"]


def test_transformer_rules_split_every_matrix_of_the_default_layout(result):
    split = set(result["transformer"]["split_leaves"])
    for layer in (0, 1):
        for leaf in ("attn/qkv/kernel", "attn/out/kernel", "mlp/gate_up/kernel", "mlp/down/kernel"):
            assert f"layers/{layer}/{leaf}" in split
    assert "embed/embedding" in split


def test_a_model_without_matching_weights_is_an_input_error():
    from runtime_fixtures import toy_transformer
    from speccascade.runtime.sharding import make_mesh, shard_model

    with pytest.raises(InputError, match="no weight"):
        shard_model(toy_transformer("toy", max_len=16), make_mesh(1))
    with pytest.raises(InputError, match="devices"):
        make_mesh(10_000)
