"""``speccascade runtime heads``: train, evaluate, benchmark and report the decoding heads (runtime/heads).

``train`` makes the self-distillation data from the trio's Target and trains every variant (Medusa, Cascadusa,
Cascadusa-var, Hydra-style) identically into ``<trio>/heads``; ``eval`` prints the held-out accuracies (seed 002
Table 1's shape) and the conditional accuracies; ``bench`` measures tokens per step and speedup per variant and tree
size next to the cost model's prediction; ``report`` writes docs/heads.md from the checkpoint and a bench run.
JAX is imported inside the commands only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from speccascade.cli_text import dumps
from speccascade.errors import InputError
from speccascade.runtime_checks import MAX_NEW_TOKENS, check_count, prepare_outputs

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Decoding heads (Medusa, Cascadusa, Cascadusa-var, Hydra-style): train, eval, bench, report.")

_trio = typer.Option(None, "--trio", help="Trio directory (default: $SPECCASCADE_HOME/trio; trained there on first "
                                          "use); the heads live in <trio>/heads")
_small = typer.Option(False, "--small-trio", help="If the trio directory holds no trio, train the small trio plan "
                                                  "there first (a few minutes) instead of the default one (~20 min)")
_sizes = typer.Option("1,2,4,8,16,32,64", "--sizes", help="Tree sizes (nodes) to measure, comma-separated")
_force = typer.Option(False, "--force", help="Replace existing output files (default: refuse)")
MAX_PROMPTS = 10_000  # held-out prompts one bench decodes (the held-out set is smaller still)


def _check_run(new_tokens: int, prompts: int) -> None:
    check_count("--new-tokens", new_tokens, 1, MAX_NEW_TOKENS)
    check_count("--prompts", prompts, 1, MAX_PROMPTS)


def _trio_dir(trio_dir: Optional[Path], small: bool) -> Path:
    from speccascade.runtime.trio import default_trio_dir

    return Path(trio_dir) if trio_dir is not None else default_trio_dir()


def _load(trio_dir: Optional[Path], small: bool, seed: int = 0):
    from speccascade.runtime.heads.train import small_trio_plan
    from speccascade.runtime.trio import load_trio, train_trio

    path = _trio_dir(trio_dir, small)
    if not (path / "manifest.json").is_file():
        if small:
            train_trio(path, seed=seed, plan=small_trio_plan())
        else:
            from speccascade.runtime.trio import load_default_trio

            return load_default_trio(path, seed=seed), path
    return load_trio(path), path


def _sizes_of(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise InputError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 0 or max(sizes) > 64:
        raise InputError(f"--sizes must lie in [0, 64], got {text!r}")
    return sizes


def _variants(text: str | None) -> tuple[str, ...]:
    from speccascade.runtime.heads.model import VARIANTS

    if text is None:
        return VARIANTS
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise InputError(f"--variants: unknown {unknown or text!r}; known: {', '.join(VARIANTS)}")
    return names


@app.command()
def train(trio_dir: Optional[Path] = _trio, small: bool = _small,
          seed: int = typer.Option(0, "--seed"),
          quick: bool = typer.Option(False, "--quick", help="The tiny test plan (seconds)"),
          force: bool = typer.Option(False, "--force", help="Retrain even if <trio>/heads exists")) -> None:
    """Self-distillation data from the Target, then every heads variant trained identically into <trio>/heads."""
    from speccascade.runtime.heads.train import DEFAULT_HEADS_PLAN, QUICK_HEADS_PLAN, heads_dir, train_all

    trio, path = _load(trio_dir, small, seed)
    if (heads_dir(path) / "manifest.json").is_file() and not force:
        raise InputError(f"{heads_dir(path)} already holds trained heads; --force retrains them")
    metadata = train_all(trio, path, seed=seed, plan=QUICK_HEADS_PLAN if quick else DEFAULT_HEADS_PLAN)
    typer.echo(f"heads written to {heads_dir(path)} ({metadata['timings_s']['total_s']:.0f} s)")
    _print_accuracy(metadata["evaluation"])


def _print_accuracy(evaluation: dict) -> None:
    from speccascade.runtime.heads.report import accuracy_table, conditional_table

    typer.echo("\n".join(accuracy_table(evaluation)))
    typer.echo("")
    typer.echo("\n".join(conditional_table(evaluation)))


@app.command("eval")
def evaluate(trio_dir: Optional[Path] = _trio, small: bool = _small, seed: int = typer.Option(0, "--seed"),
             as_json: bool = typer.Option(False, "--json", help="Print every figure as JSON")) -> None:
    """Held-out top-1..5 accuracy per head and variant (change vs Medusa) and the conditional accuracies, remade
    from the held-out prompts (heads trained on first use)."""
    from speccascade.runtime.heads.evaluate import evaluate_heads
    from speccascade.runtime.heads.model import VARIANTS
    from speccascade.runtime.heads.data import make_sequences
    from speccascade.runtime.heads.train import HeadsPlan, load_heads

    trio, path = _load(trio_dir, small, seed)
    models = {variant: load_heads(trio, variant, path, seed=seed) for variant in VARIANTS}
    metadata = next(iter(models.values())).metadata
    plan = HeadsPlan(**metadata["plan"])
    heldout, _ = make_sequences(trio, plan, metadata["seed"], "heldout")
    evaluation = {variant: evaluate_heads(model, heldout) for variant, model in models.items()}
    if as_json:
        typer.echo(dumps(evaluation, indent=None))
        return
    _print_accuracy(evaluation)


def _bench(trio, path: Path, variants, sizes, new_tokens: int, prompts: int, out: Optional[Path], seed: int,
           progress: bool, force: bool = True) -> dict:
    from speccascade.runtime.heads.bench import bench_heads
    from speccascade.runtime.heads.train import load_heads

    models = {variant: load_heads(trio, variant, path, seed=seed) for variant in variants}
    metadata = next(iter(models.values())).metadata
    held = metadata["data"]["heldout_prompts"][:prompts]
    if len(held) < prompts:
        raise InputError(f"--prompts {prompts}: the heads' held-out set has {len(held)} prompts")
    return bench_heads(trio, models, held, sizes, new_tokens, out=out, progress=progress, seed=seed, force=force)


@app.command()
def bench(trio_dir: Optional[Path] = _trio, small: bool = _small, sizes: str = _sizes,
          variants: Optional[str] = typer.Option(None, "--variants", help="Comma-separated (default: all four)"),
          new_tokens: int = typer.Option(64, "--new-tokens"), prompts: int = typer.Option(8, "--prompts"),
          out: str = typer.Option("heads-bench", "--out", help="Directory for summary.json and the traces"),
          seed: int = typer.Option(0, "--seed"), force: bool = _force,
          as_json: bool = typer.Option(False, "--json", help="Print the summary JSON")) -> None:
    """Greedy decoding per variant and tree size vs autoregressive: tokens/step, speedup, and the predictions."""
    from speccascade.writers import write_text

    chosen, tree_sizes = _variants(variants), _sizes_of(sizes)
    _check_run(new_tokens, prompts)
    out = prepare_outputs(out, ["summary.json", *(f"trace-{variant}.jsonl" for variant in chosen)], force=force)
    trio, path = _load(trio_dir, small, seed)
    result = _bench(trio, path, chosen, tree_sizes, new_tokens, prompts, out, seed, not as_json, force)
    write_text(out / "summary.json", dumps(result, indent=1), force=force)
    if as_json:
        typer.echo(dumps(result, indent=None))
        return
    from speccascade.runtime.heads.report import bench_table

    typer.echo("\n".join(bench_table(result)))
    typer.echo(f"summary: {out / 'summary.json'}")


def _bench_result(result, path: Path) -> dict:
    """A ``heads bench`` summary.json, its shape checked (one line naming what is wrong)."""
    from speccascade.runtime.heads.model import VARIANTS

    variants = result.get("variants") if isinstance(result, dict) else None
    if not isinstance(variants, dict) or not variants:
        raise InputError(f"{path}: not a `heads bench` summary (no 'variants' object)")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise InputError(f"{path}: unknown heads variants {unknown}; known: {', '.join(VARIANTS)}")
    for name, entry in variants.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sizes"), dict) or not entry["sizes"] or \
                not all(isinstance(row, dict) for row in entry["sizes"].values()):
            raise InputError(f"{path}: variant '{name}' has no 'sizes' object of measured tree sizes")
    prompts = result.get("prompts")
    if isinstance(prompts, bool) or not isinstance(prompts, int) or prompts < 1:
        raise InputError(f"{path}: 'prompts' must be a positive integer, got {prompts!r}")
    return result


@app.command()
def report(trio_dir: Optional[Path] = _trio, small: bool = _small, sizes: str = _sizes,
           bench_summary: Optional[Path] = typer.Option(None, "--bench", help="A `heads bench` summary.json "
                                                                             "(default: run the bench now)"),
           new_tokens: int = typer.Option(64, "--new-tokens"), prompts: int = typer.Option(8, "--prompts"),
           output: str = typer.Option("docs/heads.md", "--output"),
           seed: int = typer.Option(0, "--seed"),
           force: bool = typer.Option(False, "--force", help="Replace an existing report and its plots (the "
                                                             "regeneration of docs/heads.md needs it)")) -> None:
    """Write docs/heads.md: accuracy table, conditional accuracies, measured vs predicted per tree size, verdict."""
    from speccascade.runtime.checkpoint import read_manifest
    from speccascade.runtime.heads.model import VARIANTS
    from speccascade.runtime.heads.report import REPORT_COMPANIONS, write_report
    from speccascade.runtime.heads.train import heads_dir
    from speccascade.writers import write_text

    tree_sizes = _sizes_of(sizes)
    _check_run(new_tokens, prompts)
    if not str(output).strip():
        raise InputError("--output: empty path; name the report file (for example docs/heads.md)")
    output = Path(output)
    prepare_outputs(output.parent, (output.name, *REPORT_COMPANIONS), force=force)  # before any training or run
    if bench_summary is not None:  # read and checked before the trio loads (which may train it)
        from speccascade.readers import read_json

        result = _bench_result(read_json(bench_summary), bench_summary)
    trio, path = _load(trio_dir, small, seed)
    if bench_summary is not None:
        if any("walk_replay" not in row for entry in result["variants"].values() for row in entry["sizes"].values()):
            from speccascade.runtime.heads.bench import complete
            from speccascade.runtime.heads.train import load_heads

            models = {variant: load_heads(trio, variant, path, seed=seed) for variant in result["variants"]}
            held = next(iter(models.values())).metadata["data"]["heldout_prompts"][:result["prompts"]]
            result = complete(result, trio.target, models, held)
    else:
        import tempfile

        run_dir = Path(tempfile.mkdtemp(prefix="heads-bench-"))
        result = _bench(trio, path, VARIANTS, tree_sizes, new_tokens, prompts, run_dir, seed, True)
        write_text(run_dir / "summary.json", dumps(result, indent=1))
        typer.echo(f"bench traces and summary: {run_dir}")
    manifest = read_manifest(heads_dir(path))
    plan = trio.metadata.get("plan", {})
    target = plan.get("target", {})
    stage = plan.get("target_stage", {})
    note = (f"the trio at {path} (d_model {target.get('d_model')}, {target.get('n_layers')} layers, vocabulary "
            f"{plan.get('vocab_size')}, {stage.get('steps')} training steps of {stage.get('batch')} x "
            f"{stage.get('seq_len')} tokens; held-out cross-entropy "
            f"{trio.metadata.get('evaluation', {}).get('heldout_cross_entropy', {}).get('target', float('nan')):.3f}"
            " nats/token), frozen")
    from speccascade.runtime.heads.train import small_trio_plan

    if plan.get("target") == small_trio_plan().target:
        note += (". This is the small trio plan (`small_trio_plan` in runtime/heads/train.py, `--small-trio`): no "
                 "default trio (~/.speccascade/trio, about 20 minutes to train) was trained on this machine, and the "
                 "quick trio's 40-step Target decodes nothing but spaces, which makes every head trivially right")
    written = write_report(manifest, result, output, " ".join(["python -m speccascade", *sys.argv[1:]]), note,
                           heads_dir(path), force=force)
    typer.echo(f"report written to {written}")


def heads_for_run(names, trio_dir: Optional[Path], variant: str):
    """The trained heads ``runtime generate|bench`` need when one of ``names`` is the heads strategy (trained on
    first use into <trio>/heads), else None."""
    from speccascade import strategies as registry
    from speccascade.strategy_names import parse_strategy_spec

    if not any("heads" in registry.get(parse_strategy_spec(name)[0]).roles for name in names):
        return None
    from speccascade.runtime.heads.train import load_heads

    _variants(variant)
    trio, path = _load(trio_dir, False)
    return load_heads(trio, variant, path)
