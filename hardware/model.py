"""Model profiles: the architecture numbers the cost model needs, and weight quantization.

A profile is one TOML file (``hardware/models/NAME.toml``) validated by :class:`ModelProfile`. A name may carry a
quantization suffix, ``NAME:int8|int4|bf16|fp32`` (weight-only quantization as in the seed paper's eq. 2,
W_int8 = round(W / s) * s with one scale per output channel; activations and compute stay in bf16).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_serializer, model_validator

from speccascade.schema import Schema

BYTES_PER_PARAM: dict[str, float] = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
KV_BYTES_PER_VALUE = 2.0  # bf16 KV cache


class ModelProfile(Schema):
    """Architecture of one model.

    ``architecture = "decoder"``: a decoder-only transformer. ``"projection"``: the seed paper's Tiny model,
    h = LayerNorm(W1 x + b1), P = softmax(W2 ReLU(h) + b2), where x is the previous token's embedding
    (``d_model`` is the embedding width, ``d_ff`` the hidden width h).

    The last fields (``mlp_activation`` .. ``sliding_window``) say how the runtime builds a decoder of this shape
    (``speccascade runtime microbench gemma-2b:int8 --random-weights``): Llama family = SwiGLU (silu), plain
    RMSNorm, unscaled embeddings; Gemma = GeGLU with tanh-approximated GELU, RMSNorm by (1 + weight), embeddings
    scaled by sqrt(d_model). The cost model reads none of them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # finite numbers only

    name: str
    family: str = ""
    architecture: Literal["decoder", "projection"] = "decoder"
    params_total: float = Field(gt=0)
    params_embedding: float = Field(ge=0)
    tied_embeddings: bool
    layers: int = Field(ge=0)
    d_model: int = Field(gt=0)
    heads: int = Field(ge=0)
    kv_heads: int = Field(ge=0)
    head_dim: int = Field(ge=0)
    d_ff: int = Field(gt=0)
    vocab: int = Field(gt=0)
    dtype: Literal["fp32", "bf16", "fp16", "int8", "int4"] = "bf16"
    source: str
    notes: list[str] = Field(default_factory=list)
    # How the runtime builds the decoder (runtime/models/transformer.py); the cost model does not read these.
    # None: the profile does not say (the runtime then cannot build the model with --random-weights).
    mlp_activation: Literal["silu", "gelu_tanh", "gelu"] | None = None  # gated MLP: silu = SwiGLU, gelu* = GeGLU
    norm_unit_offset: bool | None = None       # RMSNorm scales by (1 + weight) (Gemma) rather than by weight
    scaled_embeddings: bool | None = None      # token embeddings multiplied by sqrt(d_model) (Gemma)
    rope_theta: float | None = Field(default=None, gt=0)   # rotary base
    norm_eps: float | None = Field(default=None, gt=0)     # RMSNorm epsilon
    max_positions: int | None = Field(default=None, ge=1)  # longest context the model was built for
    sliding_window: int | None = Field(default=None, ge=1)  # attention window (Mistral); None: full attention

    @model_validator(mode="after")
    def _check(self) -> "ModelProfile":
        if self.params_embedding > self.params_total:
            raise ValueError("params_embedding exceeds params_total")
        if self.architecture == "decoder" and (self.layers < 1 or self.heads < 1 or self.kv_heads < 1
                                               or self.head_dim < 1):
            raise ValueError("a decoder needs layers, heads, kv_heads and head_dim >= 1")
        if self.kv_heads > self.heads:
            raise ValueError("kv_heads cannot exceed heads")
        return self

    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("mlp_activation", "norm_unit_offset", "scaled_embeddings", "rope_theta", "norm_eps")

    @model_serializer(mode="wrap")
    def _omit_unset_runtime_fields(self, handler):
        """Runtime architecture fields left unset (None) are not written (TOML has no null; older readers)."""
        data = handler(self)
        for name in (*self.RUNTIME_FIELDS, "max_positions", "sliding_window"):
            if isinstance(data, dict) and data.get(name, 0) is None:
                del data[name]
        return data

    def missing_runtime_fields(self) -> list[str]:
        """The architecture fields a runtime model of this profile needs that the profile leaves unset."""
        if self.architecture != "decoder":
            return []
        return [name for name in self.RUNTIME_FIELDS if getattr(self, name) is None]

    # --- derived quantities (pure) ---------------------------------------------------------------------
    @property
    def bytes_per_param(self) -> float:
        return BYTES_PER_PARAM[self.dtype]

    @property
    def compute_dtype(self) -> str:
        """Weight-only quantization computes in bf16; fp32 models compute in fp32."""
        return "fp32" if self.dtype == "fp32" else "bf16"

    @property
    def lm_head_params(self) -> float:
        return float(self.vocab * (self.d_ff if self.architecture == "projection" else self.d_model))

    def streamed_params(self, output_columns: float | None = None) -> float:
        """Parameters read from memory by one forward: everything but the input-embedding table (only B*T rows
        of it are gathered); a tied table is read whole as the output layer. ``output_columns`` restricts the
        output layer to that many vocabulary columns (the seed's filtered cascade)."""
        read = self.params_total - (0.0 if self.tied_embeddings else self.params_embedding)
        if self.architecture == "projection":
            read = self.params_total - self.params_embedding
        if output_columns is not None:
            read = read - self.lm_head_params * (1.0 - np.minimum(output_columns, self.vocab) / self.vocab)
        return read

    @property
    def weight_bytes(self) -> float:
        """Bytes resident in memory for the weights (all parameters at this dtype)."""
        return self.params_total * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V for one token over all layers (bf16)."""
        if self.architecture == "projection":
            return 0.0
        return 2.0 * self.layers * self.kv_heads * self.head_dim * KV_BYTES_PER_VALUE

    def attention_flops_per_token(self, context: float) -> float:
        """QK^T and AV over ``context`` positions: 2 matmuls x 2 FLOPs x heads x head_dim x context x layers."""
        if self.architecture == "projection":
            return 0.0
        return 4.0 * self.layers * self.heads * self.head_dim * context

    def with_dtype(self, dtype: str) -> "ModelProfile":
        return self.model_copy(update={"dtype": dtype, "name": f"{self.name.split(':')[0]}:{dtype}"})
