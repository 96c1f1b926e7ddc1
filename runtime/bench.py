"""``speccascade runtime bench``: measure every strategy on real models and write a trace and a summary.

Per strategy: compile seconds (prefill, and the step compiled ahead of time; both excluded from timings) and one
warm-up generation (excluded); then ``repeats`` fused generations, round-robin over the strategies so that load
from other processes affects them alike (ms/token = wall time of the step loop / new tokens; median, min, max;
tokens/s = 1000 / median); ``staged_repeats`` staged generations (``block_until_ready`` after every stage: ms per
model per step); acceptance per pair (alpha = accepted / tested, beta = mean sum_x min(p, q)); the host overhead
of a step (:mod:`.overhead`: the share of a fused step's wall time outside model forwards). Then per model a
forward microbenchmark (:mod:`.microbench`). Every step and forward is a trace record, appended and flushed as it
happens.

The trace header (schema version 2, :mod:`speccascade.traces`) names the chip (``BenchConfig.chip``: a profile
name or TOML path; default the probed profile of this machine that ``speccascade hardware probe`` cached, else
none, said in the header's notes) and carries every model's ModelProfile (``CausalLM.profile``), so the cost model
can predict the run; every step names its strategy by registry name with its knobs.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jax
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from speccascade.errors import InputError

from speccascade.hardware.chip import ChipProfile
from speccascade.hardware.probe import cached_profile, cpu_model_name, default_output
from speccascade.hardware.registry import load_chip, portable_chip
from speccascade import strategies as registry
from speccascade.strategy_names import StrategyKnobs, parse_strategy_spec
from speccascade.traces import (
    CompileRecord, HardwareInfo, Header, Knobs, ModelInfo, PairRecord, Spread, StepRecord, StrategySummary,
    Summary, TraceWriter, acceptance_from_steps, write_summary,
)

from .api import CausalLM
from .decoding import Decoder, SamplingConfig, StepStats, build_strategy
from .decoding.build import STRATEGY_NAMES, check_strategy
from .decoding.sampling import GREEDY
from .microbench import time_forwards
from .overhead import host_overhead

ROLES = ("tiny", "draft", "target")
# what a bench runs unless told: every runtime strategy of the trio's models (the heads strategy needs trained
# heads, `speccascade runtime heads bench`, or --strategies heads)
DEFAULT_STRATEGIES = tuple(name for name in STRATEGY_NAMES if set(registry.get(name).roles) <= set(ROLES))
# Python source, like the corpus the default trio learned from (the standard library); varied on purpose, since
# acceptance depends on the text (a repetitive continuation is easy for the Draft and hard for a bigram Tiny)
DEFAULT_PROMPTS = (
    "import os\nimport sys\n\n\ndef main(argv=None):\n    ",
    "class Config:\n    def __init__(self, path, mode='r'):\n        self.path = path\n        ",
    "    def __repr__(self):\n        return '%s(%r)' % (",
    "for name, value in sorted(options.items()):\n    if value is None:\n        ",
)


@dataclass(frozen=True)
class BenchConfig:
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES   # registry names or NAME:knob=value:... (knobs for that one)
    knobs: StrategyKnobs = StrategyKnobs()        # knobs of every strategy (unless its own entry sets them)
    sampling: SamplingConfig = GREEDY
    new_tokens: int = 64
    repeats: int = 3
    staged_repeats: int = 1
    microbench: bool = True
    microbench_repeats: int = 5
    overhead_steps: int = 6          # steps measured for the host overhead (0 = skip)
    seed: int = 0
    fsync: bool = False
    extra: dict = field(default_factory=dict)  # recorded in the header (e.g. which draft variant)
    chip: str | None = None          # chip profile name or TOML path; None: this machine's cached probe, if any

    def __post_init__(self) -> None:
        own: dict[str, tuple[str, StrategyKnobs]] = {}
        for entry in self.strategies:
            name, values = parse_strategy_spec(entry)
            knobs = self.knobs.updated(values)
            check_strategy(name, knobs)
            label = name + "".join(f":{knob}={value}" for knob, value in sorted(values.items()))
            own[label] = (name, knobs)
        # labels: canonical names, with the entry's own knobs when it sets any (several variants of one strategy
        # may run side by side: speculative:k=2, speculative:k=6)
        object.__setattr__(self, "strategies", tuple(own))
        object.__setattr__(self, "_variants", own)
        if self.new_tokens < 1 or self.repeats < 1 or self.staged_repeats < 0 or self.overhead_steps < 0 \
                or self.microbench_repeats < 1:
            raise InputError("new_tokens, repeats and microbench_repeats must be >= 1, staged_repeats and "
                             "overhead_steps >= 0")
        if self.chip is not None:
            load_chip(self.chip)  # an unknown chip fails before any model compiles

    def strategy_of(self, label: str) -> str:
        return self._variants[label][0]

    def knobs_of(self, label: str) -> StrategyKnobs:
        """The knobs of one entry: ``knobs``, overridden by its own NAME:knob=value settings."""
        return self._variants[label][1] if label in self._variants else self.knobs


def hardware_info() -> HardwareInfo:
    device = jax.devices()[0]
    return HardwareInfo(backend=device.platform, device_kind=device.device_kind, device_count=jax.device_count(),
                        host=platform.platform(), cpu_count=os.cpu_count(), jax_version=jax.__version__)


def chip_for_header(chip: str | None, hardware: HardwareInfo) -> tuple[str | ChipProfile | None, list[str]]:
    """(the header's ``chip``, notes): a shipped profile by name, any other profile embedded; with no ``chip``
    the profile ``speccascade hardware probe`` cached for this machine (embedded), else None and a note."""
    if chip is not None:
        return portable_chip(chip), []
    device = cpu_model_name()[1] if hardware.backend == "cpu" else hardware.device_kind
    probed = cached_profile(device=device)
    if probed is not None:
        return probed, [f"chip: this machine's probed profile ({default_output('local')}), embedded"]
    return None, [f"no chip profile: none given (BenchConfig.chip) and no probed profile of "
                  f"this machine ({device}) at {default_output('local')}; run `speccascade hardware probe` first"]


def model_infos(models: dict[str, CausalLM | None]) -> tuple[list[ModelInfo], list[str]]:
    """Header entries of the models (with their ModelProfiles) and a note per model that has no profile or has
    random weights."""
    infos, notes = [], []
    for role, model in models.items():
        if model is None:
            continue
        profile = getattr(model, "profile", None)
        if profile is None:
            notes.append(f"{role} model '{model.name}' has no ModelProfile (not built from a runtime model config)")
        if getattr(model, "random_weights", False):
            notes.append(f"{role} model '{model.name}' has seeded random weights: its forward times are real, its "
                         "tokens and acceptance mean nothing")
        infos.append(ModelInfo(role=role, name=model.name, param_bytes=model.param_bytes,
                               vocab_size=model.vocab_size, max_len=model.max_len, profile=profile))
    return infos, notes


def step_record(name: str, knobs: dict[str, int], mode: str, repeat: int, context: int,
                stats: StepStats) -> StepRecord:
    pairs = {pair_name: PairRecord(proposed=pair.proposed, tested=pair.tested, accepted=pair.accepted,
                                   beta_sum=pair.beta_sum, sequence=pair.sequence)
             for pair_name, pair in stats.pairs.items()}
    return StepRecord(strategy=name, knobs=Knobs(**knobs), mode=mode, repeat=repeat, step=stats.step,
                      context=context, tokens_emitted=stats.emitted, pairs=pairs, stage_ms=stats.stage_ms,
                      step_ms=stats.step_ms, extras=stats.extras)


def _timed_generations(decoder: Decoder, label: str, prompt: Sequence[int], config: BenchConfig, staged: bool,
                       repeats: Sequence[int], writer: TraceWriter | None, advance
                       ) -> list[tuple[float, list[StepRecord]]]:
    runs = []
    knobs = decoder.strategy.knobs()
    for repeat in repeats:
        records: list[StepRecord] = []
        context = [len(prompt)]

        def on_step(stats: StepStats, records=records, context=context, repeat=repeat) -> None:
            record = step_record(decoder.strategy.name, knobs, "staged" if staged else "fused", repeat, context[0],
                                 stats)
            context[0] += stats.emitted
            records.append(record)
            if writer is not None:
                writer.write(record)
            advance(min(stats.emitted, len(prompt) + config.new_tokens - record.context))

        generation = decoder.generate(prompt, config.new_tokens, seed=config.seed + repeat, staged=staged,
                                      on_step=on_step)
        runs.append((generation.decode_ms / config.new_tokens, records))
    return runs


def run_bench(models: dict[str, CausalLM | None], prompts: Sequence[Sequence[int]], config: BenchConfig,
              trace_path: str | Path, summary_path: str | Path | None = None, progress: bool = True,
              command: str = "", force: bool = True) -> Summary:
    """Benchmark ``config.strategies`` on ``models`` (roles tiny/draft/target). ``prompts`` (token ids): repeat r
    decodes ``prompts[r % len(prompts)]`` with every strategy; a single prompt may be given as one list of ints.
    ``force=False`` refuses to replace an existing trace or summary (the CLI's output policy)."""
    if models.get("target") is None:
        raise InputError("the benchmark needs a target model")
    if prompts and isinstance(prompts[0], int):
        prompts = [prompts]
    prompts = [list(prompt) for prompt in prompts]
    if not prompts:
        raise InputError("the benchmark needs at least one prompt")
    prompt = max(prompts, key=len)  # compile, warm-up, staged runs and overhead use the longest prompt
    strategies = {label: build_strategy(config.strategy_of(label), models.get("tiny"), models.get("draft"),
                                        models["target"], config.sampling, config.knobs_of(label),
                                        heads=models.get("heads"))
                  for label in config.strategies}
    lookahead = max(strategy.lookahead for strategy in strategies.values())
    capacity = len(prompt) + config.new_tokens + lookahead
    context = min(model.max_len for role, model in models.items() if role in ROLES and model is not None)
    if capacity > context:
        raise InputError(f"the longest prompt ({len(prompt)} tokens) + {config.new_tokens} new tokens + "
                         f"{lookahead} of lookahead exceed the models' context {context}")
    run_id = uuid.uuid4().hex[:12]
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    hardware = hardware_info()
    infos, notes = model_infos(models)
    chip, chip_notes = chip_for_header(config.chip, hardware)
    header = Header(run_id=run_id, created_utc=created, command=command, chip=chip, hardware=hardware,
                    models=infos, notes=chip_notes + notes,
                    config={"strategies": {name: s.config() for name, s in strategies.items()},
                            "prompt_tokens": [len(p) for p in prompts], "new_tokens": config.new_tokens,
                            "repeats": config.repeats, "staged_repeats": config.staged_repeats,
                            "capacity": capacity, "sampling": config.sampling.describe(), "seed": config.seed,
                            **config.extra})
    results: dict[str, dict] = {}
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with TraceWriter(trace_path, header, fsync=config.fsync, force=force) as writer, \
            Progress(*columns, disable=not progress, transient=False) as bar:
        tasks = {name: bar.add_task(name, total=config.new_tokens * (2 + config.repeats + config.staged_repeats))
                 for name in strategies}
        advances = {name: (lambda tokens, task=task: bar.advance(task, tokens)) for name, task in tasks.items()}
        for name, strategy in strategies.items():  # compile and warm up every strategy first
            decoder = Decoder(strategy, capacity)
            started = time.perf_counter()
            state = decoder.start(prompt, config.seed, config.new_tokens)
            jax.block_until_ready(state)
            prefill_s = time.perf_counter() - started
            writer.write(CompileRecord(strategy=strategy.name, what="prefill (compile + first run)",
                                       compile_s=prefill_s))
            step_s = decoder.compile_step(state)
            writer.write(CompileRecord(strategy=strategy.name, what="step", compile_s=step_s))
            _timed_generations(decoder, name, prompt, config, False, [0], None, advances[name])  # warm-up
            results[name] = {"decoder": decoder, "fused": [], "staged": [], "compile_s": step_s, "overhead": None}
        # timed repeats round-robin over strategies, so that load from other processes affects them alike
        for repeat in range(config.repeats):
            for name, result in results.items():
                result["fused"] += _timed_generations(result["decoder"], name, prompts[repeat % len(prompts)],
                                                      config, False, [repeat], writer, advances[name])
        for name, result in results.items():
            if config.staged_repeats:
                _timed_generations(result["decoder"], name, prompt, config, True, [0], None, advances[name])
        for repeat in range(config.staged_repeats):
            for name, result in results.items():
                result["staged"] += _timed_generations(result["decoder"], name, prompt, config, True, [repeat],
                                                       writer, advances[name])
        if config.overhead_steps:
            for name, result in results.items():
                result["overhead"] = host_overhead(result["decoder"], prompt, config.seed,
                                                   steps=config.overhead_steps)
        if config.microbench:
            roles_used = {role for strategy in strategies.values() for role in strategy.roles}
            points = sorted({len(prompt), len(prompt) + config.new_tokens // 2, len(prompt) + config.new_tokens})
            max_tokens = max(count for strategy in strategies.values()
                             for _, count in strategy.forward_plan(_max_proposed(strategy)))
            task = bar.add_task("microbench", total=len(roles_used) * max_tokens * len(points))
            for role in ROLES:
                if role in roles_used:
                    time_forwards(models[role], role, range(1, max_tokens + 1), points, capacity,
                                  config.microbench_repeats,
                                  on_record=lambda record: (writer.write(record), bar.advance(task)))
    summary = _summarize(results, config, run_id, created, trace_path, header)
    if summary_path is not None:
        write_summary(summary_path, summary, force=force)
    return summary


def _max_proposed(strategy) -> dict[str, int]:
    return dict(strategy.pairs)


def _summarize(results: dict[str, dict], config: BenchConfig, run_id: str, created: str, trace_path,
               header: Header) -> Summary:
    summaries = {}
    for name, result in results.items():
        fused_steps = [record for _, records in result["fused"] for record in records]
        staged_steps = [record for _, records in result["staged"] for record in records]
        spread = Spread.of([ms for ms, _ in result["fused"]])
        stage_ms = {}
        if staged_steps:
            for role in result["decoder"].strategy.roles:
                stage_ms[role] = sum(step.stage_ms.get(role, 0.0) for step in staged_steps) / len(staged_steps)
        overhead = result["overhead"]["host_overhead_fraction"] if result["overhead"] else None
        summaries[name] = StrategySummary(
            strategy=result["decoder"].strategy.name, knobs=Knobs(**result["decoder"].strategy.knobs()),
            config=result["decoder"].strategy.config(), repeats=config.repeats,
            new_tokens=config.new_tokens, ms_per_token=spread, tokens_per_s=1000.0 / spread.median,
            compile_s=result["compile_s"],
            mean_tokens_per_step=sum(step.tokens_emitted for step in fused_steps) / len(fused_steps),
            acceptance=acceptance_from_steps(fused_steps), stage_ms_per_step=stage_ms,
            host_overhead_fraction=overhead)
    baseline_label = next((label for label, item in summaries.items() if item.strategy == registry.AUTOREGRESSIVE.name), None)
    if baseline_label is not None:  # paired: repeat r of every strategy decoded the same prompt
        baseline = summaries[baseline_label].ms_per_token.values
        summaries = {name: summary.model_copy(update={
            "speedup": statistics.median([ar / ms for ar, ms in zip(baseline, summary.ms_per_token.values)]),
            "speedup_total": sum(baseline) / sum(summary.ms_per_token.values)})
            for name, summary in summaries.items()}
    return Summary(run_id=run_id, created_utc=created, trace_file=str(trace_path), chip=header.chip,
                   hardware=header.hardware, models=header.models, strategies=summaries, extras=dict(config.extra),
                   notes=header.notes)
