"""Flax NNX models for the runtime, each exposed to decoding strategies as a :class:`~speccascade.runtime.api.CausalLM`.

- :mod:`.transformer`: decoder-only transformer (RMSNorm, rotary, SwiGLU, grouped-query attention, KV cache).
- :mod:`.tiny`: the seed's Tiny projection model h = LayerNorm(W1 x + b1), P = softmax(W2 ReLU(h) + b2).
- :mod:`.quant`: weight-only int8, per-output-channel symmetric scale applied after the matmul.
"""

from speccascade.runtime.models.quant import Int8Embed, Int8Linear, int8_matmul, quantize_params, quantize_rows
from speccascade.runtime.models.tiny import Tiny, TinyConfig
from speccascade.runtime.models.tiny import as_causal_lm as tiny_causal_lm
from speccascade.runtime.models.transformer import (Transformer, TransformerConfig, as_causal_lm,
                                                    init_transformer_cache, params_of, tree_bytes)

__all__ = ["Int8Embed", "Int8Linear", "Tiny", "TinyConfig", "Transformer", "TransformerConfig", "as_causal_lm",
           "init_transformer_cache", "int8_matmul", "params_of", "quantize_params", "quantize_rows",
           "tiny_causal_lm", "tree_bytes"]
