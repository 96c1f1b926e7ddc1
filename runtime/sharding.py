"""Sharded target verification: tensor parallelism with ``jax.make_mesh`` + ``NamedSharding`` (GSPMD).

Why tensor-parallel, not batch-parallel: speculative verification runs one sequence (batch 1) over K + 1 tokens,
so a batch axis has nothing to split, and the step is bound by streaming the target's weights. Splitting each
weight matrix over n devices divides the bytes every device streams per forward by n (the cost model's
``W / (P * BW)`` term), at the price of two activation all-reduces per layer (tiny at batch 1).

How: every weight leaf gets a ``PartitionSpec`` from a list of (path regex, axis) rules, Megatron style: the
column-parallel matrices (fused q/k/v, fused gate/up) are split along their output axis, the row-parallel ones
(attention output, MLP down) along their input axis, the tied embedding / output head along the vocabulary; a
leaf whose axis does not divide by the device count, and every other leaf (norm gains), is replicated. The
strategies' jitted step is unchanged: XLA's SPMD partitioner inserts the collectives. Results are the same
numbers as on one device up to float summation order (tests check identical greedy tokens on 8 CPU devices).

Caveat: the repository's transformer fuses q/k/v and gate/up into single matrices; a contiguous split of a fused
output axis does not line up with head (or gate/up) boundaries, so XLA adds collective permutes to realign them.
The result stays exact; for best multi-chip speed, store those matrices unfused or interleaved per device. The
KV cache is split along its KV-head axis when that divides by the device count, else replicated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from speccascade.errors import InputError

from .api import CausalLM

AXIS = "model"


@dataclass(frozen=True)
class ShardingRule:
    pattern: str   # regex searched in the leaf's "/"-joined path
    axis: int      # array axis split across the mesh


# The repository's transformer (runtime/models/transformer.py): weights stored [out, in]; int8 layers hold
# q [out, in] and scale [out]; the embedding [vocab, d] (also the output head when tied).
TRANSFORMER_RULES = (
    ShardingRule(r"(qkv|gate_up)/(kernel|q|scale)$", 0),
    ShardingRule(r"(attn/out|mlp/down)/(kernel|q)$", 1),
    ShardingRule(r"embed/(embedding|q|scale)$", 0),
    ShardingRule(r"^head/(kernel|q|scale)$", 0),      # an untied output head [vocab, d] (Llama's lm_head)
)
# cache k/v, one array per layer: keys [batch, kv_heads, positions, head_dim], values [batch, kv_heads, head_dim,
# positions]
KV_HEAD_AXIS = 1


def make_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first ``devices`` devices (all by default), axis name ``"model"``."""
    available = jax.device_count()
    devices = devices or available
    if not 1 <= devices <= available:
        raise InputError(f"asked for {devices} devices, {available} available")
    # Auto axes: XLA's SPMD partitioner propagates the weights' shardings through the unchanged step function
    return jax.make_mesh((devices,), (AXIS,), devices=jax.devices()[:devices],
                         axis_types=(jax.sharding.AxisType.Auto,))


def _path_string(path) -> str:
    parts = []
    for entry in path:
        key = getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", entry)))
        parts.append(str(key))
    return "/".join(parts)


def spec_for(path: str, shape: tuple[int, ...], rules: tuple[ShardingRule, ...], size: int) -> PartitionSpec:
    for rule in rules:
        if re.search(rule.pattern, path):
            axis = rule.axis % len(shape) if shape else None
            if axis is None or shape[axis] % size:
                return PartitionSpec()
            return PartitionSpec(*([None] * axis + [AXIS]))
    return PartitionSpec()


def sharding_plan(params: Any, mesh: Mesh, rules: tuple[ShardingRule, ...] = TRANSFORMER_RULES) -> dict[str, str]:
    """Path -> PartitionSpec (as text) of every weight leaf: what :func:`shard_model` will do."""
    size = mesh.shape[AXIS]
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {_path_string(path): str(spec_for(_path_string(path), leaf.shape, rules, size)) for path, leaf in leaves}


def shard_params(params: Any, mesh: Mesh, rules: tuple[ShardingRule, ...] = TRANSFORMER_RULES) -> Any:
    size = mesh.shape[AXIS]
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: jax.device_put(leaf, NamedSharding(mesh, spec_for(_path_string(path), leaf.shape,
                                                                             rules, size))), params)


def _cache_sharding(mesh: Mesh, leaf: jax.Array, kv_axis: int | None) -> NamedSharding:
    size = mesh.shape[AXIS]
    if kv_axis is not None and leaf.ndim > kv_axis and leaf.shape[kv_axis] % size == 0:
        return NamedSharding(mesh, PartitionSpec(*([None] * kv_axis + [AXIS])))
    return NamedSharding(mesh, PartitionSpec())


def shard_model(model: CausalLM, mesh: Mesh, rules: tuple[ShardingRule, ...] = TRANSFORMER_RULES,
                kv_axis: int | None = KV_HEAD_AXIS) -> CausalLM:
    """``model`` with its weights split over ``mesh`` by ``rules`` and its cache laid out to match."""
    if not any(AXIS in spec for spec in sharding_plan(model.params, mesh, rules).values()):
        raise InputError(f"no weight of '{model.name}' matches a sharding rule with an axis divisible by "
                         f"{mesh.shape[AXIS]} devices")
    init_cache = model.init_cache

    def sharded_cache(batch: int, length: int) -> dict:
        cache = init_cache(batch, length)
        return {key: jax.tree_util.tree_map(
                    lambda leaf: jax.lax.with_sharding_constraint(leaf, _cache_sharding(mesh, leaf, kv_axis)), value)
                if key != "pos" else value for key, value in cache.items()}

    return replace(model, params=shard_params(model.params, mesh, rules), init_cache=sharded_cache)


def replicate_model(model: CausalLM, mesh: Mesh) -> CausalLM:
    """``model`` with every weight replicated on all devices of ``mesh`` (drafters next to a sharded target)."""
    params = jax.device_put(model.params, NamedSharding(mesh, PartitionSpec()))
    return replace(model, params=params)
