"""Profile-shaped models with seeded random weights, for timing only.

A forward of random weights of Gemma-7B's exact shape streams the same bytes and runs the same matmuls as the
released model, so a ``hardware/models`` profile (or a Hugging Face ``config.json``) is enough to time a model of
realistic size. The weights are drawn leaf by leaf in the stored format (bf16 or fp32 normals, int8 uniform
integers with a per-row scale), so building Gemma-2B in int8 never holds a float copy of it. A tensor of more
than :data:`BLOCK` (4M) entries repeats one seeded random block from a random offset: its bytes and its forward
time are those of any other values, and building Gemma-2B takes seconds instead of the minutes that drawing 2.5
billion numbers takes on two CPU cores (measured: 190 s with ``jax.random``).

Every such model is labelled: its name ends in :data:`RANDOM_LABEL`, ``CausalLM.random_weights`` is true, its
profile's notes say so, and the CLI and the trace headers repeat it. Its tokens and acceptance mean nothing.

Weight scales (what keeps the random model's logits varied, so greedy tests on small shapes are meaningful):
matrices N(0, 1/in) (the output projections of attention and MLP also / sqrt(2 L), as the module's own init);
the embedding N(0, 1/d) so the tied head's logits have a standard deviation of about 1 (an untied head
N(0, 4/d)); norm gains 1 (0 with Gemma's 1 + g); int8 weights uniform on [-127, 127] with the per-row scale that
gives the same standard deviation.
"""

from __future__ import annotations

import math
from pathlib import Path

from speccascade.errors import InputError
from speccascade.hardware.model import ModelProfile

RANDOM_LABEL = " [random weights]"
PROFILE_FORMATS = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}
INT8_UNIFORM_STD = math.sqrt(((2 * 127 + 1) ** 2 - 1) / 12.0)   # std of the uniform integers -127..127
BLOCK = 1 << 22              # tensors above this many entries repeat one seeded random block (random_params)


def transformer_config_of_profile(profile: ModelProfile, max_len: int | None = None):
    """The runtime ``TransformerConfig`` of a decoder profile (its architecture fields must be set)."""
    from speccascade.runtime.models.transformer import TransformerConfig

    if profile.architecture != "decoder":
        raise InputError(f"profile '{profile.name}' is a {profile.architecture} model, not a decoder")
    missing = profile.missing_runtime_fields()
    if missing:
        raise InputError(f"profile '{profile.name}' does not say its {', '.join(missing)}: the runtime cannot build "
                         "it (add them to the profile's TOML, as hardware/models/gemma-2b.toml does)")
    if profile.dtype not in PROFILE_FORMATS:
        raise InputError(f"profile '{profile.name}': the runtime stores fp32, bf16 or int8 weights, not "
                         f"{profile.dtype}")
    limit = min(value for value in (profile.max_positions, profile.sliding_window, 1 << 30) if value)
    if max_len is not None and max_len > limit:
        raise InputError(f"profile '{profile.name}': a context of {max_len} exceeds its limit of {limit} "
                         "(max_positions, or the sliding window below which the runtime is exact)")
    explicit = profile.head_dim if profile.head_dim * profile.heads != profile.d_model else 0
    return TransformerConfig(
        vocab_size=profile.vocab, d_model=profile.d_model, n_layers=profile.layers, n_heads=profile.heads,
        n_kv_heads=profile.kv_heads, d_ff=profile.d_ff, max_len=max_len or min(limit, 8192),
        rope_theta=float(profile.rope_theta), norm_eps=float(profile.norm_eps), weights=PROFILE_FORMATS[profile.dtype],
        activation=profile.mlp_activation, norm_unit_offset=bool(profile.norm_unit_offset),
        scaled_embeddings=bool(profile.scaled_embeddings), tied_embeddings=profile.tied_embeddings,
        attn_head_dim=explicit)


def random_params(config, seed: int = 0) -> dict:
    """Seeded random weights in the layout and format of ``Transformer(config)`` (module docstring)."""
    import jax.numpy as jnp
    import ml_dtypes
    import numpy as np

    from speccascade.runtime.models.transformer import abstract_transformer, params_of

    shapes = params_of(abstract_transformer(config))
    rng = np.random.default_rng(seed)
    blocks: dict[str, np.ndarray] = {}
    depth_scale = 1.0 / math.sqrt(2 * config.n_layers)
    float_dtype = ml_dtypes.bfloat16 if config.weights == "bfloat16" else np.float32

    def draw(kind: str, shape: tuple[int, ...]) -> np.ndarray:
        """Unit normals (``normal``) or integers -127..127 (``int8``) of ``shape``: drawn afresh up to
        :data:`BLOCK` entries, beyond that a seeded block repeated from a random offset (same bytes, same
        forward time, seconds instead of minutes for billions of entries)."""
        size = math.prod(shape)
        fresh = size <= BLOCK
        if not fresh and kind not in blocks:
            blocks[kind] = draw(kind, (BLOCK,))
        if kind == "int8":
            values = rng.integers(-127, 128, size=size, dtype=np.int8) if fresh else None
        else:
            values = rng.standard_normal(size, dtype=np.float32) if fresh else None
        if values is None:
            values = np.resize(np.roll(blocks[kind], int(rng.integers(BLOCK))), size)
        return values.reshape(shape)

    def std_of(path: tuple, fan_in: int) -> float:
        if path[0] == "embed":
            return 1.0 / math.sqrt(config.d_model)
        if path[0] == "head":
            return 2.0 / math.sqrt(config.d_model)
        scale = depth_scale if path[-1] in ("out", "down") else 1.0
        return scale / math.sqrt(fan_in)

    def fill(node: dict, path: tuple) -> dict:
        if "q" in node and "scale" in node:      # an int8 layer: uniform integers, per-row scale
            rows, fan_in = node["q"].shape
            scale = np.full((rows,), std_of(path, fan_in) / INT8_UNIFORM_STD, np.float32)
            return {"q": jnp.asarray(draw("int8", (rows, fan_in))).block_until_ready(), "scale": jnp.asarray(scale)}
        out = {}
        for key, value in node.items():
            if isinstance(value, dict):
                out[key] = fill(value, path + (key,))
            elif key == "scale":                  # a norm gain
                out[key] = (jnp.zeros if config.norm_unit_offset else jnp.ones)(value.shape, jnp.float32)
            else:                                 # kernel [out, in] or embedding [V, d]
                values = draw("normal", tuple(value.shape))
                values = values * np.float32(std_of(path, value.shape[-1]))
                out[key] = jnp.asarray(values.astype(float_dtype, copy=False)).block_until_ready()
                del values
        return out

    return fill(shapes, ())


def random_transformer(profile: ModelProfile, seed: int = 0, max_len: int | None = None, name: str | None = None):
    """A :class:`CausalLM` of ``profile``'s shape and format (``gemma-2b:int8``) with seeded random weights."""
    import dataclasses

    from speccascade.runtime.models.transformer import causal_lm

    config = transformer_config_of_profile(profile, max_len)
    params = random_params(config, seed)
    name = (name or f"{profile.name.split(':')[0]}:{profile.dtype}") + RANDOM_LABEL
    labelled = profile.model_copy(update={"notes": [*profile.notes, random_note(seed)]})
    model = causal_lm(config, params, name, config.max_len, profile=labelled)
    return dataclasses.replace(model, random_weights=True)


def random_tiny(profile: ModelProfile, seed: int = 0, max_len: int | None = None, name: str | None = None):
    """The seed's Tiny projection model of a ``projection`` profile (tiny-10m) with seeded random float32 weights."""
    import dataclasses

    from flax import nnx

    from speccascade.runtime.models.tiny import Tiny, TinyConfig
    from speccascade.runtime.models.tiny import as_causal_lm as tiny_causal_lm

    config = TinyConfig(vocab_size=profile.vocab, d_embed=profile.d_model, d_hidden=profile.d_ff,
                        max_len=max_len or 8192)
    name = (name or profile.name.split(":")[0]) + RANDOM_LABEL
    model = tiny_causal_lm(Tiny(config, rngs=nnx.Rngs(seed)), name, config.max_len)
    labelled = model.profile.model_copy(update={
        "name": profile.name.split(":")[0], "family": profile.family, "source": profile.source,
        "notes": [*profile.notes, random_note(seed), "the runtime's Tiny stores float32 weights"]})
    return dataclasses.replace(model, profile=labelled, random_weights=True)


def random_note(seed: int) -> str:
    return f"random weights (seed {seed}): for timing only; its tokens and acceptance mean nothing"


def random_model(spec: str, seed: int = 0, max_len: int | None = None):
    """``NAME[:FORMAT]`` (a hardware/models profile or a profile TOML) or a Hugging Face checkpoint directory
    (its config.json only; no weight is read) -> a random-weight CausalLM of that shape."""
    from speccascade.hardware.registry import load_model, split_quantization
    from speccascade.runtime import hf

    base, fmt = split_quantization(spec)
    if hf.is_checkpoint_dir(base):
        directory = Path(base).expanduser()
        hf_config = hf.read_config(directory)
        config = hf.transformer_config(hf_config, directory, hf.weight_format(fmt or "bf16"), max_len)
        profile = hf.checkpoint_profile(config, hf_config, directory, f"{directory.name}:{fmt or 'bf16'}")
        return random_transformer(profile, seed, max_len)
    profile = load_model(spec)
    if profile.architecture == "projection":
        return random_tiny(profile, seed, max_len)
    return random_transformer(profile, seed, max_len)
