"""Multi-host (multi-controller) runs: ``jax.distributed`` for TPU pods and several GPU hosts, and the CPU
backend's gloo collectives for a local test.

One convention starts it: the CLI flag ``--distributed`` (``speccascade runtime generate|bench|microbench``)
calls :func:`initialize` before any model loads, which reads

    SPECCASCADE_COORDINATOR      host:port of process 0 (jax.distributed's coordinator_address)
    SPECCASCADE_NUM_PROCESSES    number of processes (hosts)
    SPECCASCADE_PROCESS_ID       this process's index, 0 .. N-1
    SPECCASCADE_LOCAL_DEVICES    CPU backend only: devices per process (jax_num_cpu_devices), for a local test

and, with none of the first three set, calls ``jax.distributed.initialize()`` without arguments, which detects
the cluster itself on Cloud TPU pods (every worker of ``gcloud ... tpu-vm ssh --worker=all``), under SLURM and
Open MPI. On the CPU backend it selects gloo collectives (``jax_cpu_collectives_implementation``) first.

Every process runs the same program on the same inputs (the prompt, the seeds: the CLI is deterministic), loads
the same weights, and :mod:`.sharding` places them on the global mesh (``make_mesh()`` spans every process's
devices); XLA's partitioner inserts the cross-host collectives. Results (tokens, statistics) are fully replicated
arrays, which every process reads; only process 0 should write files (:func:`is_main_process`). Tested with two
local processes of 4 CPU devices each, one 8-device mesh (tests/test_multihost.py): tensor-parallel verification
gives the single-device tokens in both processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from speccascade.errors import InputError

ENV_COORDINATOR = "SPECCASCADE_COORDINATOR"
ENV_NUM_PROCESSES = "SPECCASCADE_NUM_PROCESSES"
ENV_PROCESS_ID = "SPECCASCADE_PROCESS_ID"
ENV_LOCAL_DEVICES = "SPECCASCADE_LOCAL_DEVICES"


@dataclass(frozen=True)
class ProcessInfo:
    process_index: int
    process_count: int
    local_devices: int
    devices: int
    backend: str


def _int_env(name: str, environ) -> int | None:
    value = environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{name}={value!r} is not an integer") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               local_devices: int | None = None, environ=None) -> ProcessInfo:
    """Start ``jax.distributed`` (arguments, else the SPECCASCADE_* environment, else auto-detection); call it
    before any JAX computation. Returns this process's place in the run."""
    import jax

    environ = os.environ if environ is None else environ
    coordinator = coordinator or environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _int_env(ENV_NUM_PROCESSES, environ)
    process_id = process_id if process_id is not None else _int_env(ENV_PROCESS_ID, environ)
    local_devices = local_devices if local_devices is not None else _int_env(ENV_LOCAL_DEVICES, environ)
    given = [value is not None for value in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise InputError(f"multi-host: set all of {ENV_COORDINATOR}, {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} "
                         "(or none, to let jax.distributed detect the cluster)")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise InputError(f"multi-host: process id {process_id} is not in 0..{num_processes - 1}")
    platforms = environ.get("JAX_PLATFORMS", "")
    if platforms.startswith("cpu") or local_devices is not None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        if local_devices is not None:
            jax.config.update("jax_num_cpu_devices", local_devices)
    kwargs = {} if coordinator is None else dict(coordinator_address=coordinator, num_processes=num_processes,
                                                 process_id=process_id)
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"multi-host: jax.distributed.initialize failed: {str(error).splitlines()[0]}") from None
    return info()


def info() -> ProcessInfo:
    import jax

    return ProcessInfo(jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count(),
                       jax.default_backend())


def is_main_process() -> bool:
    import jax

    return jax.process_index() == 0


def shard_roles(models: dict, devices: int | None = None) -> dict:
    """The Target tensor-parallel over ``devices`` (every device of every process by default), drafters
    replicated on the same mesh (:mod:`.sharding`)."""
    from .sharding import make_mesh, replicate_model, shard_model

    mesh = make_mesh(devices)
    return {role: (shard_model(model, mesh) if role == "target" else replicate_model(model, mesh))
            for role, model in models.items() if model is not None}
