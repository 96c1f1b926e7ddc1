"""The contract between the runtime's models and its decoding strategies.

A decoding strategy never sees a Flax module: it sees :class:`CausalLM`, a frozen bundle of pure, jittable
functions over plain pytrees, so one ``jax.jit`` compiles each strategy step with the models' weights and caches
as arguments (nnx modules are ``nnx.split`` into (graphdef, state) once, outside the hot loop).

Cache protocol: a cache is a pytree (dict) holding at least ``"pos"``: an int32 scalar, the number of positions
already written. ``forward(params, cache, tokens)`` writes ``tokens.shape[1]`` new positions starting at ``pos`` and
returns the logits for every new position and the cache with ``pos`` advanced. Rolling back rejected draft tokens
is moving the pointer (:func:`with_position`); stale entries beyond ``pos`` are masked by attention and
overwritten by the next forward. Buffers have a fixed ``max_len`` so shapes never change from step to step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp

from speccascade.hardware.model import ModelProfile

Params = Any  # a pytree of arrays (an nnx.State or a dict)
Cache = dict[str, Any]
# forward(params, cache, tokens int32[B, T]) -> (logits float32[B, T, V], cache)
ForwardFn = Callable[[Params, Cache, jax.Array], tuple[jax.Array, Cache]]
# forward_columns(params, cache, tokens int32[B, T], ids int32[m]) -> (logits float32[B, T, m] of the vocabulary
# entries ids only, cache): the same forward with an output head of m columns (optional)
ColumnsFn = Callable[[Params, Cache, jax.Array, jax.Array], tuple[jax.Array, Cache]]
# init_cache(batch, max_len) -> cache with pos = 0
InitCacheFn = Callable[[int, int], Cache]
# forward_hidden(params, cache, tokens int32[B, T], positions int32[T] | None, mask bool[T, T] | None)
#   -> (logits float32[B, T, V], final hidden states float32[B, T, d], cache): the forward with explicit rotary
#   positions and a mask among the new tokens (tree verification), also returning the hidden states (heads)
HiddenFn = Callable[..., tuple[jax.Array, jax.Array, Cache]]


@dataclass(frozen=True)
class CausalLM:
    """A causal language model as pure functions plus its weights.

    ``forward`` must be a pure function of its arguments (jittable, no Python side effects), so strategies can
    close over it inside their own ``jax.jit``. ``param_bytes`` is the bytes of weights one forward streams
    (used for achieved-bandwidth reports). ``forward_columns`` (optional) computes the logits of given vocabulary
    entries only; the filtered cascade's Draft uses it to skip the rest of its output layer. ``profile``
    (optional) is the model's :class:`~speccascade.hardware.model.ModelProfile` (architecture, dtype), which
    trace headers carry so the cost model can predict a run; the runtime's own models set it. ``forward_hidden``
    (optional; the transformers have it) takes explicit rotary positions and an attention mask over the new tokens
    and also returns the final hidden states (Medusa-style heads and tree verification). ``random_weights``
    marks a model built with seeded random weights (timing only: its tokens mean nothing).
    """

    name: str
    vocab_size: int
    params: Params
    forward: ForwardFn
    init_cache: InitCacheFn
    param_bytes: int
    max_len: int
    forward_columns: ColumnsFn | None = None
    profile: ModelProfile | None = None
    forward_hidden: HiddenFn | None = None
    random_weights: bool = False

    def __hash__(self) -> int:  # identity hash: usable as a jit static argument
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def with_position(cache: Cache, pos: jax.Array | int) -> Cache:
    """Roll a cache back (or forward) to ``pos`` positions: only the pointer moves."""
    return {**cache, "pos": jnp.asarray(pos, dtype=jnp.int32)}
