"""``speccascade runtime``: train the default trio, decode with a strategy, benchmark every strategy.

``train`` trains the Tiny -> Draft -> Target trio (:func:`speccascade.runtime.trio.train_trio`). ``generate``
decodes a prompt with one strategy and prints the text, or with ``--json`` the object {"text", "tokens",
"acceptance"}. ``bench`` runs :func:`speccascade.runtime.bench.run_bench` and writes a JSON Lines trace and a
summary JSON. JAX is imported only inside the commands, so the rest of the CLI starts without it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from speccascade import strategies as registry
from speccascade.cli_text import dumps, safe
from speccascade.errors import InputError
from speccascade.runtime_checks import MAX_NEW_TOKENS, MAX_REPEATS, check_count, check_sampling, \
    check_trio_output, prepare_outputs
from speccascade.strategy_names import StrategyKnobs, parse_strategy_spec

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
from .cli_heads import app as _heads_app  # noqa: E402  (speccascade runtime heads train|eval|bench|report)

app.add_typer(_heads_app, name="heads")

RUNTIME_STRATEGIES = registry.runtime_names()  # what the runtime executes, known without importing jax
# bench's default: the strategies the trio's models run (heads needs trained heads: `runtime heads bench`)
BENCH_DEFAULT = tuple(name for name in RUNTIME_STRATEGIES if "heads" not in registry.get(name).roles)

_trio_option = typer.Option(None, "--trio", help="Trained trio directory (default: $SPECCASCADE_HOME/trio; "
                                                  "trained there on first use)")
_config = typer.Option(None, "--config", help="The TOML file `predict` and `simulate` take: its strategy, k, "
                                             "k_tiny and filter_width (flags win)")
_k = typer.Option(None, "--k", help="Draft tokens per step (vertical: Draft reviews per step; vertical-budget: "
                                    "tokens delivered per step); default 4")
_k_tiny = typer.Option(None, "--k-tiny", help="Vertical cascades: Tiny drafts per Draft review; default 3")
_filter_width = typer.Option(None, "--filter-width", "--m", help="Filtered: the Tiny's top-m candidates the Draft "
                                                                "is restricted to; default 64")
_draft = typer.Option("fp32", "--draft-weights", help="Draft weights: fp32, or int8 (the seed's setup; slower than "
                                                     "fp32 on XLA:CPU, which has no fast int8 matmul)")
_target = typer.Option("fp32", "--target-weights", help="Target weights: fp32, or bf16 (bfloat16 weights, float32 "
                                                       "accumulation; verification over up to 7 tokens costs about "
                                                       "one decoding step on a CPU with AMX)")
_target_model = typer.Option(None, "--target-model", help="Target instead of the trio's: a Hugging Face checkpoint "
                             "DIR[:fp32|bf16|int8], a PROFILE[:FORMAT] with --random-weights, or trio:ROLE[:FORMAT]")
_draft_model = typer.Option(None, "--draft-model", help="Draft (same forms as --target-model; same vocabulary)")
_tiny_model = typer.Option(None, "--tiny-model", help="Tiny (same forms; e.g. tiny-10m with --random-weights)")
_random_weights = typer.Option(False, "--random-weights", help="Model specs build seeded random weights of their "
                               "shape: timing only, labelled so in every output and trace")
_distributed = typer.Option(False, "--distributed", help="Start jax.distributed first (multi-host: SPECCASCADE_* "
                            "variables or auto-detection; docs/real-models.md)")
_shard = typer.Option(False, "--shard", help="Target tensor-parallel over every device, drafters replicated")
_heads_variant = typer.Option("medusa", "--heads-variant", help="heads strategy: medusa, cascadusa, cascadusa-var "
                                                               "or hydra (trained on first use into <trio>/heads)")
_tree_nodes = typer.Option(None, "--tree-nodes", help="heads strategy: nodes of the candidate tree; default 63")
_temperature = typer.Option(1.0, "--temperature", help="Sampling temperature (ignored with --greedy)")
_top_k = typer.Option(0, "--top-k", help="Keep the k most likely tokens (0 = off)")
_top_p = typer.Option(1.0, "--top-p", help="Keep the smallest set of tokens with this much mass (1 = off)")
_force = typer.Option(False, "--force", help="Replace existing output files (default: refuse)")


def _sampling(greedy: bool, temperature: float, top_k: int, top_p: float):
    check_sampling(greedy, temperature, top_k, top_p)  # before jax is imported
    from speccascade.runtime.decoding import SamplingConfig

    return SamplingConfig(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p)


def _models(trio_dir: Optional[Path], draft: str, target: str, seed: int):
    from speccascade.runtime.trio import DRAFT_WEIGHTS, TARGET_WEIGHTS, load_default_trio

    # checked before loading: a missing trio is trained first, which takes minutes
    if draft not in DRAFT_WEIGHTS:
        raise InputError(f"--draft-weights must be one of {', '.join(DRAFT_WEIGHTS)}, got '{draft}'")
    if target not in TARGET_WEIGHTS:
        raise InputError(f"--target-weights must be one of {', '.join(TARGET_WEIGHTS)}, got '{target}'")
    trio = load_default_trio(trio_dir, seed=seed)
    return trio, trio.models(target=target, draft=draft)


def _role_models(specs: dict, random_weights: bool, seed: int, trio_dir, distributed: bool, shard: bool,
                 draft: str, target: str):
    """(tokenizer, models by role): the trio's (``--draft-weights``/``--target-weights``) unless a --*-model
    spec is given, then exactly the given roles (:func:`speccascade.runtime.loading.load_roles`)."""
    if distributed:
        from speccascade.runtime.distributed import initialize

        initialize()
    if any(specs.values()):
        from speccascade.runtime.loading import load_roles

        models, tokenizer, _ = load_roles(specs, random_weights=random_weights, seed=seed, trio_dir=trio_dir)
    else:
        if random_weights:
            raise InputError("--random-weights applies to --target-model/--draft-model/--tiny-model specs")
        trio, models = _models(trio_dir, draft, target, seed)
        tokenizer = trio.tokenizer
    if shard:
        from speccascade.runtime.distributed import shard_roles

        models = shard_roles(models)
    return tokenizer, models


def _random_roles(models: dict) -> list[str]:
    return sorted(role for role, model in models.items() if getattr(model, "random_weights", False))


def _knobs(config_file: Optional[Path], k, k_tiny, filter_width) -> tuple[StrategyKnobs, str | None]:
    """Knobs from the flags, else from ``--config`` (the predict/simulate TOML), else the registry's defaults;
    also the config's strategy (None when it names none or 'auto')."""
    strategy = None
    if config_file is not None:
        from speccascade.costmodel.config import PredictConfig

        config = PredictConfig.from_toml(config_file)
        fields = config.model_fields_set
        k = k if k is not None else (config.k if "k" in fields else None)
        k_tiny = k_tiny if k_tiny is not None else (config.k_tiny if "k_tiny" in fields else None)
        filter_width = filter_width if filter_width is not None else (
            config.filter_width if "filter_width" in fields else None)
        strategy = None if config.strategy == "auto" else config.strategy
    return StrategyKnobs(k=k, k_tiny=k_tiny, filter_width=filter_width), strategy


def _runtime_name(name: str) -> str:
    canonical = registry.canonical(name)
    if canonical not in RUNTIME_STRATEGIES:
        raise InputError(f"the runtime does not run strategy '{canonical}'; it runs: {', '.join(RUNTIME_STRATEGIES)}")
    return canonical


def _prompt_ids(tokenizer, text: str) -> list[int]:
    if hasattr(tokenizer, "prompt_ids"):  # a checkpoint's tokenizer.json (BOS first) or byte ids
        return tokenizer.prompt_ids(text)
    ids = tokenizer.encode(text)
    return [tokenizer.eot_id] + ids  # a document starts after the end-of-text token, as in training


@app.command()
def train(output: Optional[str] = typer.Option(None, "--output", help="Checkpoint directory (default: "
                                                                         "$SPECCASCADE_HOME/trio)"),
          seed: int = typer.Option(0, "--seed"),
          quick: bool = typer.Option(False, "--quick", help="The small test plan (under a minute)"),
          force: bool = typer.Option(False, "--force", help="Retrain over an existing trio in --output")) -> None:
    """Train Target, Draft (distilled from Target) and Tiny (distilled from Draft) on the stdlib corpus."""
    from speccascade.runtime.trio import default_trio_dir

    output = check_trio_output(default_trio_dir() if output is None else output, force=force)  # before the jax import and training
    from speccascade.runtime.trio import train_trio

    metadata = train_trio(output, seed=seed, quick=quick)
    typer.echo(f"trio written to {output}")
    acceptance = metadata.get("evaluation", {}).get("acceptance") if isinstance(metadata, dict) else None
    if acceptance:
        typer.echo(dumps({"acceptance": acceptance}))


@app.command()
def generate(strategy: Optional[str] = typer.Option(None, "--strategy", help=f"One of: {', '.join(RUNTIME_STRATEGIES)} "
                                                    "(or an alias: cascade = vertical)"),
             prompt: str = typer.Option(..., "--prompt", help="Prompt text"),
             max_new: int = typer.Option(64, "--max-new", help="New tokens to generate"),
             greedy: bool = typer.Option(False, "--greedy", help="Greedy decoding (default: sampling)"),
             seed: int = typer.Option(0, "--seed", help="Sampling seed"),
             temperature: float = _temperature, top_k: int = _top_k, top_p: float = _top_p,
             k: Optional[int] = _k, k_tiny: Optional[int] = _k_tiny, filter_width: Optional[int] = _filter_width,
             config_file: Optional[Path] = _config,
             draft: str = _draft, target: str = _target, trio_dir: Optional[Path] = _trio_option,
             target_model: Optional[str] = _target_model, draft_model: Optional[str] = _draft_model,
             tiny_model: Optional[str] = _tiny_model, random_weights: bool = _random_weights,
             distributed: bool = _distributed, shard: bool = _shard,
             heads_variant: str = _heads_variant, tree_nodes: Optional[int] = _tree_nodes,
             as_json: bool = typer.Option(False, "--json", help="Print {text, tokens, acceptance} as JSON")) -> None:
    """Decode PROMPT with one strategy (lossless: the target's distribution, whatever the strategy)."""
    knobs, configured = _knobs(config_file, k, k_tiny, filter_width)
    knobs = knobs if tree_nodes is None else knobs.updated({"tree_nodes": tree_nodes})
    strategy = strategy or configured
    if strategy is None:
        raise InputError("give --strategy (or a --config file that names one)")
    strategy = _runtime_name(strategy)
    knobs.for_strategy(strategy)  # knob ranges checked before any model loads
    check_count("--max-new", max_new, 1, MAX_NEW_TOKENS)
    sampling = _sampling(greedy, temperature, top_k, top_p)
    from speccascade.runtime.decoding import Decoder, build_strategy

    tokenizer, models = _role_models({"target": target_model, "draft": draft_model, "tiny": tiny_model},
                                     random_weights, 0, trio_dir, distributed, shard, draft, target)
    from .cli_heads import heads_for_run

    chosen = build_strategy(strategy, models.get("tiny"), models.get("draft"), models["target"], sampling, knobs,
                            heads=heads_for_run((strategy,), trio_dir, heads_variant))
    ids = _prompt_ids(tokenizer, prompt)
    capacity = len(ids) + max_new + chosen.lookahead
    if capacity > models["target"].max_len:
        raise InputError(f"prompt ({len(ids)} tokens) + --max-new {max_new} exceed the models' context "
                         f"{models['target'].max_len}")
    generation = Decoder(chosen, capacity).generate(ids, max_new, seed=seed)
    text = tokenizer.decode(generation.tokens)
    randoms = _random_roles(models)
    if as_json:
        typer.echo(dumps({"text": text, "tokens": list(generation.tokens), "acceptance": generation.acceptance(),
                          **({"random_weights": randoms} if randoms else {})}, indent=None))
        return
    if randoms:
        typer.echo(f"[random weights (timing only; the text means nothing): {', '.join(randoms)}]", err=True)
    typer.echo(prompt + text)
    report = generation.acceptance()
    parts = [f"{name}: alpha {value['alpha']:.3f}" for name, value in report.items() if "alpha" in value]
    typer.echo(f"[{strategy}: {report['tokens_per_step']['mean']:.2f} tokens/step"
               + (f"; {'; '.join(parts)}" if parts else "") + "]", err=True)


@app.command()
def bench(strategies: Optional[str] = typer.Option(None, "--strategies", help="Comma-separated strategies, each "
                                                  "NAME or NAME:knob=value:... (its own knobs, e.g. vertical:k=2) "
                                                  f"(default: {','.join(BENCH_DEFAULT)}; with --config: "
                                                  "autoregressive and the config's strategy)"),
          new_tokens: int = typer.Option(64, "--new-tokens", help="New tokens per generation"),
          repeats: int = typer.Option(4, "--repeats", help="Timed generations per strategy"),
          staged_repeats: int = typer.Option(1, "--staged-repeats", help="Generations timed stage by stage"),
          prompt: Optional[list[str]] = typer.Option(None, "--prompt", help="Prompt text; repeat the option for "
                                                     "several (repeat r decodes prompt r mod count); default: "
                                                     "four Python-source prompts"),
          greedy: bool = typer.Option(True, "--greedy/--sample", help="Greedy (default) or sampled decoding"),
          temperature: float = _temperature, top_k: int = _top_k, top_p: float = _top_p,
          k: Optional[int] = _k, k_tiny: Optional[int] = _k_tiny, filter_width: Optional[int] = _filter_width,
          config_file: Optional[Path] = _config,
          draft: str = _draft, target: str = _target, trio_dir: Optional[Path] = _trio_option,
          target_model: Optional[str] = _target_model, draft_model: Optional[str] = _draft_model,
          tiny_model: Optional[str] = _tiny_model, random_weights: bool = _random_weights,
          distributed: bool = _distributed, shard: bool = _shard,
          out: str = typer.Option("runtime-bench", "--out", help="Directory for trace.jsonl and "
                                                                         "summary.json"),
          microbench: bool = typer.Option(True, "--microbench/--no-microbench",
                                          help="Forward-time microbenchmarks per model (calibration input)"),
          overhead_steps: int = typer.Option(6, "--overhead-steps", help="Steps measured for the host overhead "
                                                                           "(0 = skip)"),
          seed: int = typer.Option(0, "--seed"),
          chip: Optional[str] = typer.Option(None, "--chip", help="Chip profile of this machine for the trace header "
                                                                   "(name or TOML; default: its cached probe)"),
          fsync: bool = typer.Option(False, "--fsync", help="fsync the trace after every record"),
          heads_variant: str = _heads_variant, tree_nodes: Optional[int] = _tree_nodes, force: bool = _force,
          as_json: bool = typer.Option(False, "--json", help="Print the summary JSON")) -> None:
    """Benchmark strategies on the default trio: ms/token, per-stage time, acceptance, compile time."""
    check_count("--new-tokens", new_tokens, 1, MAX_NEW_TOKENS)
    check_count("--repeats", repeats, 1, MAX_REPEATS)
    check_count("--staged-repeats", staged_repeats, 0, MAX_REPEATS)
    check_count("--overhead-steps", overhead_steps, 0, MAX_REPEATS)
    out = prepare_outputs(out, ("trace.jsonl", "summary.json"), force=force)
    knobs, configured = _knobs(config_file, k, k_tiny, filter_width)
    knobs = knobs if tree_nodes is None else knobs.updated({"tree_nodes": tree_nodes})
    specs = {"target": target_model, "draft": draft_model, "tiny": tiny_model}
    if strategies is not None:
        names = tuple(name.strip() for name in strategies.split(",") if name.strip())
    elif configured is None and any(specs.values()):  # the strategies the given roles can run
        given = {role for role, spec in specs.items() if spec}
        names = tuple(name for name in BENCH_DEFAULT if set(registry.get(name).roles) <= given)
    else:
        names = BENCH_DEFAULT if configured is None else (registry.AUTOREGRESSIVE.name, configured)
    for entry in names:  # names, runtime support and knob ranges checked before any model loads
        name, values = parse_strategy_spec(entry)
        _runtime_name(name)
        knobs.updated(values).for_strategy(name)
    sampling = _sampling(greedy, temperature, top_k, top_p)
    from speccascade.runtime.bench import DEFAULT_PROMPTS, BenchConfig, run_bench

    config = BenchConfig(strategies=names, knobs=knobs,
                         sampling=sampling, new_tokens=new_tokens, repeats=repeats, staged_repeats=staged_repeats,
                         microbench=microbench, overhead_steps=overhead_steps, seed=seed, fsync=fsync, chip=chip,
                         extra=({"models": {role: spec for role, spec in specs.items() if spec},
                                 "random_weights": random_weights} if any(specs.values())
                                else {"draft_weights": draft, "target_weights": target}))
    tokenizer, models = _role_models(specs, random_weights, seed, trio_dir, distributed, shard, draft, target)
    from .cli_heads import heads_for_run

    models = {**models, "heads": heads_for_run(names, trio_dir, heads_variant)}
    texts = prompt or list(DEFAULT_PROMPTS)
    summary = run_bench(models, [_prompt_ids(tokenizer, text) for text in texts], config, out / "trace.jsonl",
                        out / "summary.json", progress=not as_json, command=" ".join(sys.argv), force=force)
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"runtime bench ({safe(summary.hardware.backend)}: {safe(summary.hardware.device_kind)})")
    for column in ("strategy", "ms/token (median [min, max])", "tokens/s", "speedup", "tokens/step", "acceptance",
                   "ms per step by model", "compile s"):
        table.add_column(column)
    for name, item in summary.strategies.items():
        spread = item.ms_per_token
        acceptance = ", ".join(f"{pair} {value.alpha:.2f}" for pair, value in item.acceptance.items())
        stages = ", ".join(f"{role} {ms:.2f}" for role, ms in item.stage_ms_per_step.items())
        table.add_row(safe(name), f"{spread.median:.3f} [{spread.min:.3f}, {spread.max:.3f}]", f"{item.tokens_per_s:.1f}",
                      f"{item.speedup:.2f}x" if item.speedup else "-", f"{item.mean_tokens_per_step:.2f}",
                      safe(acceptance or "-"), safe(stages or "-"), f"{item.compile_s:.1f}")
    Console(width=180).print(table)
    if _random_roles(models):
        typer.echo(f"random weights (timing only; tokens and acceptance mean nothing): "
                   f"{', '.join(_random_roles(models))}")
    typer.echo(f"trace: {out / 'trace.jsonl'}  summary: {out / 'summary.json'}")


from speccascade.cli_microbench import microbench  # noqa: E402  (its own module; registered here)

app.command()(microbench)
