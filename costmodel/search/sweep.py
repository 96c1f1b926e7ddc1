"""Sweep a grid of configurations into one table (CSV, JSON, Parquet when pyarrow is present).

A sweep is a base :class:`PredictConfig` plus axes (name -> values). Axes split in two kinds:

- *vector* axes (alpha, alpha_tiny, k, k_tiny, gamma_*) become broadcast arrays of one ``predict.evaluate`` call;
- *structural* axes (strategy, hardware, chips, target, draft, tiny, quantization, batch, context, filter_width,
  combine, c, c_tiny) change the profiles or their placement: one ``stage_timings`` per combination.

The table is the full cartesian product (rows where an axis does not affect a strategy repeat its values), one
column per axis plus: strategy, ms_per_token, tokens_per_s (hardware mode), speedup, expected_tokens, step_ms,
bound_ms_per_token, fits, memory_gb (main memory per chip), memory_total_gb (per chip x chips).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import ValidationError

from speccascade import strategies as registry
from speccascade.errors import InputError
from speccascade.readers import validation_message
from speccascade.writers import OutputSet, output_dir

from ..config import PredictConfig
from ..predict import evaluate
from ..timings import stage_timings

VECTOR_AXES = ("alpha", "alpha_tiny", "k", "k_tiny", "gamma_tiny", "gamma_draft_given_tiny",
               "gamma_target_given_draft")
STRUCTURAL_AXES = ("strategy", "hardware", "chips", "target", "draft", "tiny", "quantization", "batch", "context",
                   "filter_width", "combine", "c", "c_tiny")
INTEGER_AXES = ("k", "k_tiny", "chips", "batch", "context", "filter_width")
TEXT_AXES = ("strategy", "hardware", "target", "draft", "tiny", "quantization", "combine")
RESULT_COLUMNS = ("ms_per_token", "tokens_per_s", "speedup", "expected_tokens", "step_ms", "bound_ms_per_token",
                  "fits", "memory_gb", "memory_total_gb")


MAX_AXIS_VALUES = 100_000       # values on one axis
MAX_ROWS = 20_000_000            # rows of one sweep (about 3 GB of columns); --max-rows lifts it


def _number(part: str, text: str) -> float:
    try:
        value = float(part)
    except ValueError:
        raise InputError(f"--grid {text!r}: {part.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"--grid {text!r}: {part.strip()!r} is not a finite number")
    return value


def parse_axis(text: str) -> tuple[str, list]:
    """``NAME=v1,v2,...`` or ``NAME=start:stop[:step]`` (stop included) -> (name, values)."""
    name, sep, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not spec:
        raise InputError(f"--grid {text!r}: expected NAME=v1,v2 or NAME=start:stop[:step]")
    if name not in VECTOR_AXES + STRUCTURAL_AXES:
        raise InputError(f"--grid: unknown axis '{name}'; known: {', '.join(VECTOR_AXES + STRUCTURAL_AXES)}")
    if name in TEXT_AXES:
        values = [part.strip() for part in spec.split(",") if part.strip()]
        if not values:
            raise InputError(f"--grid {text!r}: no values")
        if len(values) > MAX_AXIS_VALUES:
            raise InputError(f"--grid {name}: {len(values)} values, more than {MAX_AXIS_VALUES} on one axis")
        return name, values
    if ":" in spec:
        parts = [_number(part, text) for part in spec.split(":")]
        if len(parts) not in (2, 3):
            raise InputError(f"--grid {text!r}: a range is start:stop or start:stop:step")
        start, stop = parts[0], parts[1]
        step = parts[2] if len(parts) == 3 else 1.0
        if step <= 0 or stop < start:
            raise InputError(f"--grid {text!r}: need start <= stop and step > 0")
        count = math.floor((stop - start) / step + 1e-9) + 1  # checked before anything is allocated
        if count > MAX_AXIS_VALUES:
            raise InputError(f"--grid {text!r}: {count:.3g} values, more than {MAX_AXIS_VALUES:,} on one axis "
                             "(use a larger step)")
        values = list(start + step * np.arange(int(count)))
    else:
        values = [_number(part, text) for part in spec.split(",") if part.strip()]
        if len(values) > MAX_AXIS_VALUES:
            raise InputError(f"--grid {name}: {len(values)} values, more than {MAX_AXIS_VALUES:,} on one axis")
    if name in INTEGER_AXES:
        if any(value != round(value) for value in values):
            raise InputError(f"--grid {name}: values must be integers")
        values = [int(round(value)) for value in values]
    else:
        values = [round(float(value), 12) for value in values]
    if not values:
        raise InputError(f"--grid {text!r}: no values")
    return name, values


@dataclass(frozen=True)
class SweepSpec:
    base: PredictConfig
    axes: dict[str, list] = field(default_factory=dict)
    strategies: tuple[str, ...] = ()

    def size(self) -> int:
        return math.prod(len(values) for values in self.axes.values()) * max(1, len(self.strategies))

    def check_size(self, max_rows: int = MAX_ROWS) -> int:
        """The number of rows, refused before anything is computed when over ``max_rows``."""
        rows = self.size()
        if rows > max_rows:
            raise InputError(f"the sweep has {rows:,} rows, more than the limit of {max_rows:,} "
                             "(narrow the grid, or raise it with --max-rows)")
        return rows


@dataclass(frozen=True)
class SweepTable:
    """Columns of equal length (numpy arrays); ``axes`` are the swept inputs, in order."""

    columns: dict[str, np.ndarray]
    axes: tuple[str, ...]
    base: dict

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def select(self, **fixed) -> np.ndarray:
        """Boolean mask of rows whose columns equal ``fixed`` values."""
        mask = np.ones(len(self), dtype=bool)
        for name, value in fixed.items():
            column = self.columns[name]
            mask &= np.isclose(column, value) if column.dtype.kind == "f" else (column == value)
        return mask

    def reference(self, name: str):
        """The value a plot holds an axis at: the base config's value when swept, else the middle value."""
        values = np.unique(self.columns[name])
        base = self.base.get(name)
        if base is not None and base in values:
            return base
        return values[len(values) // 2]

    def write(self, directory: Path, formats: tuple[str, ...] | None = None, *,
              force: bool = False) -> dict[str, Path]:
        """Write the table as ``directory/sweep.FORMAT`` for each format: every name checked before anything is
        written (an existing file is kept unless ``force``), each file atomic, none left behind on failure."""
        writers: dict[str, Callable[[Path], None]] = {"csv": self._csv, "json": self._json, "parquet": self._parquet}
        paths = table_paths(directory, formats)
        with OutputSet(paths.values(), force=force) as outputs:
            for fmt, path in paths.items():
                outputs.write(path, writers[fmt])
        return paths

    def _arrow(self):
        import pyarrow as pa

        return pa.table({name: pa.array(column).dictionary_encode() if column.dtype.kind in "OU" else column
                         for name, column in self.columns.items()})

    def _csv(self, path: Path) -> None:
        if _has_pyarrow():
            import pyarrow.csv as pacsv

            plain = {name: (column.astype(str) if column.dtype.kind in "OU" else column)
                     for name, column in self.columns.items()}
            import pyarrow as pa

            pacsv.write_csv(pa.table(plain), path)
            return
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(zip(*(column.tolist() for column in self.columns.values())))

    def _json(self, path: Path) -> None:
        """Columnar JSON: {"axes", "base", "rows", "columns": {name: [values]}}; written column by column."""
        head = json.dumps({"axes": list(self.axes), "base": self.base, "rows": len(self)}, separators=(",", ":"))
        with path.open("w") as handle:
            handle.write(head[:-1] + ',"columns":{')
            for index, (name, column) in enumerate(self.columns.items()):
                handle.write(("," if index else "") + json.dumps(name) + ":[")
                handle.write(_json_values(column))
                handle.write("]")
            handle.write("}}")

    def _parquet(self, path: Path) -> None:
        import pyarrow.parquet as pq

        pq.write_table(self._arrow(), path)


TABLE_FORMATS = ("csv", "json", "parquet")


def table_formats(formats: tuple[str, ...] | None) -> tuple[str, ...]:
    """The formats to write: given ones checked (known; Parquet needs pyarrow, the ``tables`` extra), or by default
    CSV, JSON and, where pyarrow is installed, Parquet."""
    if formats is None:
        return ("csv", "json", "parquet") if _has_pyarrow() else ("csv", "json")
    formats = tuple(dict.fromkeys(formats))
    unknown = [fmt for fmt in formats if fmt not in TABLE_FORMATS]
    if unknown:
        raise InputError(f"unknown table format '{unknown[0]}'; known: {', '.join(TABLE_FORMATS)}")
    if not formats:
        raise InputError("--formats: no table format given; known: " + ", ".join(TABLE_FORMATS))
    if "parquet" in formats and not _has_pyarrow():
        raise InputError('Parquet tables need the optional package pyarrow: pip install "speccascade[tables]" '
                         "(or --formats csv,json)")
    return formats


def table_paths(directory: Path, formats: tuple[str, ...] | None = None) -> dict[str, Path]:
    """format -> ``directory/sweep.FORMAT`` for :func:`table_formats` (the folder checked, and made if missing)."""
    formats = table_formats(formats)
    directory = output_dir(directory)
    return {fmt: directory / f"sweep.{fmt}" for fmt in formats}


def _json_values(column: np.ndarray) -> str:
    """Comma-separated JSON values of a column (non-finite floats become null: JSON has no NaN or inf). Float
    columns are formatted by pyarrow's C++ cast when available (about twice as fast as json.dumps)."""
    if column.dtype.kind == "b":
        return ",".join("true" if value else "false" for value in column.tolist())
    if column.dtype.kind != "f":
        return json.dumps(column.tolist(), separators=(",", ":"))[1:-1]
    finite = np.where(np.isfinite(column), column, np.nan)
    if _has_pyarrow():
        import pyarrow as pa
        import pyarrow.compute as pc

        text = pc.cast(pa.array(finite, from_pandas=True), pa.string()).fill_null("null")
        return ",".join(text.to_pylist())
    return json.dumps(np.where(np.isfinite(column), column, None).tolist(), separators=(",", ":"))[1:-1]


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _structural_config(base: PredictConfig, values: dict) -> PredictConfig:
    update = {name: value for name, value in values.items() if name not in ("quantization",)}
    if "quantization" in values:
        draft = update.get("draft", base.draft)
        if draft is None:
            raise InputError("the quantization axis applies to the draft: give --draft")
        update["draft"] = f"{draft.split(':')[0]}:{values['quantization']}"
    try:
        return PredictConfig.model_validate(base.model_dump() | update)
    except ValidationError as error:
        raise InputError(f"sweep: {validation_message(error)}") from None


def _strategies(spec: SweepSpec, config: PredictConfig) -> tuple[str, ...]:
    names = spec.axes["strategy"] if "strategy" in spec.axes else (spec.strategies or (config.resolved_strategy(),))
    return tuple(dict.fromkeys(registry.canonical(name) for name in names))


def _validate_vector_axes(spec: SweepSpec) -> None:
    """Each vector axis's extreme values must be valid config values (alpha in [0, 1], K >= 1, ...)."""
    for name in (name for name in spec.axes if name in VECTOR_AXES):
        for value in (min(spec.axes[name]), max(spec.axes[name])):
            try:
                PredictConfig.model_validate(spec.base.model_dump() | {name: value})
            except ValidationError as error:
                first = error.errors()[0]
                raise InputError(f"--grid {name}: {first['msg']} (got {value})") from None


def run_sweep(spec: SweepSpec, progress: Callable[[int], None] | None = None, *,
              max_rows: int = MAX_ROWS) -> SweepTable:
    """Evaluate every configuration of ``spec``; ``progress(rows_done)`` is called after each combination. The
    row count is checked against ``max_rows`` before anything is allocated."""
    spec.check_size(max_rows)
    _validate_vector_axes(spec)
    structural = [name for name in spec.axes if name in STRUCTURAL_AXES and name != "strategy"]
    vector = [name for name in spec.axes if name in VECTOR_AXES]
    grids = np.meshgrid(*(np.asarray(spec.axes[name], dtype=float) for name in vector), indexing="ij", sparse=True)
    vector_arrays = dict(zip(vector, grids))
    shape = tuple(len(spec.axes[name]) for name in vector)
    cells = math.prod(shape)
    pieces: dict[str, list[np.ndarray]] = {}
    for combination in itertools.product(*(spec.axes[name] for name in structural)):
        values = dict(zip(structural, combination))
        config = _structural_config(spec.base, values)
        for strategy in _strategies(spec, config):
            columns = _evaluate_block(strategy, config, vector_arrays, shape, values, vector)
            for name, column in columns.items():
                pieces.setdefault(name, []).append(column)
            if progress is not None:
                progress(cells)
    columns = {name: np.concatenate(parts) for name, parts in pieces.items()}
    axes = tuple(dict.fromkeys(["strategy", *structural, *vector]))
    return SweepTable(columns, axes, spec.base.model_dump(mode="json", exclude={"heads_accuracy"}))


def _evaluate_block(strategy: str, config: PredictConfig, vector_arrays: dict, shape: tuple, values: dict,
                    vector: list[str]) -> dict[str, np.ndarray]:
    k_values = vector_arrays.get("k", np.asarray(float(config.k)))
    k_tiny_values = vector_arrays.get("k_tiny", np.asarray(float(config.k_tiny)))
    verify = int(registry.get(strategy).step_shape(
        {"k": int(np.max(k_values)), "k_tiny": int(np.max(k_tiny_values))}).verify_tokens())
    timings = stage_timings(config, verify_tokens=verify)
    try:
        result = evaluate(strategy, config, timings, **vector_arrays)
    except InputError as error:
        raise InputError(f"sweep ({strategy}): {error}") from None
    cells = math.prod(shape)
    flat = lambda array: np.broadcast_to(np.asarray(array, dtype=float), shape).reshape(cells)  # noqa: E731
    ms = flat(result["ms_per_token"])
    placement = timings.placement
    main_memory = (placement.bytes_per_chip[timings.chip.memory[-1].name] / 1e9) if placement else float("nan")
    columns: dict[str, np.ndarray] = {"strategy": np.full(cells, strategy, dtype=object)}
    for name, value in values.items():
        columns[name] = np.full(cells, value, dtype=object if name in TEXT_AXES else type(value))
    for name in vector:
        columns[name] = flat(vector_arrays[name])
        if name in INTEGER_AXES:
            columns[name] = columns[name].astype(np.int64)
    columns |= {"ms_per_token": ms, "tokens_per_s": 1e3 / ms if not timings.abstract else np.full(cells, np.nan),
                "speedup": flat(result["speedup"]), "expected_tokens": flat(result["expected_tokens"]),
                "step_ms": flat(result["step_ms"]), "bound_ms_per_token": flat(result["bound_ms"]),
                "fits": np.full(cells, placement.fits if placement else True),
                "memory_gb": np.full(cells, main_memory), "memory_total_gb": np.full(cells, main_memory * config.chips)}
    return columns
