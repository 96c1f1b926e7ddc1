"""Chip and model profiles (pydantic + one TOML each) and a probe of this machine."""

from .chip import ChipProfile, Corrections, Interconnect, MemoryLevel
from speccascade.errors import InputError, UnknownNameError
from .model import BYTES_PER_PARAM, ModelProfile
from .registry import list_chips, list_models, load_chip, load_model, write_model_toml

__all__ = [
    "BYTES_PER_PARAM", "ChipProfile", "Corrections", "InputError", "Interconnect", "MemoryLevel",
    "ModelProfile", "UnknownNameError", "list_chips", "list_models", "load_chip", "load_model",
    "write_model_toml",
]
