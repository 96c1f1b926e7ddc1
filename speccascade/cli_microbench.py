"""``speccascade runtime microbench SPEC...``: forward times of any models over a grid of new-token counts and
contexts, written as ``forward`` records of a schema-v2 trace (``OUT/trace.jsonl``) that ``speccascade
calibrate`` reads, plus ``OUT/microbench.json`` (the records with the achieved weight bandwidth).

A SPEC is a Hugging Face checkpoint directory (``DIR`` or ``DIR:int8``), a model profile with ``--random-weights``
(``gemma-2b:bf16``, ``gemma-7b:int8``, a profile TOML), a role of the default trio (``trio:target:bf16``), or
``trio`` (all of its models: Target fp32 and bf16, Draft fp32 and int8, Tiny), optionally named ``ROLE=SPEC``
(the role in the trace; default: the trio's role, else the spec). All models of one run are resident together
(the header says so to calibration's placement); time models that do not fit together in separate runs.
JAX is imported only when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from speccascade.cli_text import dumps, one_line, safe
from speccascade.errors import InputError
from speccascade.limits import MAX_CONTEXT, MAX_TREE_NODES
from speccascade.runtime_checks import MAX_REPEATS, check_count, prepare_outputs

TRIO_ALL = ("trio:target", "trio:target:bf16", "trio:draft", "trio:draft:int8", "trio:tiny")
MAX_POINTS = 10_000   # (tokens, context) points per model
MAX_CHAIN = 1_000     # forwards chained in one jit


def _ints(text: str, option: str, low: int, high: int) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"{option} takes comma-separated integers, got {text!r}") from None
    if not values:
        raise InputError(f"{option} is empty")
    for value in values:
        check_count(option, value, low, high)
    return values


def role_specs(specs: list[str]) -> list[tuple[str, str]]:
    """(role, spec) pairs: ``ROLE=SPEC`` keeps ROLE; ``trio`` expands to its five models; a trio role is named
    ROLE or ROLE-FORMAT; anything else is named by its spec (a directory by its name). Roles are unique."""
    from speccascade.runtime.loading import split_format

    pairs: list[tuple[str, str]] = []
    for text in specs:
        role, separator, spec = text.partition("=")
        if not separator:
            role, spec = "", text
        expanded = TRIO_ALL if spec == "trio" else (spec,)
        for one in expanded:
            name = role
            if not name or len(expanded) > 1:
                base, fmt = split_format(one)
                if base.startswith("trio:"):
                    name = base.split(":")[1] + (f"-{fmt}" if fmt and fmt != "fp32" else "")
                else:
                    stem = Path(base).name if ("/" in base or Path(base).is_dir()) else base
                    stem = stem[:-len(".toml")] if stem.endswith(".toml") else stem
                    name = stem + (f":{fmt}" if fmt else "")
            pairs.append((name, one))
    roles = [role for role, _ in pairs]
    duplicates = sorted({role for role in roles if roles.count(role) > 1})
    if duplicates:
        raise InputError(f"microbench roles must be unique; repeated: {', '.join(duplicates)} (name them ROLE=SPEC)")
    return pairs


def microbench(specs: list[str] = typer.Argument(..., help="Models: checkpoint DIR[:FORMAT], PROFILE[:FORMAT] "
                                                 "(with --random-weights), trio:ROLE[:FORMAT], trio; ROLE=SPEC "
                                                 "names the role"),
               random_weights: bool = typer.Option(False, "--random-weights", help="Seeded random weights of each "
                                                   "profile's (or config.json's) shape: timing only, labelled so"),
               tokens: str = typer.Option("1,4,8", "--tokens", help="New tokens per forward (comma-separated)"),
               contexts: str = typer.Option("128", "--contexts", help="Positions already in the cache "
                                                                      "(comma-separated)"),
               repeats: int = typer.Option(5, "--repeats", help="Timed repeats per point (median kept)"),
               chain: int = typer.Option(8, "--chain", help="Forwards chained in one jit per repeat (dispatch "
                                                            "amortized); 1-2 for multi-second forwards"),
               seed: int = typer.Option(0, "--seed", help="Seed of random weights"),
               out: str = typer.Option("runtime-microbench", "--out", help="Directory for trace.jsonl and "
                                                                                 "microbench.json"),
               chip: Optional[str] = typer.Option(None, "--chip", help="Chip profile of this machine for the trace "
                                                  "header (name or TOML; default: its cached probe)"),
               trio_dir: Optional[Path] = typer.Option(None, "--trio", help="Trio directory for trio specs"),
               distributed: bool = typer.Option(False, "--distributed", help="Start jax.distributed first "
                                                "(SPECCASCADE_* variables or auto-detection; docs/real-models.md)"),
               shard: bool = typer.Option(False, "--shard", help="Split every model over all devices "
                                          "(tensor parallel)"),
               force: bool = typer.Option(False, "--force", help="Replace existing output files (default: refuse)"),
               as_json: bool = typer.Option(False, "--json", help="Print microbench.json")) -> None:
    """Time forwards of real-size models (checkpoints or profile-shaped random weights) for calibration."""
    token_counts = _ints(tokens, "--tokens", 1, MAX_TREE_NODES)
    context_list = _ints(contexts, "--contexts", 0, MAX_CONTEXT)
    if len(set(token_counts)) * len(set(context_list)) > MAX_POINTS:
        raise InputError(f"--tokens x --contexts: {len(set(token_counts)) * len(set(context_list)):,} points per "
                         f"model exceed {MAX_POINTS:,}; time fewer")
    check_count("--repeats", repeats, 1, MAX_REPEATS)
    check_count("--chain", chain, 1, MAX_CHAIN)
    out = prepare_outputs(out, ("trace.jsonl", "microbench.json"), force=force)
    if chip is not None:
        from speccascade.hardware.registry import load_chip

        load_chip(chip)  # an unknown chip fails before any model loads
    pairs = role_specs(specs)
    if distributed:
        from speccascade.runtime.distributed import initialize

        initialize()
    from speccascade.runtime.loading import load_spec
    from speccascade.runtime.microbench import achieved_gb_s, run_microbench

    capacity = max(context_list) + max(token_counts)
    trio = None
    if any(spec.startswith("trio:") for _, spec in pairs):
        from speccascade.runtime.trio import load_default_trio

        trio = load_default_trio(trio_dir, max_len=max(capacity, 512))
    models = {}
    for offset, (role, spec) in enumerate(pairs):
        models[role] = load_spec(spec, random_weights=random_weights, seed=seed + offset,
                                 max_len=None if spec.startswith("trio:") else capacity, trio=trio).model
    if shard:
        from speccascade.runtime.sharding import make_mesh, shard_model

        mesh = make_mesh()
        models = {role: shard_model(model, mesh) for role, model in models.items()}
    trace = out / "trace.jsonl"
    progress = (lambda record: typer.echo(f"{record.role}: T={record.tokens} context={record.context} "
                                          f"{record.ms:.2f} ms", err=True)) if not as_json else None
    records = run_microbench(models, token_counts, context_list, trace, repeats=repeats, chain=chain, chip=chip,
                             command=" ".join(sys.argv), config={"specs": dict(pairs), "seed": seed,
                                                                 "random_weights": random_weights},
                             on_record=progress, force=force)
    rows = [{**record.model_dump(mode="json"), "ms_per_token": record.ms / record.tokens,
             "achieved_gb_s": achieved_gb_s(record)} for record in records]
    document = {"trace": str(trace), "records": rows,
                "random_weights": sorted(role for role, model in models.items() if model.random_weights)}
    from speccascade.writers import write_text

    write_text(out / "microbench.json", dumps(document, indent=1), force=force)
    if as_json:
        typer.echo(dumps(document, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="forward times (ms: median \\[min, max] of repeats, dispatch amortized)")
    for column in ("role", "model", "tokens", "context", "ms", "ms / token", "weights GB/s", "call ms"):
        table.add_column(column)
    for row in rows:
        table.add_row(safe(row["role"]), safe(row["model"]), str(row["tokens"]), str(row["context"]),
                      f"{row['ms']:.2f} [{row['ms_min']:.2f}, {row['ms_max']:.2f}]", f"{row['ms_per_token']:.2f}",
                      f"{row['achieved_gb_s']:.2f}", "-" if row["call_ms"] is None else f"{row['call_ms']:.2f}")
    Console(width=160).print(table)
    if document["random_weights"]:
        typer.echo(f"random weights (timing only): {', '.join(map(one_line, document['random_weights']))}")
    typer.echo(f"trace: {trace}  summary: {out / 'microbench.json'}")
