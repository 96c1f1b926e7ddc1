"""Model profiles of the runtime's own models: what the cost model needs to predict a trained checkpoint.

:func:`model_profile` turns a runtime model config (``TransformerConfig`` or ``TinyConfig``, or the dict a
checkpoint's safetensors header stores) into a :class:`~speccascade.hardware.model.ModelProfile` plus, per field,
where its number came from (:func:`profile_sources`); :func:`write_profile_toml` writes it in the format of
``hardware/models/*.toml`` (one commented line per number), which ``speccascade predict --target FILE.toml``
reads. The trio writes one per model next to its checkpoints (:mod:`.trio`).

The mapping (exact, from the model code):

* transformer (``runtime/models/transformer.py``): a decoder; params = h V d + L (d (q + 2 kv) + q d + 3 d f +
  2 d) + d with q = heads hd, kv = kv_heads hd (fused q/k/v, attention output, gated MLP gate/up/down, two RMSNorm
  gains per layer, the final norm) and h = 1 for an output head tied to the V x d embedding, 2 for a separate one;
  head_dim = d / heads unless the config sets ``attn_head_dim``; no biases. The architecture fields the runtime
  builds from (activation, RMSNorm offset, embedding scale, rotary base, epsilon, context) come from the config.
* tiny (``runtime/models/tiny.py``): the seed's projection model h = LayerNorm(W1 x + b1),
  P = softmax(W2 ReLU(h) + b2): params = V e (embedding) + e h + h (W1, b1) + 2 h (LayerNorm) + h V + V (W2, b2),
  ``d_model`` = e (embedding width), ``d_ff`` = h (hidden width); no layers, heads or KV cache.

Weight formats map to profile dtypes: float32 -> fp32, bfloat16 -> bf16, int8 -> int8 (its one float32 scale
per output row is not counted). This module imports neither JAX nor the models.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from speccascade.errors import InputError
from speccascade.hardware.model import ModelProfile
from speccascade.hardware.registry import write_model_toml

FAMILY = "speccascade-runtime"
DTYPES = {"float32": "fp32", "fp32": "fp32", "bfloat16": "bf16", "bf16": "bf16", "int8": "int8"}
KINDS = ("transformer", "tiny")


def _as_dict(config: Any) -> dict:
    if isinstance(config, Mapping):
        return dict(config)
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    raise InputError(f"a model config must be a dict or a runtime config dataclass, got {type(config).__name__}")


def config_kind(config: Any) -> str:
    """``transformer`` or ``tiny`` from a config (its class name, else its fields)."""
    name = type(config).__name__
    if name == "TransformerConfig":
        return "transformer"
    if name == "TinyConfig":
        return "tiny"
    fields = _as_dict(config)
    if "d_embed" in fields:
        return "tiny"
    if "n_layers" in fields:
        return "transformer"
    raise InputError(f"cannot tell the model kind of config {sorted(fields)}; known kinds: {', '.join(KINDS)}")


def transformer_param_count(config: Mapping[str, Any]) -> int:
    """``TransformerConfig.param_count`` without JAX (tested equal)."""
    d, layers, heads, kv_heads, d_ff, vocab = (int(config[key]) for key in (
        "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "vocab_size"))
    head_dim = int(config.get("attn_head_dim") or d // heads)
    q, kv = heads * head_dim, kv_heads * head_dim
    per_layer = d * (q + 2 * kv) + q * d + 3 * d * d_ff + 2 * d
    return (1 if config.get("tied_embeddings", True) else 2) * vocab * d + layers * per_layer + d


def tiny_param_count(config: Mapping[str, Any]) -> int:
    """``TinyConfig.param_count`` without JAX (tested equal)."""
    v, e, h = int(config["vocab_size"]), int(config["d_embed"]), int(config["d_hidden"])
    return v * e + h * e + h + 2 * h + v * h + v


def _source(kind: str, name: str, checkpoint: str | None, sha256: str | None) -> str:
    where = "runtime/models/transformer.py" if kind == "transformer" else "runtime/models/tiny.py"
    text = f"speccascade runtime: this repository's own trained model '{name}' ({where}); every number from its config"
    if checkpoint:
        text += f" in {checkpoint}"
    if sha256:
        text += f" (sha256 {sha256})"
    return text + " and the model code's parameter count"


def model_profile_with_sources(config: Any, *, name: str, kind: str | None = None, weights: str | None = None,
                               checkpoint: str | None = None, sha256: str | None = None
                               ) -> tuple[ModelProfile, dict[str, str]]:
    """(profile, field -> where its number came from) of a runtime model config. ``weights`` overrides the
    config's stored format (``float32``/``bfloat16``/``int8``, or ``fp32``/``bf16``); ``checkpoint`` and
    ``sha256`` name the weights file the profile describes."""
    kind = kind or config_kind(config)
    fields = _as_dict(config)
    weights = weights or fields.get("weights", "float32")
    if weights not in DTYPES:
        raise InputError(f"unknown weight format {weights!r}; known: {', '.join(DTYPES)}")
    dtype = DTYPES[weights]
    origin = f"config in {checkpoint}" if checkpoint else "model config"
    try:
        if kind == "transformer":
            d, heads = int(fields["d_model"]), int(fields["n_heads"])
            tied = bool(fields.get("tied_embeddings", True))
            head_dim = int(fields.get("attn_head_dim") or d // heads)
            activation = fields.get("activation", "silu")
            values = dict(architecture="decoder", params_total=transformer_param_count(fields),
                          params_embedding=int(fields["vocab_size"]) * d, tied_embeddings=tied,
                          layers=int(fields["n_layers"]), d_model=d, heads=heads, kv_heads=int(fields["n_kv_heads"]),
                          head_dim=head_dim, d_ff=int(fields["d_ff"]), vocab=int(fields["vocab_size"]),
                          mlp_activation=activation, norm_unit_offset=bool(fields.get("norm_unit_offset", False)),
                          scaled_embeddings=bool(fields.get("scaled_embeddings", False)),
                          rope_theta=float(fields.get("rope_theta", 10_000.0)),
                          norm_eps=float(fields.get("norm_eps", 1e-6)), max_positions=int(fields["max_len"])
                          if fields.get("max_len") else None)
            sources = {
                "architecture": "runtime/models/transformer.py: decoder-only (RMSNorm, rotary, gated MLP, GQA)",
                "params_total": "h V d + L (d (q + 2 kv) + q d + 3 d d_ff + 2 d) + d (TransformerConfig.param_count)",
                "params_embedding": "vocab_size x d_model token table",
                "tied_embeddings": ("the output head is the token embedding (logits = h E^T)" if tied
                                    else f"tied_embeddings false: a separate V x d output head ({origin})"),
                "layers": f"n_layers ({origin})", "d_model": f"d_model ({origin})",
                "heads": f"n_heads ({origin})", "kv_heads": f"n_kv_heads ({origin})",
                "head_dim": (f"attn_head_dim ({origin})" if fields.get("attn_head_dim") else "d_model / n_heads"),
                "d_ff": f"d_ff, gated-MLP hidden width ({origin})", "vocab": f"vocab_size ({origin})",
                "mlp_activation": f"activation {activation!r} ({origin})",
                "norm_unit_offset": f"norm_unit_offset ({origin})",
                "scaled_embeddings": f"scaled_embeddings ({origin})", "rope_theta": f"rope_theta ({origin})",
                "norm_eps": f"norm_eps ({origin})", "max_positions": f"max_len, the KV cache capacity ({origin})"}
            notes = [f"max_len {fields.get('max_len')}: the KV cache capacity (keep the predicted context below it)"]
        elif kind == "tiny":
            e, h = int(fields["d_embed"]), int(fields["d_hidden"])
            values = dict(architecture="projection", params_total=tiny_param_count(fields),
                          params_embedding=int(fields["vocab_size"]) * e, tied_embeddings=False, layers=0,
                          d_model=e, heads=0, kv_heads=0, head_dim=0, d_ff=h, vocab=int(fields["vocab_size"]))
            sources = {
                "architecture": "runtime/models/tiny.py: h = LayerNorm(W1 x + b1), P = softmax(W2 ReLU(h) + b2)",
                "params_total": "V e + e h + h + 2 h + h V + V (TinyConfig.param_count)",
                "params_embedding": "vocab_size x d_embed input embedding (one row is gathered per token)",
                "tied_embeddings": "W2 (d_hidden -> vocab) is its own matrix",
                "layers": "no transformer layers", "d_model": f"d_embed, width of x ({origin})",
                "heads": "no attention", "kv_heads": "no KV cache", "head_dim": "no attention",
                "d_ff": f"d_hidden, width of h ({origin})", "vocab": f"vocab_size ({origin})"}
            notes = [f"max_len {fields.get('max_len')}: the position limit shared with the trio"]
        else:
            raise InputError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    except KeyError as error:
        raise InputError(f"{kind} config lacks {error.args[0]!r}: {sorted(fields)}") from None
    sources["dtype"] = (f"stored weights {weights}" if weights == fields.get("weights", "float32")
                        else f"weights converted at load time to {weights} (stored {fields.get('weights', 'float32')})")
    if dtype == "int8":
        notes.append("int8 weights carry one float32 scale per output row (not counted in the bytes)")
    notes.append("other weight formats: append :bf16 or :int8 to the file path (speccascade predict --target "
                 "FILE.toml:int8)")
    profile = ModelProfile(name=name, family=FAMILY, dtype=dtype, source=_source(kind, name, checkpoint, sha256),
                           notes=notes, **values)
    return profile, sources


def model_profile(config: Any, *, name: str, kind: str | None = None, weights: str | None = None,
                  checkpoint: str | None = None, sha256: str | None = None) -> ModelProfile:
    """The :class:`ModelProfile` of a runtime model config (see :func:`model_profile_with_sources`)."""
    return model_profile_with_sources(config, name=name, kind=kind, weights=weights, checkpoint=checkpoint,
                                      sha256=sha256)[0]


def write_profile_toml(config: Any, path: str | Path, *, name: str, kind: str | None = None,
                       weights: str | None = None, checkpoint: str | None = None, sha256: str | None = None
                       ) -> Path:
    """Write the profile of ``config`` to ``path`` as a ``hardware/models``-format TOML, every number commented
    with its origin; returns the path."""
    profile, sources = model_profile_with_sources(config, name=name, kind=kind, weights=weights,
                                                  checkpoint=checkpoint, sha256=sha256)
    header = (f"Model profile of '{name}', written by speccascade's runtime from its own trained checkpoint.\n"
              f"{profile.source}.\n"
              "Predict it: speccascade predict --hardware CHIP --target THIS_FILE.toml")
    return write_model_toml(profile, path, sources, header)
