"""Checks the runtime commands run before anything expensive (jax import, a trio load, a 20-minute training).

Each check raises :class:`speccascade.errors.InputError` with one line naming the flag and its bound
(docs/limits.md):

* :func:`check_count` -- an integer flag within [low, high];
* :func:`check_sampling` -- ``--temperature`` finite and > 0, ``--top-k`` in [0, MAX_FILTER_WIDTH], ``--top-p``
  finite in (0, 1] (the same rules as ``runtime.decoding.SamplingConfig``, checked without importing jax);
* :func:`prepare_outputs` -- the output folder and every file a command will write there, checked up front under
  the output policy of :mod:`speccascade.writers` (no existing file replaced unless ``--force``), so a refusal
  comes before the models load, not after the measurement;
* :func:`check_trio_output` -- ``runtime train`` does not replace an existing trio unless ``--force``.

Jax-free: the CLI imports this before the runtime.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from .errors import InputError
from .limits import MAX_CONTEXT, MAX_FILTER_WIDTH

MAX_REPEATS = 100_000          # timed repeats, staged repeats, overhead steps, microbench chain length
MAX_NEW_TOKENS = MAX_CONTEXT    # tokens one generation decodes (the context bounds them again once models load)


def check_count(flag: str, value: int, low: int, high: int) -> int:
    """``value`` for ``flag`` within [low, high], else one line naming the bound."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{flag} must be an integer, got {value!r}")
    if not low <= value <= high:
        shown = f"{value:,}" if abs(value) < 10 ** 30 else "a number beyond 10^30"
        raise InputError(f"{flag} must be in [{low}, {high:,}], got {shown}")
    return value


def check_sampling(greedy: bool, temperature: float, top_k: int, top_p: float) -> None:
    """The sampling flags (checked even with --greedy: a NaN there is a mistake, not a setting to ignore)."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise InputError(f"--temperature must be a finite number > 0 (use --greedy for temperature 0), "
                         f"got {temperature}")
    check_count("--top-k", top_k, 0, MAX_FILTER_WIDTH)
    if not (isinstance(top_p, (int, float)) and math.isfinite(top_p) and 0 < top_p <= 1):
        raise InputError(f"--top-p must be in (0, 1] (1 = off), got {top_p}")


def prepare_outputs(folder: Path | str, names: Iterable[str], *, force: bool) -> Path:
    """Check that ``folder`` can hold output and that none of ``names`` in it exists (unless ``force``); the folder
    is not created yet (a command refused later leaves nothing behind). Returns the folder as a Path."""
    from .writers import check_new_file, output_dir

    folder = output_dir(folder, create=False)
    for name in names:
        target = folder / name
        if target.exists() and not force:
            raise InputError(f"{target}: already exists; refusing to overwrite it (use --force, or another --out)")
        if target.exists():
            check_new_file(target, force=True)  # a folder or special file there is refused even with --force
    return folder


def check_trio_output(folder: Path | str, *, force: bool) -> Path:
    """``runtime train --output``: a usable folder, and not one that already holds a trio unless ``force``."""
    from .writers import output_dir

    folder = output_dir(folder, create=False)
    if (folder / "manifest.json").exists() and not force:
        raise InputError(f"{folder}: already holds a trained trio (manifest.json); retraining would replace it "
                         "(use --force, or another --output)")
    return folder
