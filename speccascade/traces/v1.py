"""Version-1 traces and summaries converted to version 2 on read (the runtime before the strategy registry).

A v1 step's ``strategy`` was a label whose knobs lived in the header's ``config.strategies``; its ``cascade`` was
the delivered-token-budget cascade, now ``vertical-budget`` with ``k = k_outer`` and ``k_tiny = k_inner``; the
filtered cascade's ``top_m`` is now ``filter_width``. A v1 header names no chip and carries no model profiles.
"""

from __future__ import annotations

from typing import Any

from speccascade import strategies as registry

from .records import SCHEMA_VERSION, _canonical

V1_NOTE = ("converted on read from schema_version 1: a v1 header names no chip profile and carries no model "
           "profiles (chip and models[].profile are None); v1 strategy 'cascade' read as 'vertical-budget' "
           "(k = k_outer, k_tiny = k_inner), 'filtered' top_m as filter_width")


def v1_strategy(label: str, config: Any = None) -> tuple[str, dict[str, int | None]]:
    """(canonical name, knobs) of a v1 strategy label, its knobs taken from the v1 header's
    ``config.strategies[label]`` when given (a knob it lacks is None). Unknown names raise :class:`InputError`."""
    config = config if isinstance(config, dict) else {}
    original = str(config.get("strategy", label))
    if original.strip().lower() == "cascade":  # v1's cascade ran Draft reviews until k_outer tokens existed
        return "vertical-budget", {"k": config.get("k_outer"), "k_tiny": config.get("k_inner")}
    name = _canonical(original)
    spec = registry.get(name)
    renamed = {"filter_width": "top_m"}
    return name, {knob: config.get(renamed.get(knob, knob), config.get(knob)) for knob in spec.knob_names}


def convert_v1_record(data: Any, header_config: dict[str, Any] | None = None, notes: list[str] | None = None,
                      _cache: dict | None = None) -> Any:
    """One v1 record (parsed JSON) -> its v2 form (still unvalidated). ``header_config`` is the v1 header's
    ``config`` (it holds each label's knobs); ``notes`` collects what the conversion could not recover."""
    if not isinstance(data, dict):
        return data
    kind = data.get("kind")
    if kind == "header":
        return {**data, "schema_version": SCHEMA_VERSION, "notes": [*data.get("notes", []), V1_NOTE]}
    if kind not in ("step", "compile") or not isinstance(data.get("strategy"), str):
        return data
    label = data["strategy"]
    cache = {} if _cache is None else _cache
    if label not in cache:
        strategies = (header_config or {}).get("strategies") if isinstance(header_config, dict) else None
        entry = strategies.get(label) if isinstance(strategies, dict) else None
        name, knobs = v1_strategy(label, entry)
        missing = [knob for knob, value in knobs.items() if value is None]
        if missing and notes is not None:
            notes.append(f"v1 strategy '{label}' ({name}): knobs {', '.join(missing)} not recorded in the header "
                         "(registry defaults apply)")
        cache[label] = (name, {knob: value for knob, value in knobs.items() if value is not None})
    name, knobs = cache[label]
    return {**data, "strategy": name, **({"knobs": knobs} if kind == "step" else {})}


def convert_summary_v1(data: dict) -> dict:
    strategies = {}
    for label, entry in (data.get("strategies") or {}).items():
        if isinstance(entry, dict):
            name, knobs = v1_strategy(entry.get("strategy", label), entry.get("config"))
            entry = {**entry, "strategy": name, "knobs": {k: v for k, v in knobs.items() if v is not None}}
            if "tokens_per_step" in entry:  # v1's name for the measured mean
                entry["mean_tokens_per_step"] = entry.pop("tokens_per_step")
            label = name
        strategies[label] = entry
    return {**data, "schema_version": SCHEMA_VERSION, "strategies": strategies,
            "notes": [*data.get("notes", []), V1_NOTE.replace("header", "summary")]}
