"""Models by specification, for the CLI: Hugging Face checkpoint directories, profile-shaped random models, and
the default trio's roles.

A spec is one of

* ``DIR[:FORMAT]``: a Hugging Face checkpoint (config.json + safetensors) loaded in FORMAT (``fp32``, ``bf16``
  (default), ``int8``) by :mod:`.hf`; with ``random_weights`` only its config.json is read;
* ``PROFILE[:FORMAT]``: a ``hardware/models`` profile name or profile TOML (``gemma-2b:int8``), which has no
  weights: it needs ``random_weights`` (seeded random weights of its exact shape, :mod:`.random_models`);
* ``trio:ROLE[:FORMAT]``: a role of the default trio (``trio:target:bf16``, ``trio:draft:int8``, ``trio:tiny``).

Models decoding together must share one vocabulary (:func:`check_vocabularies`). Every failure is one
:class:`InputError` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from speccascade.errors import InputError

from .api import CausalLM

TRIO_PREFIX = "trio"
TRIO_FORMATS = {"target": ("fp32", "bf16"), "draft": ("fp32", "int8"), "tiny": ("fp32",)}


@dataclass(frozen=True)
class Loaded:
    """A model and where it came from (the tokenizer of a checkpoint that ships one)."""

    model: CausalLM
    spec: str
    kind: str                      # "checkpoint", "random", "trio"
    tokenizer: object | None = None


def split_format(spec: str) -> tuple[str, str]:
    """``BASE:FORMAT`` -> (BASE, FORMAT); a ':' inside a path or no known suffix -> (spec, "")."""
    base, separator, suffix = spec.rpartition(":")
    if separator and suffix in ("fp32", "bf16", "int8", "int4", "fp16", "float32", "bfloat16"):
        return base, suffix
    return spec, ""


def load_spec(spec: str, *, random_weights: bool = False, seed: int = 0, max_len: int | None = None,
              trio_dir: str | Path | None = None, trio=None) -> Loaded:
    """One model from a spec (module docstring)."""
    from . import hf
    from .hf_tokenizer import load_tokenizer
    from .random_models import random_model

    base, fmt = split_format(spec)
    parts = base.split(":")
    if parts[0] == TRIO_PREFIX and not Path(base).expanduser().exists():
        if len(parts) != 2 or parts[1] not in TRIO_FORMATS:
            raise InputError(f"'{spec}': a trio spec is trio:ROLE[:FORMAT] with ROLE one of "
                             f"{', '.join(TRIO_FORMATS)}")
        role, fmt = parts[1], fmt or "fp32"
        if fmt not in TRIO_FORMATS[role]:
            raise InputError(f"'{spec}': the trio's {role} runs in {', '.join(TRIO_FORMATS[role])}, not {fmt}")
        if trio is None:
            from .trio import load_default_trio

            trio = load_default_trio(trio_dir)
        models = trio.models(target=fmt if role == "target" else "fp32", draft=fmt if role == "draft" else "fp32")
        return Loaded(models[role], spec, "trio", trio.tokenizer)
    path = Path(base).expanduser()
    if path.is_dir() or base.endswith("/"):
        if random_weights:  # the config's shape with random weights; the checkpoint's tokenizer if it has one
            model, kind = random_model(f"{base}:{fmt}" if fmt else base, seed, max_len), "random"
        else:
            model, kind = hf.load_checkpoint(path, fmt or "bf16", max_len), "checkpoint"
        tokenizer = (load_tokenizer(path, model.vocab_size) if (path / hf.TOKENIZER_FILE).is_file() else None)
        return Loaded(model, spec, kind, tokenizer)
    if not random_weights:
        from speccascade.hardware.registry import is_path, load_model

        if is_path(base) and not path.exists():
            raise InputError(f"{path}: no such checkpoint directory or profile file")
        load_model(spec)  # an unknown name fails here, listing the known ones
        raise InputError(f"'{spec}' is a model profile, which has no weights: add --random-weights to time a model "
                         "of its shape with seeded random weights, or give a Hugging Face checkpoint directory")
    return Loaded(random_model(spec, seed, max_len), spec, "random")


def check_vocabularies(models: Mapping[str, CausalLM | None]) -> None:
    """Every model of a decoding setup shares the target's vocabulary (a drafter's token ids are the target's)."""
    present = {role: model for role, model in models.items() if model is not None}
    reference = present.get("target") or next(iter(present.values()), None)
    if reference is None:
        return
    anchor = next(role for role, model in present.items() if model is reference)
    for role, model in present.items():
        if model.vocab_size != reference.vocab_size:
            raise InputError(f"the {role} '{model.name}' has a vocabulary of {model.vocab_size} tokens, the "
                             f"{anchor} '{reference.name}' {reference.vocab_size}: the models of one decoding "
                             "must share one vocabulary (and tokenizer)")


class ByteTokenizer:
    """No tokenizer.json: a prompt's UTF-8 bytes are its token ids (random-weight models; vocabulary >= 256)."""

    eot_id = None

    def __init__(self, vocab_size: int):
        if vocab_size < 256:
            raise InputError(f"the models have no tokenizer and a vocabulary of {vocab_size} < 256 tokens: "
                             "text prompts cannot be encoded as bytes")
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def prompt_ids(self, text: str) -> list[int]:
        ids = self.encode(text)
        return ids if len(ids) >= 2 else [0] * (2 - len(ids)) + ids

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def load_roles(specs: Mapping[str, str | None], *, random_weights: bool = False, seed: int = 0,
               max_len: int | None = None, trio_dir: str | Path | None = None):
    """(models by role, tokenizer, loaded entries) for ``{"target": SPEC, "draft": SPEC, "tiny": SPEC}`` (None:
    no such model). The tokenizer is the first checkpoint's (target first) that ships one, else byte ids."""
    loaded: dict[str, Loaded] = {}
    trio = None
    for offset, role in enumerate(("target", "draft", "tiny")):
        spec = specs.get(role)
        if not spec:
            continue
        if split_format(spec)[0].startswith(f"{TRIO_PREFIX}:") and trio is None:
            from .trio import load_default_trio

            trio = load_default_trio(trio_dir)
        loaded[role] = load_spec(spec, random_weights=random_weights, seed=seed + offset, max_len=max_len,
                                 trio_dir=trio_dir, trio=trio)
    if "target" not in loaded:
        raise InputError("give a target model (--target-model)")
    models = {role: entry.model for role, entry in loaded.items()}
    check_vocabularies(models)
    tokenizer = next((entry.tokenizer for entry in loaded.values() if entry.tokenizer is not None), None)
    return models, tokenizer or ByteTokenizer(models["target"].vocab_size), loaded
