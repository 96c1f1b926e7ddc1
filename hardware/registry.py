"""Find chip and model profiles by name or by path, and write model profiles.

Names resolve, in order, to: a path to a TOML file (a name ending in ``.toml``, or holding a ``/``; read afresh
every time, since a path's file may change); a profile in the user directory (``$SPECCASCADE_HOME``, default
``~/.speccascade``: where ``speccascade hardware probe`` writes); a profile shipped in this package. Model names
and paths may carry a quantization suffix (``gemma-2b:int8``, ``~/.speccascade/trio/draft.toml:int8``).
:func:`write_model_toml` writes a profile in the shipped files' format, one commented line per number.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping, TypeVar

from pydantic import BaseModel, ValidationError

from .chip import ChipProfile
from speccascade.errors import InputError, UnknownNameError
from speccascade.readers import read_toml, validation_message
from .model import BYTES_PER_PARAM, ModelProfile

ProfileT = TypeVar("ProfileT", bound=BaseModel)


def user_home() -> Path:
    return Path(os.environ.get("SPECCASCADE_HOME", Path.home() / ".speccascade"))


def _package_dir(kind: str) -> Path:
    return Path(str(resources.files("speccascade.hardware").joinpath(kind)))


def _dirs(kind: str) -> list[Path]:
    return [user_home() / kind, _package_dir(kind)]


def _names(kind: str) -> list[str]:
    names: set[str] = set()
    for directory in _dirs(kind):
        if directory.is_dir():
            names.update(path.stem for path in directory.glob("*.toml"))
    return sorted(names)


def list_chips() -> list[str]:
    return _names("chips")


def list_models() -> list[str]:
    return _names("models")


def load_toml_model(path: Path, cls: type[ProfileT]) -> ProfileT:
    """Read and validate one TOML file; any problem becomes one :class:`InputError` line naming the file."""
    data = read_toml(path)
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        raise InputError(f"{path}: {validation_message(error)}") from None


def is_path(name: str) -> bool:
    """Whether a profile name is a path to a TOML file rather than a registered name."""
    return name.endswith(".toml") or "/" in name or os.sep in name


def _resolve(kind: str, name: str) -> Path:
    if is_path(name):
        return Path(name).expanduser()
    for directory in _dirs(kind):
        path = directory / f"{name}.toml"
        if path.exists() or path.is_symlink():  # not only regular files: the reader names what is wrong
            return path
    raise UnknownNameError("hardware" if kind == "chips" else "model", name, _names(kind))


def is_shipped_chip(name: str) -> bool:
    """Whether ``name`` is a chip profile shipped with this package (a datasheet profile)."""
    return (_package_dir("chips") / f"{name}.toml").is_file()


def forget_loaded() -> None:
    """Drop the by-name caches (after writing a profile that a name may already have resolved to)."""
    _load_chip_by_name.cache_clear()
    _load_model_by_name.cache_clear()


def load_chip(name: str) -> ChipProfile:
    """A chip profile by name (``tpu-v5e``) or by path to a TOML file."""
    if is_path(name):
        return load_toml_model(_resolve("chips", name), ChipProfile)
    return _load_chip_by_name(name)


@lru_cache(maxsize=256)
def _load_chip_by_name(name: str) -> ChipProfile:
    return load_toml_model(_resolve("chips", name), ChipProfile)


def portable_chip(name: str) -> str | ChipProfile:
    """How a record (a trace header) should name chip ``name``: a name that resolves to a profile shipped with
    this package stays the name (every installation resolves it alike); any other (a probed profile in the user
    directory, a path) becomes the validated profile itself, so the record is self-contained."""
    path = _resolve("chips", name)
    profile = load_chip(name)
    shipped = _package_dir("chips") / f"{name}.toml"
    return name if not is_path(name) and path == shipped else profile


def split_quantization(name: str) -> tuple[str, str]:
    """``NAME:dtype`` or ``PATH.toml:dtype`` -> (NAME or PATH, dtype); no suffix -> (name, "")."""
    base, separator, suffix = name.rpartition(":")
    if not separator or is_path(suffix):  # no suffix, or a ':' inside a path
        return name, ""
    return base, suffix


def load_model(name: str) -> ModelProfile:
    """A model profile by name with optional quantization suffix (``gemma-2b:int8``) or by path (``FILE.toml``,
    ``FILE.toml:int8``; read afresh each call)."""
    if is_path(split_quantization(name)[0]):
        return _load_model(name)
    return _load_model_by_name(name)


@lru_cache(maxsize=256)
def _load_model_by_name(name: str) -> ModelProfile:
    return _load_model(name)


def _load_model(name: str) -> ModelProfile:
    base, dtype = split_quantization(name)
    profile = load_toml_model(_resolve("models", base), ModelProfile)
    if dtype:
        if dtype not in BYTES_PER_PARAM:
            raise InputError(f"unknown quantization '{dtype}' in '{name}'; known: {', '.join(BYTES_PER_PARAM)}")
        profile = profile.with_dtype(dtype)
    return profile


def write_model_toml(profile: ModelProfile, path: str | Path, comments: Mapping[str, str] | None = None,
                     header: str = "") -> Path:
    """Write ``profile`` as TOML in the format of ``hardware/models/*.toml``: one line per field, each followed by
    its comment from ``comments`` (where a number came from), ``header`` as leading comment lines. The file loads
    with :func:`load_model` (as a path) and ``speccascade predict --target FILE.toml``."""
    import tomli_w

    comments = comments or {}
    data = profile.model_dump(mode="json")
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    texts = {key: tomli_w.dumps({key: _integral(value)}).strip() for key, value in data.items()}
    width = max((len(text) for text in texts.values() if len(text) <= 32), default=0)
    for key, text in texts.items():
        comment = comments.get(key)
        if comment and ("\n" in text or len(text) > 32):
            lines.append(f"# {key}: {comment}")
            comment = None
        lines.append(f"{text:<{width}}  # {comment}" if comment else text)
    from speccascade.writers import atomic_write

    def write(temporary: Path) -> None:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        load_toml_model(temporary, ModelProfile)  # what was written must read back, before it takes the name

    return atomic_write(Path(path), write, force=True)


def _integral(value):
    """Integral floats as ints (parameter counts read better as 19000000 than 19000000.0)."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**63 else value
