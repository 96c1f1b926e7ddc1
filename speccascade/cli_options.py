"""The configuration flags shared by ``predict``, ``simulate`` and ``explain`` (one definition, many commands).

:func:`config_options` decorates a typer command taking ``config: PredictConfig`` (plus its own options): the
wrapper's signature gains every configuration flag, and the flags (or ``--config FILE.toml``, flags winning) become
one validated :class:`PredictConfig`. With no configuration flag at all, the seed paper's headline setup is used.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import ValidationError

from speccascade.acceptance_file import AcceptanceFile, fill_config
from speccascade.costmodel.config import HEADLINE, HeadsAccuracy, PredictConfig
from speccascade.errors import InputError
from speccascade.readers import validation_message


def _float_list(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


_OPTIONS: dict[str, tuple[Any, Any]] = {
    # name: (annotation, typer.Option)
    "config_file": (Optional[Path], typer.Option(None, "--config", help="TOML file with any of these settings (flags win).")),
    "strategy": (Optional[str], typer.Option(None, help="auto|autoregressive|speculative|vertical|filtered|horizontal|heads")),
    "hardware": (Optional[str], typer.Option(None, help="Chip profile name or TOML path (see `speccascade hardware list`).")),
    "chips": (Optional[int], typer.Option(None, help="Chips; the target is tensor-parallel over all of them.")),
    "target": (Optional[str], typer.Option(None, help="Target model (NAME[:int8|int4|bf16|fp32]).")),
    "draft": (Optional[str], typer.Option(None, help="Draft model.")),
    "tiny": (Optional[str], typer.Option(None, help="Tiny model (third stage).")),
    "k": (Optional[int], typer.Option(None, "--k", help="Draft tokens per target step (vertical: Draft reviews per step).")),
    "k_tiny": (Optional[int], typer.Option(None, "--k-tiny", help="Tiny drafts per Draft review.")),
    "alpha": (Optional[float], typer.Option(None, help="Acceptance rate of draft tokens by the target.")),
    "alpha_tiny": (Optional[float], typer.Option(None, "--alpha-tiny", help="Acceptance of Tiny tokens by the Draft.")),
    "alphas": (Optional[str], typer.Option(None, help="Horizontal: per-position acceptances, comma-separated.")),
    "k_draft": (Optional[int], typer.Option(None, "--k-draft", help="Horizontal: positions drafted by the Draft.")),
    "filter_width": (Optional[int], typer.Option(None, "--filter-width", "--m", help="Filtered: Tiny's top-m.")),
    "gamma_tiny": (Optional[float], typer.Option(None, "--gamma-tiny", help="Filtered: gamma_0 (seed eq. 6).")),
    "gamma_draft_given_tiny": (Optional[float], typer.Option(None, "--gamma-draft-given-tiny", help="gamma_1|0.")),
    "gamma_target_given_draft": (Optional[float], typer.Option(None, "--gamma-target-given-draft", help="gamma_2|1.")),
    "gamma_total": (Optional[float], typer.Option(None, "--gamma-total", help="Filtered: measured gamma_0 gamma_1|0 gamma_2|1 (replaces the product).")),
    "acceptance": (Optional[Path], typer.Option(None, "--acceptance", help="Acceptance file (JSON, from `speccascade calibrate`): fills --alpha, --alpha-tiny, --gamma-total (given flags win).")),
    "c": (Optional[float], typer.Option(None, "--c", help="Abstract mode: draft/target cost per forward (no hardware).")),
    "c_tiny": (Optional[float], typer.Option(None, "--c-tiny", help="Abstract mode: tiny/target cost per forward.")),
    "batch": (Optional[int], typer.Option(None, help="Batch size.")),
    "context": (Optional[int], typer.Option(None, help="Context length already in the KV cache.")),
    "combine": (Optional[str], typer.Option(None, help="max (roofline, default) or sum (the seed's eq. 4).")),
    "heads_accuracy": (Optional[Path], typer.Option(None, "--heads-accuracy", help="JSON {cumulative, heads: [[top1, ...], ...]}.")),
    "tree_nodes": (Optional[int], typer.Option(None, "--tree-nodes", help="Heads: candidate tree nodes (root not counted).")),
    "verify_cost": (Optional[float], typer.Option(None, "--verify-cost", help="Heads: tree verify cost / one decode step.")),
    "onchip_weights": (Optional[bool], typer.Option(None, "--onchip-weights/--no-onchip-weights", help="Allow weights in VMEM/L2 when they fit.")),
}


def build_config(values: dict[str, Any]) -> PredictConfig:
    """Flags (None = not given) [+ --config file] -> PredictConfig; no flag at all -> the headline setup."""
    config_file = values.pop("config_file", None)
    given = {name: value for name, value in values.items() if value is not None}
    if "alphas" in given:
        given["alphas"] = _float_list(given["alphas"], "--alphas")
    if "heads_accuracy" in given:
        given["heads_accuracy"] = HeadsAccuracy.from_file(given["heads_accuracy"])
    if "acceptance" in given:
        given["acceptance"] = AcceptanceFile.read(given["acceptance"])
    if config_file is not None:
        return PredictConfig.from_toml(config_file, **given)
    if not given or set(given) <= {"strategy", "combine", "onchip_weights", "batch", "context", "acceptance"}:
        headline = HEADLINE.model_dump(exclude_defaults=True)
        if "acceptance" in given:  # the headline setup with the file's acceptances instead of the claimed ones
            headline = {name: value for name, value in headline.items()
                        if name not in given["acceptance"].values(headline)}
        given = headline | given
    if "acceptance" in given:  # here, so that its errors stay one line naming the file
        given = fill_config(given, given["acceptance"])
    try:
        return PredictConfig.model_validate(given)
    except ValidationError as error:
        raise InputError(_flag_message(error)) from None


def _flag_message(error: ValidationError) -> str:
    message = validation_message(error)
    first = error.errors()[0]
    if first["loc"] and first["type"] not in ("missing", "extra_forbidden"):
        message = f"{message} (got {first['input']!r})"
    for name in _OPTIONS:
        message = message.replace(f"field '{name}'", "--" + name.replace("_", "-"))
    return message


def config_options(command):
    """Give ``command`` every configuration flag; it receives ``config=PredictConfig``."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "config"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, (annotation, option) in _OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(**kwargs):
        flags = {name: kwargs.pop(name) for name in _OPTIONS}
        return command(config=build_config(flags), **kwargs)

    wrapper.__signature__ = inspect.Signature(own + extra)
    return wrapper
