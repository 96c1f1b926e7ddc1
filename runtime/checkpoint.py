"""Checkpoints: one safetensors file per model plus a manifest with sha256 hashes (no pickle).

A model file holds its weights under dotted names (``layers.0.attn.qkv.kernel``) and, in the safetensors header's
string metadata, ``format`` (``speccascade-model``), ``kind`` (``transformer`` or ``tiny``), ``name`` and the
model's ``config`` as JSON. A directory checkpoint (a trio) adds ``manifest.json``::

    {"format": "speccascade-checkpoint", "version": 1,
     "files": {"target.safetensors": "<sha256>", ..., "tokenizer.json": "<sha256>"},
     "metadata": {...training record...}}

Loading checks, in order: the manifest parses; every listed file exists and its sha256 matches (else "corrupted");
each safetensors header parses; its config builds a model whose parameter names and shapes equal the file's
(else "mismatched"). Every failure is an :class:`InputError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from speccascade.errors import InputError
from speccascade.readers import read_json
from speccascade.runtime.models.tiny import Tiny, TinyConfig
from speccascade.runtime.models.transformer import Transformer, TransformerConfig

MODEL_FORMAT = "speccascade-model"
MANIFEST_FORMAT = "speccascade-checkpoint"
MANIFEST = "manifest.json"
KINDS = {"transformer": (Transformer, TransformerConfig), "tiny": (Tiny, TinyConfig)}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def flatten_params(params: dict, prefix: str = "", leaf=np.asarray) -> dict:
    """{"layers": {0: {"w": a}}} -> {"layers.0.w": leaf(a)}."""
    flat: dict = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + ".", leaf))
        else:
            flat[name] = leaf(value)
    return flat


def unflatten_params(flat: dict[str, np.ndarray]) -> dict:
    params: dict = {}
    for name, value in flat.items():
        node = params
        parts = [int(p) if p.isdigit() else p for p in name.split(".")]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = jnp.asarray(value)
    return params


def kind_of(module: nnx.Module) -> str:
    for kind, (cls, _) in KINDS.items():
        if isinstance(module, cls):
            return kind
    raise InputError(f"cannot checkpoint a {type(module).__name__}; known kinds: {', '.join(KINDS)}")


def save_model(module: nnx.Module, path: str | Path, name: str) -> str:
    """Write ``module``'s weights and config to ``path`` (safetensors); returns the file's sha256."""
    flat = flatten_params(nnx.to_pure_dict(nnx.state(module)))
    header = {"format": MODEL_FORMAT, "kind": kind_of(module), "name": name,
              "config": json.dumps(module.config.to_dict())}
    save_file(flat, str(path), metadata=header)
    return sha256_file(path)


def load_model(path: str | Path, expected_sha256: str | None = None) -> tuple[str, nnx.Module]:
    """(name, module) from a model file; checks the hash when given, then the header and every tensor's shape."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise InputError(f"model file {path} is corrupted: its sha256 does not match the manifest")
    try:
        with safe_open(str(path), framework="np") as handle:
            header = handle.metadata() or {}
            flat = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"model file {path} is not a readable safetensors file: {err}") from err
    if header.get("format") != MODEL_FORMAT or header.get("kind") not in KINDS:
        raise InputError(f"model file {path} is not a {MODEL_FORMAT} file (format={header.get('format')!r}, "
                         f"kind={header.get('kind')!r})")
    cls, config_cls = KINDS[header["kind"]]
    try:
        config = config_cls.from_dict(json.loads(header["config"]))
    except (KeyError, json.JSONDecodeError) as err:
        raise InputError(f"model file {path} has no valid config in its header: {err}") from err
    abstract = nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    expected = flatten_params(nnx.to_pure_dict(state), leaf=lambda value: tuple(value.shape))
    found = {key: tuple(value.shape) for key, value in flat.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                  else f"shape of {wrong[0]} is {found[wrong[0]]}, config says {expected[wrong[0]]}")
        raise InputError(f"model file {path} does not match its config: {detail}")
    nnx.replace_by_pure_dict(state, unflatten_params(flat))
    return header.get("name", path.stem), nnx.merge(graphdef, state)


def write_manifest(directory: str | Path, files: list[str], metadata: dict) -> Path:
    directory = Path(directory)
    manifest = {"format": MANIFEST_FORMAT, "version": 1,
                "files": {name: sha256_file(directory / name) for name in files}, "metadata": metadata}
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, default=_json_default))
    return path


def _json_default(value):
    if isinstance(value, (np.generic, jax.Array)):
        return np.asarray(value).tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a checkpoint directory, with every listed file's sha256 verified."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{directory} is not a checkpoint: {MANIFEST} is missing")
    try:
        manifest = read_json(path)
    except InputError as err:
        raise InputError(f"checkpoint manifest is corrupted: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path} is not a {MANIFEST_FORMAT} manifest")
    files = manifest.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(digest, str) for digest in files.values()):
        raise InputError(f"{path}: 'files' must map file names to sha256 digests")
    for name, digest in files.items():
        file = directory / name
        if not file.is_file():
            raise InputError(f"checkpoint file {file} listed in the manifest is missing")
        if sha256_file(file) != digest:
            raise InputError(f"checkpoint file {file} is corrupted: its sha256 does not match the manifest")
    return manifest
