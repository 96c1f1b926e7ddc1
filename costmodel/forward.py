"""Time of one forward pass of a model on a chip, as a sympy expression evaluated vectorized.

One forward of model M over T new tokens at context S, batch B, tensor parallel P:

    memory_s  = W / (P * BW_w * f_w) + B * S * kv / (P * BW_kv * f_kv)
    compute_s = (2 * N * B * T + A * (S + T) * B * T) / (P * peak * eta)
    comm_s    = [P > 1] * 2 * L * (2 (P - 1) * lat + 2 (P - 1) / P * B * T * D * 2 / ICI)
    token_s   = token_slope * max(B * T - 1, 0) * 2 * N / (P * peak)
    context_s = context_slope * B * S * kv / (P * BW_kv)
    forward_s = max(memory_s, compute_s) + comm_s + token_s + context_s + overhead_s   (roofline, default)
              = memory_s + compute_s + comm_s + token_s + context_s + overhead_s        (sum: the seed's eq. 4 form)

W: weight bytes one forward streams (all but the gathered input embedding; seed eq. 4's W_i), read from the
fastest memory level the weights were placed in (BW_w, achieved fraction f_w = the level's fraction times the
weight format's efficiency g, ``Corrections.weight_efficiency``); kv: KV-cache bytes per token,
read from main memory; N: parameters in matmuls (2 FLOPs each per token); A = 4 * layers * heads * head_dim
(QK^T and AV); peak: the chip's FLOP/s for the compute dtype, eta its achieved fraction; comm: two ring
all-reduces of the activations (B * T * D bf16 values) per layer (Megatron-style tensor parallelism);
overhead_s: the fixed per-forward cost (kernel launch / dispatch), an empirical correction.

The corrections (``ChipProfile.corrections``, identity by default, filled by ``speccascade hardware probe`` and
``speccascade calibrate``): f_w, f_kv the achieved bandwidth fractions of the levels; eta the compute efficiency
of the model's compute dtype (``Corrections.compute_efficiency_for``); overhead_s; token_slope, what each new
token beyond the first costs beyond the roofline, in multiples of its matmul time at peak (2 N / (P peak)): zero on
the pure roofline, where a memory-bound forward over T tokens costs what one over 1 token does; context_slope,
what each cached position costs beyond the roofline, in multiples of its datasheet KV read time (kv / (P BW_kv)).
Both slopes sit outside the max(): they are measured costs the roofline does not see, so they add in either
combine mode. With identity corrections (f = eta = 1, zero slopes and overhead) forward_s is the datasheet
roofline.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import sympy as sp

from speccascade.hardware import ChipProfile, ModelProfile

from .symbolic import CompiledExpression, compile_expression

Combine = Literal["max", "sum"]
ACTIVATION_BYTES = 2.0  # bf16 activations in all-reduces

_pos = {"positive": True}
W, KV, S, B, T, P = sp.symbols("weight_bytes kv_bytes_per_token context batch new_tokens tensor_parallel", **_pos)
BW_W, F_W, BW_KV, F_KV = sp.symbols("bw_weights frac_weights bw_kv frac_kv", **_pos)
N, A, PEAK, ETA = sp.symbols("matmul_params attention_coefficient peak_flops compute_efficiency", **_pos)
L, D, ICI, LAT, O = sp.symbols("layers d_model interconnect_bw collective_latency overhead_s", nonnegative=True)
TS, CS = sp.symbols("token_slope context_slope", nonnegative=True)

MEMORY_S = W / (P * BW_W * F_W) + B * S * KV / (P * BW_KV * F_KV)
COMPUTE_S = (2 * N * B * T + A * (S + T) * B * T) / (P * PEAK * ETA)
COMM_S = sp.Piecewise(
    (0, P <= 1),
    (2 * L * (2 * (P - 1) * LAT + 2 * (P - 1) / P * B * T * D * ACTIVATION_BYTES / ICI), True),
)
TOKEN_S = TS * sp.Max(B * T - 1, 0) * 2 * N / (P * PEAK)
CONTEXT_S = CS * B * S * KV / (P * BW_KV)
FORWARD_S: dict[str, sp.Expr] = {
    "max": sp.Max(MEMORY_S, COMPUTE_S) + COMM_S + TOKEN_S + CONTEXT_S + O,
    "sum": MEMORY_S + COMPUTE_S + COMM_S + TOKEN_S + CONTEXT_S + O,
}
PARTS: dict[str, sp.Expr] = {"memory": MEMORY_S, "compute": COMPUTE_S, "comm": COMM_S, "token": TOKEN_S,
                             "context": CONTEXT_S}
ARGUMENTS = (W, KV, S, B, T, P, BW_W, F_W, BW_KV, F_KV, N, A, PEAK, ETA, L, D, ICI, LAT, O, TS, CS)


@lru_cache(maxsize=None)
def compiled(part: str) -> CompiledExpression:
    """The compiled expression for ``part``: "max" or "sum" (whole forward), or one term of :data:`PARTS`."""
    expression = PARTS.get(part) or FORWARD_S[part]
    return compile_expression(expression, ARGUMENTS)


@dataclass(frozen=True)
class ForwardTime:
    """Seconds of one forward, total and by component (arrays broadcast over the configurations)."""

    total_s: np.ndarray
    memory_s: np.ndarray
    compute_s: np.ndarray
    comm_s: np.ndarray
    overhead_s: float
    token_s: np.ndarray | float = 0.0
    context_s: np.ndarray | float = 0.0

    @property
    def compute_bound(self) -> np.ndarray:
        return self.compute_s > self.memory_s


def forward_inputs(chip: ChipProfile, model: ModelProfile, *, level: str, tokens, context, batch, tp,
                   output_columns=None) -> dict[str, np.ndarray | float]:
    """Numbers for every symbol of the forward expression (arrays where the configuration varies)."""
    main = chip.memory[-1]
    weights_level = chip.level(level)
    streamed = model.streamed_params(output_columns)
    interconnect = chip.interconnect
    return {
        "weight_bytes": streamed * model.bytes_per_param,
        "kv_bytes_per_token": model.kv_bytes_per_token,
        "context": np.asarray(context, dtype=float),
        "batch": np.asarray(batch, dtype=float),
        "new_tokens": np.asarray(tokens, dtype=float),
        "tensor_parallel": np.asarray(tp, dtype=float),
        "bw_weights": weights_level.bandwidth_bytes_per_s,
        "frac_weights": chip.bandwidth_fraction(weights_level.name) * chip.corrections.weight_efficiency_for(model.dtype),
        "bw_kv": main.bandwidth_bytes_per_s,
        "frac_kv": chip.bandwidth_fraction(main.name),
        "matmul_params": streamed,
        "attention_coefficient": model.attention_flops_per_token(1.0),
        "peak_flops": chip.flops_for(model.compute_dtype),
        "compute_efficiency": chip.corrections.compute_efficiency_for(model.compute_dtype),
        "layers": float(model.layers),
        "d_model": float(model.d_model),
        "interconnect_bw": interconnect.chip_bandwidth_bytes_per_s if interconnect and interconnect.links_per_chip
        else np.inf,
        "collective_latency": interconnect.latency_s if interconnect else 0.0,
        "overhead_s": chip.corrections.overhead_s,
        "token_slope": chip.corrections.token_slope_for(model.dtype),
        "context_slope": chip.corrections.context_slope,
    }


def forward_time(chip: ChipProfile, model: ModelProfile, *, level: str, tokens, context=0, batch=1, tp=1,
                 output_columns=None, combine: Combine = "max") -> ForwardTime:
    """Evaluate one forward of ``model`` over ``tokens`` new tokens (vectorized over array arguments)."""
    values = forward_inputs(chip, model, level=level, tokens=tokens, context=context, batch=batch, tp=tp,
                            output_columns=output_columns)
    return ForwardTime(
        total_s=compiled(combine)(**values),
        memory_s=compiled("memory")(**values),
        compute_s=compiled("compute")(**values),
        comm_s=compiled("comm")(**values),
        overhead_s=chip.corrections.overhead_s,
        token_s=compiled("token")(**values),
        context_s=compiled("context")(**values),
    )
