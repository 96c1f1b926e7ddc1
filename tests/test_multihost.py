"""Multi-host tensor parallelism under jax.distributed: two local processes on the CPU backend (gloo
collectives), 4 devices each, one 8-device mesh (tests/multihost_check.py). Each process must see the whole mesh,
split the Target's weights, and get the single-device logits and greedy tokens."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from speccascade.errors import InputError

CHECK = Path(__file__).parent / "multihost_check.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def results():
    port = free_port()
    base = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    processes = []
    for index in range(2):
        env = {**base, "JAX_PLATFORMS": "cpu", "SPECCASCADE_COORDINATOR": f"127.0.0.1:{port}",
               "SPECCASCADE_NUM_PROCESSES": "2", "SPECCASCADE_PROCESS_ID": str(index),
               "SPECCASCADE_LOCAL_DEVICES": "4"}
        processes.append(subprocess.Popen([sys.executable, str(CHECK)], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=600)
            assert process.returncode == 0, err[-3000:]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outputs


def test_two_processes_form_one_eight_device_mesh(results):
    assert sorted(r["process"] for r in results) == [0, 1]
    for result in results:
        assert result["processes"] == 2 and result["local_devices"] == 4 and result["devices"] == 8
        assert result["split_leaves"] > 0  # the Target's weights really are split across the processes


def test_sharded_verification_equals_one_device(results):
    for result in results:
        assert result["max_logit_diff"] <= 1e-4 * max(1.0, result["logit_scale"]), result
        for strategy, tokens in result["single"].items():
            assert result["sharded"][strategy] == tokens, (strategy, result)
            assert len(set(tokens)) >= 3
    assert results[0]["sharded"] == results[1]["sharded"]


def test_partial_multihost_environment_is_one_error_line():
    from speccascade.runtime.distributed import initialize

    with pytest.raises(InputError, match="set all of SPECCASCADE_COORDINATOR") as error:
        initialize(environ={"SPECCASCADE_COORDINATOR": "127.0.0.1:1"})
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="not an integer"):
        initialize(environ={"SPECCASCADE_NUM_PROCESSES": "two"})
