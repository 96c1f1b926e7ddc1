"""Write a calibration: the calibrated chip profile (TOML), the acceptance file (JSON) and the report (JSON).

Where. With ``--out DIR``: ``DIR/NAME.toml``, ``DIR/acceptance.json``, ``DIR/calibration.json``. Without it, the
calibration is stored under the user's speccascade home, like probe profiles: the profile as
``$SPECCASCADE_HOME/chips/NAME.toml`` (so ``--hardware NAME`` finds it and ``speccascade hardware list`` shows it,
calibrated = yes) and the rest in ``$SPECCASCADE_HOME/calibrations/NAME/``. A name of a shipped profile, or of a
user profile that is not a calibration (a probe's), is refused: calibration never replaces datasheet or probed
peaks, it writes a new profile carrying them.

The profile is the input profile with ``[corrections]`` filled (values, ``calibrated = true``, ``source`` and
``[corrections.provenance]``: traces with SHA-256, date, points used and unused, residuals, each parameter's
estimate); it is read back and compared after writing, so what ``predict --hardware FILE.toml`` reads is exactly
what was fitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speccascade.cli_text import dumps
from speccascade.errors import InputError
from speccascade.readers import read_json
from speccascade.writers import OutputSet, atomic_write, output_dir
from speccascade.hardware.chip import ChipProfile
from speccascade.hardware.registry import forget_loaded, is_shipped_chip, load_toml_model, user_home

from .calibration import Calibration
from .forward_fit import residual_summary

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Locations:
    profile: Path
    directory: Path  # acceptance.json and calibration.json
    replaces: bool = False  # under the home: a previous calibration of this name is replaced

    @property
    def acceptance(self) -> Path:
        return self.directory / "acceptance.json"

    @property
    def report(self) -> Path:
        return self.directory / "calibration.json"


def calibrations_home() -> Path:
    return user_home() / "calibrations"


def locations(name: str, out: str | Path | None) -> Locations:
    """Where calibration ``name`` goes (see the module docstring); checks the name and what it would replace."""
    if not NAME_PATTERN.match(name) or name.endswith(".toml"):
        raise InputError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (no path, no .toml)")
    if out is not None:
        if str(out).strip() == "":
            raise InputError("--out: empty folder name (give a folder such as --out calibration)")
        directory = output_dir(Path(out).expanduser())
        return Locations(directory / f"{name}.toml", directory)
    if is_shipped_chip(name):
        raise InputError(f"--name {name}: a shipped chip profile has that name; calibration writes a new profile "
                         f"next to the datasheet one (e.g. --name {name}-calibrated)")
    profile = user_home() / "chips" / f"{name}.toml"
    if profile.is_file():
        existing = load_toml_model(profile, ChipProfile)
        if existing.corrections.provenance is None:
            raise InputError(f"--name {name}: {profile} is a profile that is not a calibration (a probe's?); "
                             f"calibration does not replace it, choose another name")
    return Locations(profile, calibrations_home() / name, replaces=True)


def profile_text(profile: ChipProfile, header: str = "") -> str:
    import tomli_w

    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + tomli_w.dumps(profile.model_dump(mode="json", exclude_none=True))


def _write_checked_profile(profile: ChipProfile, temporary: Path, header: str) -> None:
    """Write the TOML to ``temporary`` and check that it reads back identical (before it takes its name)."""
    temporary.write_text(profile_text(profile, header), encoding="utf-8")
    if load_toml_model(temporary, ChipProfile) != profile:
        raise RuntimeError(f"{temporary}: the written profile does not read back identical")  # a bug, not input


def write_profile(profile: ChipProfile, path: Path, header: str = "", *, force: bool = False) -> Path:
    """Write ``profile`` as TOML (atomically; an existing file is kept unless ``force``) and check that it reads
    back identical."""
    atomic_write(path, lambda temporary: _write_checked_profile(profile, temporary, header), force=force)
    forget_loaded()  # a profile of this name may have been loaded by name before in this process
    return path


def report(calibration: Calibration, where: Locations | None = None, acceptance: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """The calibration as one JSON-ready dict (``calibration.json`` and ``calibrate --json``)."""
    fit = calibration.fit
    roles: dict[str, list[float]] = {}
    for point, error in zip(fit.points, fit.relative_residuals):
        roles.setdefault(point.model_key, []).append(float(error))
    return {
        "name": calibration.name, "mode": calibration.mode, "date_utc": calibration.date_utc,
        "chip": calibration.device.chip.name,
        "profile": str(where.profile) if where else None,
        "hardware": _hardware_argument(calibration.name, where),
        "traces": [source.model_dump() for source in calibration.sources],
        "forward_fit": {
            "predicted_by": "fit: the cost model with the fitted corrections (what predict --hardware applies)",
            "parameters": {name: estimate.model_dump() for name, estimate in fit.parameters.items()},
            "uncertainty": fit.uncertainty, "combine": fit.combine,
            "residuals": fit.residuals.model_dump(),
            "residuals_by_model": {key: residual_summary(values).model_dump() for key, values in roles.items()},
            "uncalibrated_residuals": (calibration.uncalibrated_residuals.model_dump()
                                       if calibration.uncalibrated_residuals else None),
            "notes": list(fit.notes),
            "points": [{"where": p.where, "model": p.model_key, "level": p.level, "tokens": p.tokens,
                        "context": p.context, "measured_ms": p.ms, "predicted_ms": p.ms * (1.0 + float(r))}
                       for p, r in zip(fit.points, fit.relative_residuals)],
        },
        "table": None if calibration.table is None else {
            "predicted_by": "table: the recorded forwards of the same model, interpolated over tokens and context",
            "models": calibration.table.models(),
            "leave_one_out_residuals": calibration.table_residuals.model_dump(),
        },
        "host_overhead": [{"strategy": o.strategy, "knobs": o.knobs, "steps": o.steps, "step_ms": o.step_ms,
                           "forwards_ms": o.forwards_ms, "overhead_ms": o.overhead_ms,
                           "overhead_ms_median": o.overhead_ms_median, "host_overhead_fraction": o.fraction,
                           "forwards_predicted_by": o.predicted_by} for o in calibration.overheads],
        "records": {"used": calibration.used, "unused": len(calibration.unused),
                    "unused_by_reason": calibration.unused_reasons(),
                    "unused_records": [{"where": u.where, "kind": u.kind, "reason": u.reason}
                                       for u in calibration.unused]},
        "acceptance": acceptance,
        "notes": list(calibration.notes),
    }


def _hardware_argument(name: str, where: Locations | None) -> str | None:
    """What ``--hardware`` takes to use this profile: its name when kept under the home, else its path."""
    if where is None:
        return None
    return name if where.profile == user_home() / "chips" / f"{name}.toml" else str(where.profile)


def fit_and_write_acceptance(calibration: Calibration, path: Path, outputs: OutputSet | None = None
                             ) -> dict[str, Any]:
    """Fit acceptance per drafter->verifier pair with ``speccascade.calibrate.acceptance`` and write it to ``path``;
    returns {"file", "lines"} or, when that module is absent or the traces hold no steps to fit, {"file": None,
    "message"}."""
    try:
        from .acceptance import fit_acceptance
    except ImportError as error:
        return {"file": None, "message": f"acceptance not fitted: speccascade.calibrate.acceptance is not "
                                         f"available ({error})"}
    try:
        fitted = fit_acceptance(list(calibration.traces))
    except InputError as error:
        return {"file": None, "message": f"acceptance not fitted: {error}"}
    if outputs is None:
        atomic_write(path, fitted.write)
    else:
        outputs.write(path, fitted.write)
    lines = fitted.lines() if hasattr(fitted, "lines") else []
    return {"file": str(path), "lines": list(lines)}


def write_calibration(calibration: Calibration, where: Locations, acceptance: bool = True, *,
                      force: bool = False) -> dict[str, Any]:
    """Write the profile, the acceptance file and the report; returns the report. Every name is checked before
    anything is written (with ``--out DIR`` an existing file is kept unless ``force``; under the home a previous
    calibration of the name is replaced, see :func:`locations`), each file is atomic, and a failure removes what
    was written."""
    header = (f"Chip profile '{calibration.name}' written by `speccascade calibrate` on {calibration.date_utc}.\n"
              f"Peaks are the input profile's ('{calibration.device.chip.name}'); [corrections] were fitted to "
              f"{calibration.fit.residuals.points} forward records.\n"
              f"Use: speccascade predict --hardware {_hardware_argument(calibration.name, where)}")
    replace = force or where.replaces
    paths = [where.profile, where.report] + ([where.acceptance] if acceptance else [])
    with OutputSet(paths, force=replace) as outputs:
        outputs.write(where.profile, lambda temporary: _write_checked_profile(calibration.profile, temporary, header))
        accepted = fit_and_write_acceptance(calibration, where.acceptance, outputs) if acceptance else None
        document = report(calibration, where, accepted)
        outputs.write(where.report, lambda temporary: temporary.write_text(dumps(document) + "\n", encoding="utf-8"))
    forget_loaded()  # a profile of this name may have been loaded by name before in this process
    return document


def stored_calibrations() -> list[dict[str, Any]]:
    """The calibrations kept under the user's home: name, profile, date, traces, residual rms."""
    found = []
    for path in sorted(calibrations_home().glob("*/calibration.json")):
        try:
            data = read_json(path)
        except InputError:
            continue
        if not isinstance(data, dict):
            continue
        found.append({"name": data.get("name"), "profile": data.get("profile"), "date_utc": data.get("date_utc"),
                      "traces": [t.get("path") for t in data.get("traces", [])],
                      "residual_rms": (data.get("forward_fit") or {}).get("residuals", {}).get("rms")})
    return found
