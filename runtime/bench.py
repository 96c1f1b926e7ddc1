"""``speccascade runtime bench``: measure every strategy on real models and write a trace and a summary.

Per strategy: compile seconds (prefill and step, ahead of time, excluded from timings), one warm-up generation
(excluded), ``repeats`` fused generations (ms/token = wall of the step loop / new tokens; median, min, max over
repeats; tokens/s = 1000 / median), ``staged_repeats`` staged generations (``block_until_ready`` after every stage:
ms per model per step), acceptance per pair (alpha = accepted / tested, beta = mean sum_x min(p, q)). Then per
model a forward microbenchmark (:mod:`.microbench`), from which the host overhead of a step is estimated as

    host_overhead_fraction = 1 - sum over fused steps of the forwards the step ran (microbenchmarked ms)
                                 / sum over fused steps of the step's wall ms

i.e. the share of a step spent outside model forwards: sampling and verification arithmetic, dispatch, the
statistics copy. Every step and forward is a trace record, appended and flushed as it happens.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jax
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from speccascade.hardware.errors import InputError

from .api import CausalLM
from .decoding import Decoder, SamplingConfig, StepStats, build_strategy
from .decoding.build import STRATEGY_NAMES, StrategyKnobs
from .decoding.sampling import GREEDY
from .microbench import time_forwards
from .overhead import host_overhead
from .traces import (
    CompileRecord, HardwareInfo, Header, ModelInfo, PairRecord, Spread, StepRecord, StrategySummary,
    Summary, TraceWriter, acceptance_from_steps, write_summary,
)

ROLES = ("tiny", "draft", "target")


@dataclass(frozen=True)
class BenchConfig:
    strategies: tuple[str, ...] = STRATEGY_NAMES
    knobs: StrategyKnobs = StrategyKnobs()
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

    def __post_init__(self) -> None:
        for name in self.strategies:
            if name not in STRATEGY_NAMES:
                raise InputError(f"unknown strategy '{name}'; known: {', '.join(STRATEGY_NAMES)}")
        if self.new_tokens < 1 or self.repeats < 1 or self.staged_repeats < 0:
            raise InputError("new_tokens and repeats must be >= 1, staged_repeats >= 0")


def hardware_info() -> HardwareInfo:
    device = jax.devices()[0]
    return HardwareInfo(backend=device.platform, device_kind=device.device_kind, device_count=jax.device_count(),
                        host=platform.platform(), cpu_count=os.cpu_count(), jax_version=jax.__version__)


def model_infos(models: dict[str, CausalLM | None]) -> list[ModelInfo]:
    return [ModelInfo(role=role, name=model.name, param_bytes=model.param_bytes, vocab_size=model.vocab_size,
                      max_len=model.max_len) for role, model in models.items() if model is not None]


def step_record(label: str, mode: str, repeat: int, context: int, stats: StepStats) -> StepRecord:
    pairs = {name: PairRecord(proposed=pair.proposed, tested=pair.tested, accepted=pair.accepted,
                              beta_sum=pair.beta_sum, sequence=pair.sequence) for name, pair in stats.pairs.items()}
    return StepRecord(strategy=label, mode=mode, repeat=repeat, step=stats.step, context=context,
                      tokens_emitted=stats.emitted, pairs=pairs, stage_ms=stats.stage_ms, step_ms=stats.step_ms,
                      extras=stats.extras)


def _timed_generations(decoder: Decoder, label: str, prompt: Sequence[int], config: BenchConfig, staged: bool,
                       repeats: int, writer: TraceWriter | None, advance) -> list[tuple[float, list[StepRecord]]]:
    runs = []
    for repeat in range(repeats):
        records: list[StepRecord] = []
        context = [len(prompt)]

        def on_step(stats: StepStats, records=records, context=context, repeat=repeat) -> None:
            record = step_record(label, "staged" if staged else "fused", repeat, context[0], stats)
            context[0] += stats.emitted
            records.append(record)
            if writer is not None:
                writer.write(record)
            advance(min(stats.emitted, len(prompt) + config.new_tokens - record.context))

        generation = decoder.generate(prompt, config.new_tokens, seed=config.seed + repeat, staged=staged,
                                      on_step=on_step)
        runs.append((generation.decode_ms / config.new_tokens, records))
    return runs


def run_bench(models: dict[str, CausalLM | None], prompt: Sequence[int], config: BenchConfig,
              trace_path: str | Path, summary_path: str | Path | None = None, progress: bool = True,
              command: str = "") -> Summary:
    """Benchmark ``config.strategies`` on ``models`` (roles tiny/draft/target) from one prompt (token ids)."""
    if models.get("target") is None:
        raise InputError("the benchmark needs a target model")
    strategies = {name: build_strategy(name, models.get("tiny"), models.get("draft"), models["target"],
                                       config.sampling, config.knobs) for name in config.strategies}
    lookahead = max(strategy.lookahead for strategy in strategies.values())
    capacity = len(prompt) + config.new_tokens + lookahead
    run_id = uuid.uuid4().hex[:12]
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    hardware, infos = hardware_info(), model_infos(models)
    header = Header(run_id=run_id, created_utc=created, command=command, hardware=hardware, models=infos,
                    config={"strategies": {name: s.config() for name, s in strategies.items()},
                            "prompt_tokens": len(prompt), "new_tokens": config.new_tokens,
                            "repeats": config.repeats, "staged_repeats": config.staged_repeats,
                            "capacity": capacity, "sampling": config.sampling.describe(), "seed": config.seed,
                            **config.extra})
    results: dict[str, dict] = {}
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with TraceWriter(trace_path, header, fsync=config.fsync) as writer, \
            Progress(*columns, disable=not progress, transient=False) as bar:
        for name, strategy in strategies.items():
            total = config.new_tokens * (2 + config.repeats + config.staged_repeats)
            task = bar.add_task(name, total=total)
            advance = lambda tokens, task=task: bar.advance(task, tokens)  # noqa: E731
            decoder = Decoder(strategy, capacity)
            started = time.perf_counter()
            state = decoder.start(prompt, config.seed, config.new_tokens)
            jax.block_until_ready(state)
            prefill_s = time.perf_counter() - started
            writer.write(CompileRecord(strategy=name, what="prefill (compile + first run)", compile_s=prefill_s))
            step_s = decoder.compile_step(state)
            writer.write(CompileRecord(strategy=name, what="step", compile_s=step_s))
            _timed_generations(decoder, name, prompt, config, False, 1, None, advance)  # warm-up, not recorded
            fused = _timed_generations(decoder, name, prompt, config, False, config.repeats, writer, advance)
            staged = []
            if config.staged_repeats:
                _timed_generations(decoder, name, prompt, config, True, 1, None, advance)  # compiles the stages
                staged = _timed_generations(decoder, name, prompt, config, True, config.staged_repeats, writer,
                                            advance)
            overhead = None
            if config.overhead_steps:
                overhead = host_overhead(decoder, prompt, config.seed, steps=config.overhead_steps)
            results[name] = {"decoder": decoder, "fused": fused, "staged": staged, "compile_s": step_s,
                             "overhead": overhead}
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
    summary = _summarize(results, config, run_id, created, trace_path, hardware, infos)
    if summary_path is not None:
        write_summary(summary_path, summary)
    return summary


def _max_proposed(strategy) -> dict[str, int]:
    return dict(strategy.pairs)


def _summarize(results: dict[str, dict], config: BenchConfig, run_id: str,
               created: str, trace_path, hardware: HardwareInfo, infos: list[ModelInfo]) -> Summary:
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
            strategy=name, config=result["decoder"].strategy.config(), repeats=config.repeats,
            new_tokens=config.new_tokens, ms_per_token=spread, tokens_per_s=1000.0 / spread.median,
            compile_s=result["compile_s"],
            tokens_per_step=sum(step.tokens_emitted for step in fused_steps) / len(fused_steps),
            acceptance=acceptance_from_steps(fused_steps), stage_ms_per_step=stage_ms,
            host_overhead_fraction=overhead)
    if "autoregressive" in summaries:
        baseline = summaries["autoregressive"].ms_per_token.median
        summaries = {name: summary.model_copy(update={"speedup": baseline / summary.ms_per_token.median})
                     for name, summary in summaries.items()}
    return Summary(run_id=run_id, created_utc=created, trace_file=str(trace_path), hardware=hardware, models=infos,
                   strategies=summaries, extras=dict(config.extra))
