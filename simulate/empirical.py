"""Empirical acceptance: replay what a real drafter/verifier pair did.

Two kinds of recordings, each a list of sequences in text order:

- ``outcomes``: the verifier's accept (1) / reject (0) decisions on the draft tokens it judged, step after step
  (a step with K = 4 that accepted two tokens contributes 1, 1, 0; a fully accepted step 1, 1, 1, 1). Replayed by
  :class:`EmpiricalOutcomes`: each lane walks the concatenated (circular) record from a random offset and a step
  with K drafts takes the run of 1s ahead of it, capped at K, then consumes the judged tokens. Bursts, position
  effects and their correlation come with the data; only the K differs from the recording.
- ``betas``: per-token acceptance probabilities beta = sum_x min(p(x), q(x)) (Leviathan et al. 2023). Replayed by
  :class:`EmpiricalBetas`, either as a stream (neighbouring tokens keep their betas' correlation) or resampled
  i.i.d.; each token is then accepted with probability beta, and beta is the confidence a policy sees.

Files: JSON (an object ``{"outcomes": [[...], ...]}`` or ``{"betas": [[...], ...]}``, a flat list of numbers, or a
list of lists) or JSONL (one such value per line). A bare list holding only 0/1 integers or booleans is outcomes;
any other numbers are betas. A runtime trace (JSON Lines, read with :func:`speccascade.traces.read_trace`: every
version it reads, validated record by record) gives outcomes: each step's ``pairs[PAIR]`` accept/reject sequence
("AAR", rounds of an inner pair separated by "|"), PAIR = "draft->target" by default, of every strategy or of one
(a registry name or alias: ``cascade`` selects ``vertical``); the steps of one (strategy, knobs, mode, repeat) run
form one sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from speccascade.errors import InputError
from speccascade.readers import MAX_DEPTH, check_nesting, loads_strict, read_text
from speccascade.strategies import canonical

from .policies import is_fixed, leading_true
from .processes import Draw, apply_limits, count_dtype

RUN_CAP = 65535
_OUTCOME_KEYS = ("outcomes", "accepted", "accept_mask", "accepts")
_BETA_KEYS = ("betas", "beta", "acceptance_probabilities")


@dataclass(frozen=True)
class EmpiricalData:
    kind: Literal["outcomes", "betas"]
    sequences: tuple[np.ndarray, ...]
    source: str = ""

    @property
    def tokens(self) -> int:
        return int(sum(len(sequence) for sequence in self.sequences))


def _classify(value: Any, where: str) -> tuple[str | None, list]:
    """-> (kind or None if to be inferred, list of sequences)."""
    if isinstance(value, dict):
        for kind, keys in (("outcomes", _OUTCOME_KEYS), ("betas", _BETA_KEYS)):
            for key in keys:
                if key in value:
                    return kind, _as_sequences(value[key], where)
        raise InputError(f"{where}: expected a key 'outcomes' (accept/reject sequences) or 'betas' "
                         f"(per-token acceptance probabilities), got keys {sorted(value)[:6]}")
    if isinstance(value, list):
        return None, _as_sequences(value, where)
    raise InputError(f"{where}: expected a list or an object with 'outcomes' or 'betas', got {type(value).__name__}")


def _as_sequences(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list of numbers or a list of lists, got {type(value).__name__}")
    if value and all(isinstance(item, list) for item in value):
        return value
    if any(isinstance(item, (list, dict)) for item in value):
        raise InputError(f"{where}: mixes numbers and lists; give one sequence or a list of sequences")
    return [value]


def _numbers(sequence: list, where: str) -> list:
    for item in sequence:
        if isinstance(item, bool) or (isinstance(item, (int, float)) and np.isfinite(item)):
            continue
        raise InputError(f"{where}: non-numeric value {item!r} in a sequence")
    return sequence


def _infer(sequences: list) -> str:
    flat = [item for sequence in sequences for item in sequence]
    integral = all(isinstance(item, bool) or (isinstance(item, int) and item in (0, 1)) for item in flat)
    return "outcomes" if integral else "betas"


def parse_empirical(value: Any, source: str = "empirical data") -> EmpiricalData:
    """Validate already-parsed JSON (one value, or a list of JSONL values) into :class:`EmpiricalData`."""
    kind, sequences = _classify(value, source)
    sequences = [_numbers(sequence, source) for sequence in sequences]
    return _build(kind or _infer(sequences), sequences, source)


def _build(kind: str, sequences: list, source: str) -> EmpiricalData:
    arrays = [np.asarray(sequence, dtype=float) for sequence in sequences if len(sequence)]
    if not arrays:
        raise InputError(f"{source}: no recorded tokens (empty sequences)")
    flat = np.concatenate(arrays)
    if kind == "outcomes":
        if not np.all((flat == 0) | (flat == 1)):
            raise InputError(f"{source}: accept/reject outcomes must be 0/1 or true/false")
        arrays = [array.astype(np.uint8) for array in arrays]
    elif np.any((flat < 0) | (flat > 1)):
        raise InputError(f"{source}: acceptance probabilities (betas) must lie in [0, 1], "
                         f"got values in [{flat.min():.4g}, {flat.max():.4g}]")
    return EmpiricalData(kind, tuple(arrays), source)


def _trace_outcomes(path: Path, pair: str, strategy: str | None) -> EmpiricalData:
    """Accept/reject sequences of ``pair`` from a runtime trace's steps (of ``strategy`` if given, a registry name
    or alias), one sequence per run."""
    from speccascade.traces import read_trace  # imported when used: ``python -m speccascade.traces`` stays clean

    trace = read_trace(path)
    steps = trace.steps if strategy is None else trace.steps_of(strategy)
    runs: dict[tuple, list[int]] = {}
    seen: set[str] = set()
    for step in steps:
        seen.update(step.pairs)
        if pair in step.pairs:
            key = (step.strategy, tuple(sorted(step.knobs.given().items())), step.mode, step.repeat)
            runs.setdefault(key, []).extend(step.pairs[pair].outcomes())
    if not any(runs.values()):
        found = f"pairs found: {', '.join(sorted(seen))}" if seen else "no step records with pairs"
        which = ""
        if strategy is not None:
            name = canonical(strategy)
            which = f" of strategy {strategy!r}{f' (= {name})' if name != strategy else ''}"
            found += f"; strategies in the trace: {', '.join(trace.strategies()) or 'none'}"
        raise InputError(f"{path}: runtime trace has no accept/reject sequences for pair {pair!r}{which} ({found})")
    label = f"{path} [{pair}{', ' + strategy if strategy else ''}]"
    return _build("outcomes", [sequence for sequence in runs.values() if sequence], label)


def load_empirical(path: str | Path, pair: str = "draft->target", strategy: str | None = None) -> EmpiricalData:
    """Read a JSON, JSONL or runtime-trace recording (``pair`` selects a trace's drafter->verifier pair,
    ``strategy`` its steps of one strategy, by registry name or alias); any problem is one :class:`InputError`
    line naming the file (and line). The file goes through the input layer (:mod:`speccascade.readers`: a regular
    file within the trace size limit, UTF-8, strict JSON with bounded nesting and integers); a file whose first
    record is a trace record (``kind`` header/step/forward/compile) is read as a runtime trace by
    :func:`speccascade.traces.read_trace`, with that reader's checks and messages."""
    from speccascade.traces import RECORD_KINDS

    path = Path(path)
    text = read_text(path, "trace")
    if not text.strip():
        raise InputError(f"{path}: empty file (no recorded tokens)")
    first = next(line for line in text.splitlines() if line.strip())
    if _is_trace_record(_try_json(first), RECORD_KINDS):
        return _trace_outcomes(path, pair, strategy)
    try:
        whole = loads_strict(text)
    except json.JSONDecodeError:
        pass                               # not one JSON document: JSON Lines
    except RecursionError:
        raise InputError(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:            # an integer too long, NaN/Infinity
        raise InputError(f"{path}: not valid JSON ({error})") from None
    else:
        return parse_empirical(check_nesting(whole, str(path)), str(path))
    records, lines = [], text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append((number, check_nesting(loads_strict(line), f"{path}:{number}")))
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n") and records:
                break                      # a partial last line: a recording killed mid-write keeps the rest
            raise InputError(f"{path}:{number}: not valid JSON or JSONL ({error.msg})") from None
        except RecursionError:
            raise InputError(f"{path}:{number}: nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as error:
            raise InputError(f"{path}:{number}: not valid JSON ({error})") from None
    if any(_is_trace_record(value, RECORD_KINDS) for _, value in records):
        return _trace_outcomes(path, pair, strategy)  # trace records after other lines: the trace reader says why
    kinds, sequences = set(), []
    for number, value in records:
        kind, found = _classify(value, f"{path}:{number}")
        sequences += [_numbers(sequence, f"{path}:{number}") for sequence in found]
        if kind:
            kinds.add(kind)
    if len(kinds) > 1:
        raise InputError(f"{path}: mixes 'outcomes' and 'betas' records; give one kind per file")
    return _build(kinds.pop() if kinds else _infer(sequences), sequences, str(path))


def _try_json(line: str):
    try:
        return loads_strict(line)
    except (ValueError, RecursionError):
        return None


def _is_trace_record(value: Any, kinds: tuple[str, ...]) -> bool:
    return isinstance(value, dict) and value.get("kind") in kinds


def _runs_of_ones(stream: np.ndarray) -> np.ndarray:
    """run[i] = consecutive 1s starting at i in the circular stream (capped at RUN_CAP)."""
    zeros = np.flatnonzero(stream == 0)
    if zeros.size == 0:
        return np.full(stream.size, RUN_CAP, dtype=np.uint16)
    positions = np.arange(stream.size)
    following = np.concatenate([zeros, zeros[:1] + stream.size])
    next_zero = following[np.searchsorted(zeros, positions)]
    return np.minimum(next_zero - positions, RUN_CAP).astype(np.uint16)


@dataclass(frozen=True, eq=False)
class EmpiricalOutcomes:
    """Replay of recorded accept/reject decisions (see module doc); the state is each lane's offset."""

    data: EmpiricalData
    name: str = field(default="empirical-outcomes", init=False)

    def __post_init__(self) -> None:
        if self.data.kind != "outcomes":
            raise InputError("EmpiricalOutcomes needs accept/reject outcomes, got betas (use EmpiricalBetas)")
        stream = np.concatenate(self.data.sequences)
        object.__setattr__(self, "_stream", stream)
        object.__setattr__(self, "_runs", _runs_of_ones(stream))

    @property
    def mean_acceptance(self) -> float:
        return float(self._stream.mean())

    def initial_state(self, rng, lanes, k):
        return rng.integers(0, self._stream.size, size=lanes)

    def confidence(self, k: int) -> np.ndarray:
        raise InputError("recorded accept/reject outcomes carry no per-token confidence: a threshold policy needs "
                         "betas, or an iid/positional/markov process")

    def sample(self, rng, k, rows, lanes, state=None, *, proposed=None, cut=None, policy=None) -> Draw:
        if not is_fixed(policy):
            self.confidence(k)
        position = self.initial_state(rng, lanes, k) if state is None else state
        dtype = count_dtype(k)
        accepted = np.empty((rows, lanes), dtype=dtype)
        size = self._stream.size
        for row in range(rows):
            limit = k if proposed is None else (proposed[row] if np.ndim(proposed) == 2 else proposed)
            run = np.minimum(self._runs[position], np.asarray(limit)).astype(dtype)
            if cut is not None:
                np.minimum(run, cut[row].astype(dtype, copy=False), out=run)
            accepted[row] = run
            judged = np.minimum(run.astype(np.int64) + 1, limit)
            position = (position + judged) % size
        return Draw(accepted, proposed, position)

    def describe(self) -> dict[str, Any]:
        return {"process": self.name, "source": self.data.source, "recorded_tokens": self.data.tokens,
                "sequences": len(self.data.sequences), "mean_acceptance": self.mean_acceptance}


@dataclass(frozen=True, eq=False)
class EmpiricalBetas:
    """Tokens accepted with recorded probabilities beta; ``resample='stream'`` walks the record (keeping
    neighbouring betas together), ``'iid'`` draws each token's beta independently from the record."""

    data: EmpiricalData
    resample: Literal["stream", "iid"] = "stream"
    name: str = field(default="empirical-betas", init=False)

    def __post_init__(self) -> None:
        if self.data.kind != "betas":
            raise InputError("EmpiricalBetas needs per-token betas, got accept/reject outcomes (use EmpiricalOutcomes)")
        if self.resample not in ("stream", "iid"):
            raise InputError(f"resample must be 'stream' or 'iid', got {self.resample!r}")
        object.__setattr__(self, "_betas", np.concatenate(self.data.sequences).astype(np.float32))

    @property
    def mean_acceptance(self) -> float:
        return float(self._betas.mean(dtype=np.float64))

    def initial_state(self, rng, lanes, k):
        return None if self.resample == "iid" else rng.integers(0, self._betas.size, size=lanes)

    def confidence(self, k: int) -> np.ndarray:
        return np.full(k, self.mean_acceptance)

    def _step(self, rng, betas: np.ndarray, limit, cut, policy, dtype):
        """betas (..., k) -> accepted run and proposal for one block of steps."""
        accepted = leading_true(rng.random(betas.shape, dtype=np.float32) < betas)
        if not is_fixed(policy):
            limit = np.asarray(policy.propose(betas))
        return apply_limits(accepted.astype(dtype), limit, cut), limit

    def sample(self, rng, k, rows, lanes, state=None, *, proposed=None, cut=None, policy=None) -> Draw:
        if not is_fixed(policy) and proposed is not None:
            raise InputError("a draft-length policy cannot be combined with a cascade's variable draft count")
        dtype, size = count_dtype(k), self._betas.size
        if self.resample == "iid":
            betas = self._betas[rng.integers(0, size, size=(rows, lanes, k))]
            accepted, used = self._step(rng, betas, proposed, cut, policy, dtype)
            return Draw(accepted, used, None)
        position = self.initial_state(rng, lanes, k) if state is None else state
        accepted = np.empty((rows, lanes), dtype=dtype)
        used = None if is_fixed(policy) else np.empty((rows, lanes), dtype=np.int64)
        offsets = np.arange(k)
        for row in range(rows):
            limit = k if proposed is None else (proposed[row] if np.ndim(proposed) == 2 else proposed)
            betas = self._betas[(position[:, None] + offsets) % size]
            run, limit = self._step(rng, betas, limit, None if cut is None else cut[row], policy, dtype)
            accepted[row] = run
            if used is not None:
                used[row] = limit
            # judged tokens; with no proposal the text still moves one token on
            position = (position + np.maximum(np.minimum(run.astype(np.int64) + 1, limit), 1)) % size
        return Draw(accepted, used if used is not None else proposed, position)

    def describe(self) -> dict[str, Any]:
        return {"process": self.name, "resample": self.resample, "source": self.data.source,
                "recorded_tokens": self.data.tokens, "mean_acceptance": self.mean_acceptance}


def empirical_process(data: EmpiricalData, resample: str = "stream"):
    """The process matching a recording's kind."""
    return EmpiricalOutcomes(data) if data.kind == "outcomes" else EmpiricalBetas(data, resample)
