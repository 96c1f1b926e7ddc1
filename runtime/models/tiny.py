"""The seed's Tiny projection model (paper 000, section 4.2), exactly:

    h = LayerNorm(W1 x + b1),    P_tiny = softmax(W2 ReLU(h) + b2)

with x = E[t], the learned embedding of the previous token t (the last token of the context, whose successor is
being predicted). Why the previous token's embedding and not a hidden state: the seed does not say what x is, and
at Tiny's draft time no other model's hidden state for the current position exists without coupling the models
(the Draft's state for position i is only computed when the Draft verifies, after Tiny has drafted); giving Tiny
its own embedding keeps it an independent CausalLM that can draft K tokens in a row by itself. The price: Tiny is a
learned bigram model; it sees only the current token.

As a CausalLM it is stateless: its cache is just ``{"pos"}`` (advanced by T per forward so it follows the same
protocol as the transformers; rollback moves it back). Logits for T tokens are T independent projections.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from speccascade.errors import InputError
from speccascade.runtime.api import CausalLM
from speccascade.runtime.models.layers import Embed, Linear, params_of, tree_bytes
from speccascade.runtime.profiles import model_profile


@dataclass(frozen=True)
class TinyConfig:
    vocab_size: int = 4096
    d_embed: int = 64
    d_hidden: int = 192
    max_len: int = 1024
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.d_embed, self.d_hidden, self.max_len) < 1:
            raise InputError(f"tiny config sizes must be positive: {self}")

    def param_count(self) -> int:
        v, e, h = self.vocab_size, self.d_embed, self.d_hidden
        return v * e + h * e + h + 2 * h + v * h + v

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TinyConfig":
        try:
            return cls(**data)
        except TypeError as err:
            raise InputError(f"bad tiny config {data}: {err}") from err


class Tiny(nnx.Module):
    def __init__(self, config: TinyConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = Embed(config.vocab_size, config.d_embed, rngs=rngs)
        self.w1 = Linear(config.d_embed, config.d_hidden, rngs=rngs)
        self.b1 = nnx.Param(jnp.zeros((config.d_hidden,), jnp.float32))
        self.norm = nnx.LayerNorm(config.d_hidden, epsilon=config.norm_eps, rngs=rngs)
        self.w2 = Linear(config.d_hidden, config.vocab_size, rngs=rngs)
        self.b2 = nnx.Param(jnp.zeros((config.vocab_size,), jnp.float32))

    def __call__(self, tokens: jax.Array, cache: dict | None = None) -> tuple[jax.Array, dict | None]:
        """tokens int32 [B, T] -> logits [B, T, V]: position t's logits depend on tokens[:, t] only."""
        h = self.norm(self.w1(self.embed(tokens)) + self.b1[...])
        logits = self.w2(jax.nn.relu(h)) + self.b2[...]
        if cache is None:
            return logits, None
        return logits, {"pos": cache["pos"] + tokens.shape[1]}


def as_causal_lm(module: Tiny, name: str = "tiny", max_len: int | None = None) -> CausalLM:
    graphdef, params = nnx.graphdef(module), params_of(module)

    def forward(params, cache, tokens):
        return nnx.merge(graphdef, params)(tokens, cache)

    def init_cache(batch: int, length: int) -> dict:
        return {"pos": jnp.zeros((), jnp.int32)}

    return CausalLM(name=name, vocab_size=module.config.vocab_size, params=params, forward=jax.jit(forward),
                    init_cache=init_cache, param_bytes=tree_bytes(params),
                    max_len=max_len or module.config.max_len,
                    profile=model_profile(module.config, name=name, kind="tiny"))
