"""Find chip and model profiles by name or by path.

Names resolve, in order, to: a path to a ``.toml`` file; a profile in the user directory
(``$SPECCASCADE_HOME``, default ``~/.speccascade``: where ``speccascade hardware probe`` writes); a profile
shipped in this package. Model names may carry a quantization suffix (``gemma-2b:int8``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TypeVar

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


def _resolve(kind: str, name: str) -> Path:
    if name.endswith(".toml"):
        return Path(name)
    for directory in _dirs(kind):
        path = directory / f"{name}.toml"
        if path.is_file():
            return path
    raise UnknownNameError("hardware" if kind == "chips" else "model", name, _names(kind))


@lru_cache(maxsize=256)
def load_chip(name: str) -> ChipProfile:
    """A chip profile by name (``tpu-v5e``) or by path to a TOML file."""
    return load_toml_model(_resolve("chips", name), ChipProfile)


@lru_cache(maxsize=256)
def load_model(name: str) -> ModelProfile:
    """A model profile by name with optional quantization suffix (``gemma-2b:int8``) or by path."""
    base, _, dtype = name.partition(":")
    profile = load_toml_model(_resolve("models", base), ModelProfile)
    if dtype:
        if dtype not in BYTES_PER_PARAM:
            raise InputError(f"unknown quantization '{dtype}' in '{name}'; known: {', '.join(BYTES_PER_PARAM)}")
        profile = profile.with_dtype(dtype)
    return profile
