"""The acceptance file: measured acceptance per drafter->verifier pair, written by calibration, read by the cost
model and the simulator (``--acceptance FILE.json`` of predict, simulate, optimize and sweep; ``acceptance =
"fit.json"`` in a config TOML, relative to the TOML).

One JSON document (``kind = "acceptance"``, ``version`` :data:`ACCEPTANCE_VERSION`)::

    {"kind": "acceptance", "version": 1,
     "provenance": {created_utc, traces: [{path, sha256, schema_version, steps, steps_used}], steps_used,
                    tokens_used, records_skipped, bootstrap, seed, level, significance, block_steps, method},
     "parameters": [entry, ...],   # pooled over the strategies whose pair estimates the same parameter
     "pairs": [entry, ...],        # one per (strategy, pair): what was pooled
     "skipped": [{file, strategy, pair, reason, records, example}, ...]}

An entry names the registry's acceptance parameter (:mod:`speccascade.strategies`: ``draft->target`` -> ``alpha``,
``tiny->draft`` -> ``alpha_tiny``, the filtered cascade's ``draft->target`` -> ``gamma_total``), the models (by
role, as the traces' headers name them) and sampling it was measured with, the maximum-likelihood ``alpha`` with
its bootstrap ``ci``, the steps and judged tokens used, and when estimable the per-position alphas
(``positional``) and the lag-1 Markov chain (``markov``: p11, p01, mean alpha and rho as
:class:`speccascade.simulate.Markov` defines them), each with its likelihood-ratio test (``p_value``) and whether
the test retained it (``significant``). How the numbers are made: :mod:`speccascade.calibrate.acceptance`.

Readers give one :class:`InputError` line naming the file (missing, malformed JSON, not an acceptance file, a
version this reader does not know, an invalid field). This module imports neither JAX nor the cost model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from .errors import InputError
from .readers import read_json, validation_message
from .schema import Schema

__all__ = ["ACCEPTANCE_VERSION", "PARAMETERS", "AcceptanceEntry", "AcceptanceFile", "MarkovFit", "PositionalFit",
           "Provenance", "Skipped", "TraceSource", "applied", "applied_line", "fill_config", "load_acceptance",
           "model_key"]

ACCEPTANCE_VERSION = 1
PARAMETERS = ("alpha", "alpha_tiny", "gamma_total")  # the scalar acceptance parameters a config takes
Interval = tuple[float, float]


class _Frozen(Schema):  # finite numbers, no booleans for numbers (speccascade/schema.py)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class TraceSource(_Frozen):
    path: str
    sha256: str | None                 # None: the trace was given in memory, not read from a file
    schema_version: int
    steps: int = Field(ge=0)           # step records in the file
    steps_used: int = Field(ge=0)      # of them, steps whose accept/reject sequences entered a fit


class Provenance(_Frozen):
    created_utc: str
    traces: list[TraceSource]
    steps_used: int = Field(ge=0)
    tokens_used: int = Field(ge=0)     # judged tokens (accepted + rejected) over every pooled entry
    records_skipped: int = Field(ge=0)
    bootstrap: int = Field(ge=0)       # resamples of blocks of consecutive steps
    seed: int
    level: float = Field(gt=0, lt=1)   # confidence level of every interval
    significance: float = Field(gt=0, lt=1)  # a test retains per-position alphas / a Markov chain below this p
    block_steps: str = ""              # how the bootstrap blocks were sized
    method: str = ""


class PositionalFit(_Frozen):
    """alpha_i = accepted_i / trials_i for draft positions i = 1..len(alphas) (positions with enough trials)."""

    alphas: list[float]
    ci: list[Interval]
    trials: list[int]
    p_value: float                     # LRT positional vs constant alpha, chi2(P - 1)
    p_value_given_state: float | None  # LRT of position among tokens after an accepted one (Markov controlled)
    significant: bool


class MarkovFit(_Frozen):
    """Two-state chain over judged tokens: p11 = P(A | A), p01 = P(A | R); alpha = p01 / (1 - p11 + p01),
    rho = p11 - p01 (so p11 = alpha + rho (1 - alpha), p01 = alpha (1 - rho), as simulate's Markov)."""

    alpha: float = Field(ge=0, le=1)
    rho: float = Field(ge=-1, le=1)
    rho_ci: Interval | None
    p11: float = Field(ge=0, le=1)
    p01: float = Field(ge=0, le=1)
    transitions: dict[str, int]        # AA, AR, RA, RR counts (previous -> this judged token)
    p_value: float                     # LRT Markov vs i.i.d., chi2(1)
    p_value_given_position: float | None  # LRT of the previous state at round starts (position controlled)
    significant: bool


class AcceptanceEntry(_Frozen):
    parameter: str                     # registry acceptance parameter: alpha, alpha_tiny, gamma_total
    pair: str                          # "draft->target", "tiny->draft"
    strategies: list[str]              # canonical registry names pooled in this entry
    models: dict[str, str | None]      # role -> model name (trace headers), drafter and verifier
    sampling: str | None = None        # the runs' sampling settings (header config), None if unrecorded
    alpha: float = Field(ge=0, le=1)   # accepted / judged (closed-form MLE of the truncated geometric)
    ci: Interval
    ci_method: str
    runs: int = Field(ge=1)
    steps: int = Field(ge=1)
    judged: int = Field(ge=1)
    accepted: int = Field(ge=0)
    positional: PositionalFit | None = None
    markov: MarkovFit | None = None
    homogeneity_p_value: float | None = None  # pooled entries: LRT that the pooled strategies share alpha
    notes: list[str] = Field(default_factory=list)

    @property
    def rho(self) -> float | None:
        """The fitted lag-1 correlation when its test retained the Markov chain, else None."""
        return self.markov.rho if self.markov is not None and self.markov.significant else None

    def label(self) -> str:
        models = "/".join(str(name) for name in self.models.values())
        return f"{self.parameter} ({self.pair}, {','.join(self.strategies)}; {models})"

    def describe(self) -> str:
        """One line: alpha [ci], counts, per-position and Markov verdicts."""
        low, high = self.ci
        text = (f"{self.parameter} = {self.alpha:.4f} [{low:.4f}, {high:.4f}] ({self.pair}, "
                f"{', '.join(self.strategies)}; {self.steps} steps, {self.judged} tokens)")
        if self.markov is not None:
            verdict = "Markov retained" if self.markov.significant else "not retained"
            text += f"; rho = {self.markov.rho:+.3f} (LRT p = {self.markov.p_value:.3g}, {verdict})"
        if self.positional is not None and self.positional.significant:
            text += (f"; per position {', '.join(f'{a:.3f}' for a in self.positional.alphas)} "
                     f"(LRT p = {self.positional.p_value:.3g})")
        return text


class Skipped(_Frozen):
    """Records (or groups) the fit could not use, with the reason; ``example`` locates the first one."""

    file: str
    strategy: str | None = None
    pair: str | None = None
    reason: str
    records: int = Field(ge=1)
    example: str = ""


def model_key(name: str | None) -> str | None:
    """A model name as compared with a config's: path stem, without a ':quantization' suffix, lower case."""
    if name is None:
        return None
    text = str(name).strip()
    text = text.rsplit(":", 1)[0] if ":" in Path(text).name else text
    return Path(text).stem.lower() if text.endswith(".toml") else Path(text).name.lower()


class AcceptanceFile(_Frozen):
    kind: Literal["acceptance"] = "acceptance"
    version: int = ACCEPTANCE_VERSION
    provenance: Provenance
    parameters: list[AcceptanceEntry]
    pairs: list[AcceptanceEntry] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    source: str | None = Field(default=None, exclude=True)  # the file it was read from (not written)

    @model_validator(mode="after")
    def _known_parameters(self) -> "AcceptanceFile":
        for entry in self.parameters:
            if entry.parameter not in PARAMETERS:
                raise ValueError(f"parameter '{entry.parameter}' is not one of {', '.join(PARAMETERS)}")
        return self

    # --- files -----------------------------------------------------------------------------------------------
    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | Path) -> "AcceptanceFile":
        """Read and validate an acceptance file; every problem is one InputError line naming ``path``."""
        path = Path(path)
        data = read_json(path)
        if not isinstance(data, dict) or data.get("kind") != "acceptance":
            kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise InputError(f"{path}: not an acceptance file (kind {kind!r}, expected 'acceptance'; "
                             "write one with `speccascade calibrate TRACE...`)")
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise InputError(f"{path}: acceptance file version must be an integer, got {version!r}")
        if version != ACCEPTANCE_VERSION:
            newer = "newer than this reader; upgrade speccascade" if version > ACCEPTANCE_VERSION else "unknown"
            raise InputError(f"{path}: acceptance file version {version} is {newer} (this reader reads "
                             f"version {ACCEPTANCE_VERSION})")
        try:
            document = cls.model_validate(data)
        except ValidationError as error:
            raise InputError(f"{path}: invalid acceptance file: {validation_message(error)}") from None
        return document.model_copy(update={"source": str(path)})

    @property
    def name(self) -> str:
        return self.source or "the acceptance file"

    # --- what a configuration takes --------------------------------------------------------------------------
    def entry(self, parameter: str, models: dict[str, str | None] | None = None) -> AcceptanceEntry | None:
        """The pooled entry of ``parameter`` (None if the file has none). With entries for several models or
        sampling settings, ``models`` (role -> a config's model name) picks the one whose models match; an
        ambiguity left is one InputError line listing the entries."""
        found = [entry for entry in self.parameters if entry.parameter == parameter]
        if len(found) > 1 and models:
            wanted = {role: model_key(name) for role, name in models.items() if name is not None}
            found = [entry for entry in found
                     if all(model_key(entry.models.get(role)) == key for role, key in wanted.items()
                            if role in entry.models)] or found
        if len(found) > 1:
            listing = "; ".join(entry.label() + (f", sampling {entry.sampling}" if entry.sampling else "")
                                for entry in found)
            raise InputError(f"{self.name}: {len(found)} fits of {parameter} ({listing}); name the models "
                             "(--target/--draft/--tiny as in the traces) or fit one model set per file")
        return found[0] if found else None

    def values(self, models: dict[str, str | None] | None = None) -> dict[str, AcceptanceEntry]:
        """parameter -> entry for every scalar parameter the file fits (alpha, alpha_tiny, gamma_total)."""
        return {name: entry for name in PARAMETERS if (entry := self.entry(name, models)) is not None}


# The config flags that set each parameter: the file fills a parameter only when none of them is given.
EXPLICIT = {"alpha": ("alpha",), "alpha_tiny": ("alpha_tiny",),
            "gamma_total": ("gamma_total", "gamma_tiny", "gamma_draft_given_tiny", "gamma_target_given_draft")}


def load_acceptance(value: Any, base: str | Path | None = None) -> AcceptanceFile:
    """An :class:`AcceptanceFile` from itself, or from a path (relative to ``base``, e.g. a TOML's folder)."""
    if isinstance(value, AcceptanceFile):
        return value
    if isinstance(value, dict):
        try:
            return AcceptanceFile.model_validate(value)
        except ValidationError as error:
            raise InputError(f"invalid acceptance document: {validation_message(error)}") from None
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return AcceptanceFile.read(path if base is None or path.is_absolute() else Path(base) / path)
    raise InputError(f"acceptance: expected a file path, got {type(value).__name__}")


def fill_config(data: dict[str, Any], document: AcceptanceFile) -> dict[str, Any]:
    """``data`` (a config's fields) with alpha / alpha_tiny / gamma_total filled from ``document`` where no flag
    setting that parameter is given (explicit settings win). Models in ``data`` pick among several fits."""
    models = {"target": data.get("target"), "draft": data.get("draft"), "tiny": data.get("tiny")}
    filled = dict(data)
    for name, entry in document.values(models).items():
        if all(data.get(flag) is None for flag in EXPLICIT[name]):
            filled[name] = entry.alpha
    return filled


def applied(document: AcceptanceFile, config: Any) -> dict[str, Any]:
    """What ``document`` gave ``config`` (any object with the parameters and target/draft/tiny as attributes):
    per parameter the fit and whether the config uses it (``used`` False: a given setting won)."""
    models = {role: getattr(config, role, None) for role in ("target", "draft", "tiny")}
    parameters = {}
    for name, entry in document.values(models).items():
        parameters[name] = {"value": entry.alpha, "ci": list(entry.ci), "pair": entry.pair,
                            "strategies": entry.strategies, "rho": entry.rho,
                            "used": getattr(config, name, None) == entry.alpha}
    return {"file": document.name, "parameters": parameters}


def applied_line(report: dict[str, Any]) -> str:
    """One line for a table's footer: 'acceptance from FILE: alpha = 0.81 [0.80, 0.82], alpha_tiny ... (a flag wins)'."""
    parts = []
    for name, item in report["parameters"].items():
        low, high = item["ci"]
        text = f"{name} = {item['value']:.4f} [{low:.4f}, {high:.4f}]"
        parts.append(text if item["used"] else f"{text} (not used: a given setting wins)")
    return f"acceptance from {report['file']}: " + ("; ".join(parts) or "no scalar parameter")
