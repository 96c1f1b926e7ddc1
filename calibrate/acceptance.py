"""Acceptance per drafter->verifier pair from runtime traces: maximum likelihood, per-position and Markov
refinements when their likelihood-ratio tests say so, block-bootstrap intervals; the acceptance file.

:func:`fit_acceptance` reads traces only through :mod:`speccascade.traces`. For every step record it takes each
pair's accept/reject ``sequence`` (rounds split at ``|``) and maps the pair to the registry's acceptance parameter
(:mod:`speccascade.strategies`: ``draft->target`` -> ``alpha``, ``tiny->draft`` -> ``alpha_tiny``, the filtered
cascade's ``draft->target`` -> ``gamma_total``). Steps are grouped into *runs*: consecutive steps (``step`` = the
previous one + 1) of one strategy, knob setting, mode and repeat in one trace, the unit across which the Markov
chain carries its state. Then it fits

- one entry per (strategy, pair, models, sampling): ``pairs`` in the file, and
- one pooled entry per (parameter, models, sampling) over the strategies that estimate that parameter (a lossless
  cascade delivers exact Draft samples, so the Target's acceptance of them is the same alpha whatever made them):
  ``parameters`` in the file, with a likelihood-ratio test that the pooled strategies share alpha.

The maths (MLE alpha = accepted / (accepted + rejections), per-position alphas, the lag-1 chain, the tests and the
bootstrap) is in :mod:`.acceptance_mle`. Nothing is dropped silently: every record or group not fitted is listed
in ``skipped`` with its reason (no pair, a parameter that is not one acceptance, an inconsistent sequence, a
replay of an earlier run, too few steps, a partial last line).
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from speccascade import strategies as registry
from speccascade.acceptance_file import (
    PARAMETERS, AcceptanceEntry, AcceptanceFile, MarkovFit, PositionalFit, Provenance, Skipped, TraceSource,
)
from speccascade.errors import InputError
from speccascade.readers import read_bytes
from speccascade.traces import StepRecord, Trace, read_traces

from . import acceptance_mle as mle

__all__ = ["AcceptanceFit", "fit_acceptance"]

ROUND = re.compile(r"A*R?")
METHOD = ("MLE of the truncated geometric: alpha = accepted / (accepted + rejections) over judged tokens; "
          "per-position alphas and the lag-1 Markov chain (over judged tokens, carried across rounds and steps) "
          "kept when their likelihood-ratio test and its controlled test are below the significance level; "
          "intervals: block-bootstrap percentiles over steps")


@dataclass
class _Run:
    """The rounds of one pair over consecutive steps of one generation."""

    trace: int
    strategy: str
    pair: str
    parameter: str
    models: tuple[tuple[str, str | None], ...]
    sampling: str | None
    repeat: int
    prompt: tuple  # which prompt the run decoded: ("prompt", index) from the header, else ("context", first context)
    knobs: tuple
    steps: list[list[str]] = field(default_factory=list)
    ids: list[tuple] = field(default_factory=list)  # (strategy, knobs, mode, repeat, step) of each step
    last_step: int = -1

    def group(self) -> tuple:
        return (self.strategy, self.pair, self.models, self.sampling)

    def pooled(self) -> tuple:
        return (self.parameter, self.pair, self.models, self.sampling)


class _Skips:
    """Skipped records grouped by (file, strategy, pair, reason), counted, with the first one as example."""

    def __init__(self) -> None:
        self.table: dict[tuple, list] = {}

    def add(self, file: str, strategy: str | None, pair: str | None, reason: str, example: str, records: int = 1):
        entry = self.table.setdefault((file, strategy, pair, reason), [0, example])
        entry[0] += records

    def records(self) -> list[Skipped]:
        return [Skipped(file=file, strategy=strategy, pair=pair, reason=reason, records=count, example=example)
                for (file, strategy, pair, reason), (count, example) in self.table.items()]


@dataclass(frozen=True)
class AcceptanceFit:
    """The fit: the acceptance file's document, plus helpers to show and write it."""

    document: AcceptanceFile

    @property
    def parameters(self) -> list[AcceptanceEntry]:
        return self.document.parameters

    @property
    def pairs(self) -> list[AcceptanceEntry]:
        return self.document.pairs

    @property
    def skipped(self) -> list[Skipped]:
        return self.document.skipped

    def entry(self, parameter: str) -> AcceptanceEntry | None:
        return self.document.entry(parameter)

    def write(self, path: str | Path) -> Path:
        """Write the acceptance file (JSON) that predict / simulate / optimize / sweep take with --acceptance."""
        return self.document.write(path)

    def lines(self) -> list[str]:
        """Human-readable summary: one line per pooled parameter, then what was skipped."""
        out = [entry.describe() for entry in self.parameters]
        out += [f"skipped {item.records} record(s) of {item.file}"
                + (f" ({item.strategy}, {item.pair})" if item.pair else f" ({item.strategy})" if item.strategy else "")
                + f": {item.reason}" for item in self.skipped]
        return out


def _rounds(step: StepRecord, name: str) -> tuple[list[str] | None, str]:
    """(rounds of the pair's sequence, '') or (None, why the record cannot be used)."""
    pair = step.pairs[name]
    if pair.tested and not pair.sequence:
        return None, "no accept/reject sequence recorded (counts only)"
    rounds = [chars for chars in pair.sequence.split("|") if chars] if pair.sequence else []
    judged = sum(len(chars) for chars in rounds)
    if judged != pair.tested:
        return None, f"sequence holds {judged} judged tokens, tested says {pair.tested}"
    if sum(chars.count("A") for chars in rounds) != pair.accepted:
        return None, "sequence's accepted tokens differ from accepted"
    if not all(ROUND.fullmatch(chars) for chars in rounds):
        return None, "an A after an R in one round (acceptance is a prefix)"
    return rounds, ""


def _sha256(path: Path) -> str | None:
    """The trace file's digest, read through the input layer (a regular file within the trace size limit); None
    when it is gone or unreadable since it was parsed (the provenance then says so)."""
    try:
        return hashlib.sha256(read_bytes(path, "trace")).hexdigest()
    except (OSError, InputError):
        return None


def _load(traces: Sequence[Trace | str | Path]) -> list[Trace]:
    if not traces:
        raise InputError("no traces given to fit acceptance on")
    paths = [item for item in traces if not isinstance(item, Trace)]
    read = iter(read_traces(paths)) if paths else iter(())
    return [item if isinstance(item, Trace) else next(read) for item in traces]


def _collect(traces: list[Trace], skips: _Skips) -> list[_Run]:
    """Runs of every pair of every trace, in file order (records that cannot be used go to ``skips``)."""
    runs: list[_Run] = []
    for index, trace in enumerate(traces):
        file = str(trace.path)
        if trace.dropped_partial_line is not None:
            skips.add(file, None, None, "partial last line (a killed run) dropped by the trace reader",
                      f"line {trace.dropped_partial_line}")
        names = {model.role: model.name for model in trace.header.models}
        sampling = trace.header.config.get("sampling")
        sampling = None if sampling is None else str(sampling)
        open_runs: dict[tuple, _Run] = {}
        for step in trace.steps:
            spec = registry.get(step.strategy)
            where = f"{step.strategy} {step.mode} repeat {step.repeat} step {step.step}"
            if not spec.pairs:
                skips.add(file, step.strategy, None, f"{step.strategy} has no drafter->verifier pair", where)
                continue
            knobs = tuple(sorted(step.knobs.given().items()))
            for name in step.pairs:
                if name not in {pair.name for pair in spec.pairs}:
                    skips.add(file, step.strategy, name, f"not a pair of {step.strategy} in the registry", where)
            for pair in spec.pairs:
                key = (step.strategy, knobs, step.mode, step.repeat, pair.name)
                if pair.parameter not in PARAMETERS:
                    if pair.name in step.pairs:
                        skips.add(file, step.strategy, pair.name, f"parameter '{pair.parameter}' is not one "
                                  "acceptance probability (not fitted here)", where)
                    continue
                if pair.name not in step.pairs:
                    skips.add(file, step.strategy, pair.name, "pair missing from the step record", where)
                    open_runs.pop(key, None)
                    continue
                rounds, why = _rounds(step, pair.name)
                if rounds is None:
                    skips.add(file, step.strategy, pair.name, why, where)
                    open_runs.pop(key, None)  # the chain's state is unknown past an unusable step
                    continue
                run = open_runs.get(key)
                if run is None or step.step != run.last_step + 1:
                    models = ((pair.drafter, names.get(pair.drafter)), (pair.verifier, names.get(pair.verifier)))
                    run = _Run(index, step.strategy, pair.name, pair.parameter, models, sampling, step.repeat,
                               _prompt(trace, step), knobs)
                    open_runs[key] = run
                    runs.append(run)
                run.steps.append(rounds)
                run.ids.append((step.strategy, knobs, step.mode, step.repeat, step.step))
                run.last_step = step.step
    return _without_replays(traces, runs, skips)


def _prompt(trace: Trace, step: StepRecord) -> tuple:
    """The prompt a run decoded, by ``runtime bench``'s convention when the header lists the prompts' lengths
    (``prompt_tokens``): a fused repeat r decodes prompt r mod n, staged runs the longest; otherwise the step's
    context (its prompt length) stands in for it."""
    lengths = trace.header.config.get("prompt_tokens")
    if isinstance(lengths, list) and lengths and all(isinstance(n, int) for n in lengths):
        index = lengths.index(max(lengths)) if step.mode == "staged" else step.repeat % len(lengths)
        return ("prompt", index)
    return ("context", step.context)


def _without_replays(traces: list[Trace], runs: list[_Run], skips: _Skips) -> list[_Run]:
    """Drop runs that replay an earlier run of the same trace: same strategy, knobs, pair, prompt (:func:`_prompt`)
    and sequences, under greedy decoding or with the same repeat (the same seed), e.g. a staged repeat of a fused one.
    Counting a deterministic replay again would shrink every interval without new evidence."""
    seen: dict[tuple, _Run] = {}
    kept = []
    for run in runs:
        sequences = tuple("|".join(rounds) for rounds in run.steps)
        base = (run.trace, run.strategy, run.knobs, run.pair, run.prompt, sequences)
        key = base + (None if run.sampling == "greedy" else run.repeat,)
        earlier = seen.get(key)
        if earlier is not None and any(sequences):
            skips.add(str(traces[run.trace].path), run.strategy, run.pair,
                      "replays an earlier run (same prompt and accept/reject sequences; greedy or same seed)",
                      f"repeat {run.repeat} = repeat {earlier.repeat}", len(run.steps))
            continue
        seen[key] = run
        kept.append(run)
    return kept


def _size(runs: list[_Run]) -> tuple[int, int]:
    """(steps, judged tokens) of runs."""
    return (sum(len(run.steps) for run in runs),
            sum(len(chars) for run in runs for rounds in run.steps for chars in rounds))


def _by(runs: list[_Run], key) -> dict[tuple, list[_Run]]:
    groups: dict[tuple, list[_Run]] = defaultdict(list)
    for run in runs:
        groups[key(run)].append(run)
    return groups


@dataclass(frozen=True)
class Settings:
    bootstrap: int
    seed: int
    level: float
    significance: float
    min_steps: int
    min_position_trials: int
    min_transitions: int


def _entry(runs: list[_Run], settings: Settings, rng: np.random.Generator, pooled: bool) -> AcceptanceEntry:
    """Fit one group of runs (module docstring)."""
    positions = max((len(chars) for run in runs for rounds in run.steps for chars in rounds), default=1)
    counts = [mle.run_counts(run.steps, positions) for run in runs]
    totals = sum(rows.sum(axis=0) for rows in counts)
    memory = mle.correlation_steps(totals, sum(len(rows) for rows in counts))
    blocks = np.concatenate([mle.block_sums(rows, mle.block_length(len(rows), memory)) for rows in counts])
    accepted, judged = int(totals[mle.A]), int(totals[mle.A] + totals[mle.R])
    tests = mle.lrt_tests(totals, positions, settings.min_position_trials, settings.min_transitions)
    samples = mle.bootstrap_sums(blocks, settings.bootstrap, rng)
    notes = []
    if 0 < accepted < judged:
        ci, method = mle.percentile_interval(mle.alpha_of(samples), settings.level), (
            f"block bootstrap percentile ({settings.bootstrap} resamples)")
    else:
        ci, method = mle.exact_interval(accepted, judged, settings.level), (
            f"Clopper-Pearson (no {'rejection' if accepted == judged else 'acceptance'}: the bootstrap has no spread)")
    positional = None
    if tests.positions >= 2:
        used = tests.positions
        per_position = mle.positional_of(samples, used)
        positional = PositionalFit(
            alphas=[float(value) for value in mle.positional_of(totals, used)],
            ci=[mle.percentile_interval(per_position[:, i], settings.level) or (0.0, 1.0) for i in range(used)],
            trials=[int(totals[mle.trials_col(i)]) for i in range(used)], p_value=tests.positional,
            p_value_given_state=tests.positional_given_state,
            significant=mle.retained(tests.positional, tests.positional_given_state, settings.significance))
    else:
        notes.append(f"per-position alphas not estimable: fewer than 2 positions with {settings.min_position_trials}"
                     " trials")
    markov = None
    if tests.markov is not None:
        chain, sampled = mle.markov_of(totals), mle.markov_of(samples)
        markov = MarkovFit(
            alpha=float(chain["alpha"]), rho=float(chain["rho"]), p11=float(chain["p11"]), p01=float(chain["p01"]),
            rho_ci=mle.percentile_interval(sampled["rho"], settings.level),
            transitions={name: int(totals[column]) for name, column in
                         (("AA", mle.AA), ("AR", mle.AR), ("RA", mle.RA), ("RR", mle.RR))},
            p_value=tests.markov, p_value_given_position=tests.markov_given_position,
            significant=mle.retained(tests.markov, tests.markov_given_position, settings.significance))
    else:
        notes.append(f"Markov correlation not testable: fewer than {settings.min_transitions} transitions from an "
                     "accepted or from a rejected token")
    strategies = list(dict.fromkeys(run.strategy for run in runs))
    homogeneity = None
    if pooled and len(strategies) > 1:
        by_strategy = defaultdict(lambda: np.zeros(2))
        for run, rows in zip(runs, counts):
            by_strategy[run.strategy] += rows[:, [mle.A, mle.R]].sum(axis=0)
        homogeneity = mle.lrt_p_value([(a, a + r) for a, r in by_strategy.values()])
        if homogeneity is not None and homogeneity < settings.significance:
            notes.append(f"the pooled strategies' alphas differ (LRT p = {homogeneity:.3g}); see the per-strategy "
                         "entries in 'pairs'")
    first = runs[0]
    return AcceptanceEntry(
        parameter=first.parameter, pair=first.pair, strategies=strategies, models=dict(first.models),
        sampling=first.sampling, alpha=accepted / judged, ci=ci, ci_method=method, runs=len(runs),
        steps=sum(len(run.steps) for run in runs), judged=judged, accepted=accepted, positional=positional,
        markov=markov, homogeneity_p_value=homogeneity, notes=notes)


def fit_acceptance(traces: Sequence[Trace | str | Path], *, bootstrap: int = 1000, seed: int = 0,
                   level: float = 0.95, significance: float = 0.01, min_steps: int = 10,
                   min_position_trials: int = 50, min_transitions: int = 20) -> AcceptanceFit:
    """Fit acceptance per drafter->verifier pair from ``traces`` (paths, read with one schema version, or
    :class:`~speccascade.traces.Trace` objects).

    ``bootstrap`` resamples (seeded by ``seed``) give intervals at ``level``; per-position alphas and the Markov
    chain are retained when their tests (and controlled tests) fall below ``significance``; a group needs
    ``min_steps`` steps, a position ``min_position_trials`` trials, the chain ``min_transitions`` transitions from
    each state. Groups and records that cannot be fitted are listed in the result's ``skipped``; no fit at all
    is an :class:`InputError` saying why."""
    if bootstrap < 100:
        raise InputError(f"bootstrap needs at least 100 resamples, got {bootstrap}")
    if not 0 < level < 1 or not 0 < significance < 1:
        raise InputError(f"level and significance must lie in (0, 1), got {level} and {significance}")
    settings = Settings(bootstrap, seed, level, significance, max(1, min_steps), max(1, min_position_trials),
                        max(1, min_transitions))
    loaded = _load(traces)
    skips = _Skips()
    runs = _collect(loaded, skips)
    rng = np.random.default_rng(seed)
    parameters, used_steps = [], defaultdict(set)
    pooled: dict[tuple, list[_Run]] = defaultdict(list)
    for run in runs:
        pooled[run.pooled()].append(run)
    for members in pooled.values():
        steps, judged = _size(members)
        if steps < settings.min_steps or judged == 0:
            for run in members:
                skips.add(str(loaded[run.trace].path), run.strategy, run.pair,
                          f"too few steps to fit {run.parameter} ({steps} steps, {judged} judged tokens over the "
                          f"pooled strategies; need {settings.min_steps} steps with judged tokens)",
                          f"repeat {run.repeat}", len(run.steps))
            continue
        entry = _entry(members, settings, rng, pooled=True)
        pairs, small = [], []
        for group in _by(members, _Run.group).values():  # the per-strategy entries of this pooled one
            size = _size(group)
            if size[0] >= settings.min_steps and size[1] > 0:
                pairs.append(_entry(group, settings, rng, pooled=False))
            else:
                small.append(f"{group[0].strategy} ({size[0]} steps)")
        if small and len(entry.strategies) > 1:
            entry = entry.model_copy(update={"notes": [*entry.notes, f"no per-strategy entry for {', '.join(small)}"
                                                       f": fewer than {settings.min_steps} steps; pooled here"]})
        parameters.append((entry, pairs))
        for run in members:
            used_steps[run.trace].update(run.ids)
    pairs = [pair for _, group in parameters for pair in group]
    parameters = [entry for entry, _ in parameters]
    if not parameters:
        reasons = "; ".join(sorted({item.reason for item in skips.records()})) or "no step records"
        raise InputError(f"no acceptance could be fitted from {', '.join(str(t.path) for t in loaded)}: {reasons}")
    skipped = skips.records()
    sources = [TraceSource(path=str(trace.path), sha256=_sha256(Path(trace.path)), schema_version=trace.file_version,
                           steps=len(trace.steps), steps_used=len(used_steps[index]))
               for index, trace in enumerate(loaded)]
    provenance = Provenance(
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), traces=sources,
        steps_used=sum(source.steps_used for source in sources), tokens_used=sum(e.judged for e in parameters),
        records_skipped=sum(item.records for item in skipped), bootstrap=bootstrap, seed=seed, level=level,
        significance=significance, block_steps="blocks of round(max(2 n^(1/3), 10 tau)) consecutive steps of each run of n steps (tau: the fitted chain's autocorrelation time in steps)",
        method=METHOD)
    return AcceptanceFit(AcceptanceFile(provenance=provenance, parameters=parameters, pairs=pairs, skipped=skipped))
