"""Self-distillation data, training and checkpoints of the decoding heads (every variant trained identically).

Data (:mod:`.data`; seed 002 section 5.1.2, Medusa's self-distillation): prompts are windows of ``prompt_len`` tokens cut at
random from the trio's training split of the standard-library corpus (the same files the trio learned from); the
frozen Target continues each greedily for ``generate`` tokens (batched, with its KV cache). One causal Target
forward over each whole sequence then gives, at every position t, the final hidden state h_t (the heads' input)
and the Target's own prediction argmax p(. | x_<=t) (the labels). Head k at position t learns the Target's
prediction for position t + k + 1, i.e. label[t + k]; Hydra's head k also reads the token x_{t+k} of the sequence
(teacher forcing: the tokens a correct tree path holds). Only positions t >= prompt_len - 1 are used, where every
later token is the Target's own (the regime decoding sees). The evaluation set is made the same way from the
held-out files.

Loss: sum_k w_k CE(head_k(h_t), label[t + k]) with w_k = ``loss_decay``^(k-1) (0.8, Medusa's choice); AdamW,
linear warm-up then cosine decay, global-norm clipping 1.0; the same batches (positions drawn by a generator seeded
from the seed) for every variant. Frozen: the Target and (Hydra) its token embedding.

Checkpoint: ``<trio>/heads/`` holds ``<variant>.safetensors`` per variant (weights under dotted names; the header
carries format ``speccascade-heads``, the variant, its config and the Target checkpoint's sha256), ``data.json``
(what the data were), ``loss_curves.png`` and ``manifest.json`` (every file's sha256, the plan, the seed, the
losses, the timings and the held-out evaluation). :func:`load_heads` trains it on first use (reproducibly from the
seed) with a progress bar, and verifies every hash when loading.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from speccascade.errors import InputError

from ..train import make_optimizer
from .data import Sequences, make_data
from .model import VARIANTS, HeadsConfig, HeadsModel, all_heads, heads_model, init_heads, lm_head_of

HEADS_DIR = "heads"
HEADS_FORMAT = "speccascade-heads"
DATA_FILE = "data.json"
PLOT_FILE = "loss_curves.png"


@dataclass(frozen=True)
class HeadsPlan:
    """Everything that determines trained heads (with the seed and the trio)."""

    heads: int = 3
    prompt_len: int = 32
    generate: int = 96
    train_sequences: int = 384
    eval_sequences: int = 64
    generation_batch: int = 32
    steps: int = 400
    batch: int = 256                 # positions per step
    learning_rate: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    loss_decay: float = 0.8          # head k's loss weight: loss_decay^(k-1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def weights(self) -> list[float]:
        return [self.loss_decay ** k for k in range(self.heads)]


DEFAULT_HEADS_PLAN = HeadsPlan()
QUICK_HEADS_PLAN = HeadsPlan(prompt_len=16, generate=32, train_sequences=48, eval_sequences=16, generation_batch=16,
                             steps=60, batch=128, learning_rate=3e-3, warmup_steps=5)


def head_losses(config: HeadsConfig, params: dict, hidden, labels, inputs) -> jax.Array:
    """Cross-entropy of each head, float32 [H]."""
    logits = all_heads(config, params, hidden, inputs if config.dependent else None)   # [M, H, V]
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0], axis=0)


def train_heads(config: HeadsConfig, params: dict, data: Sequences, plan: HeadsPlan, seed: int,
                progress=None, label: str = "heads") -> tuple[dict, list[list[float]]]:
    """Train ``params`` (returned updated) on ``data``; the loss of every head at every step, [steps][H]."""
    weights = jnp.asarray(plan.weights, jnp.float32)
    frozen = {key: value for key, value in params.items() if key == "embed"}
    trainable = {key: value for key, value in params.items() if key != "embed"}
    optimizer = make_optimizer(plan)  # the trio's schedule: warmup + cosine, clipped AdamW (same fields)
    opt_state = optimizer.init(trainable)

    def loss_fn(trainable, hidden, labels, inputs):
        losses = head_losses(config, {**trainable, **frozen}, hidden, labels, inputs)
        return jnp.sum(weights * losses), losses

    @jax.jit
    def step(trainable, opt_state, hidden, labels, inputs):
        (_, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable, hidden, labels, inputs)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, losses

    pairs = data.positions(config.heads)
    rng = np.random.default_rng(seed)  # the same batches for every variant
    task = progress.add_task(label, total=plan.steps, loss=float("nan")) if progress is not None else None
    history: list[list[float]] = []
    for index in range(plan.steps):
        chosen = pairs[rng.integers(0, pairs.shape[0], size=plan.batch)]
        hidden, labels, inputs = data.batch(chosen, config.heads)
        trainable, opt_state, losses = step(trainable, opt_state, jnp.asarray(hidden), jnp.asarray(labels),
                                            jnp.asarray(inputs))
        history.append([float(x) for x in np.asarray(losses)])
        if progress is not None:
            progress.update(task, advance=1, loss=float(np.dot(plan.weights, history[-1])))
            if not progress.console.is_terminal and (index + 1) % max(1, plan.steps // 5) == 0:
                progress.console.print(f"{label}: step {index + 1}/{plan.steps} losses "
                                       + ", ".join(f"{x:.3f}" for x in history[-1]))
    return {**trainable, **frozen}, history


# --- checkpoints ---------------------------------------------------------------------------------------------------

def heads_dir(trio_dir: str | Path) -> Path:
    return Path(trio_dir) / HEADS_DIR


def save_heads(model: HeadsModel, path: str | Path, target_sha256: str | None) -> str:
    from safetensors.numpy import save_file

    from speccascade.runtime.checkpoint import flatten_params, sha256_file

    flat = flatten_params(model.params)
    header = {"format": HEADS_FORMAT, "variant": model.variant, "name": model.name,
              "config": json.dumps(model.config.to_dict()), "target_sha256": target_sha256 or ""}
    save_file(flat, str(path), metadata=header)
    return sha256_file(path)


def read_heads_file(path: str | Path) -> tuple[HeadsConfig, dict, dict]:
    """(config, params, header) of a heads file; the tensor names and shapes must match the config."""
    from safetensors import SafetensorError, safe_open

    from speccascade.runtime.checkpoint import flatten_params, unflatten_params

    path = Path(path)
    try:
        with safe_open(str(path), framework="np") as handle:
            header = handle.metadata() or {}
            flat = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"heads file {path} is not a readable safetensors file: {err}") from err
    if header.get("format") != HEADS_FORMAT:
        raise InputError(f"heads file {path} is not a {HEADS_FORMAT} file (format={header.get('format')!r})")
    try:
        config = HeadsConfig(**json.loads(header["config"]))
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise InputError(f"heads file {path} has no valid config in its header: {err}") from err
    expected = flatten_params(init_heads(config, None, None), leaf=lambda value: tuple(value.shape))
    found = {key: tuple(value.shape) for key, value in flat.items()}
    if expected != found:
        raise InputError(f"heads file {path} does not match its config ({sorted(set(expected) ^ set(found))[:3]} "
                         "differ or have other shapes)")
    return config, unflatten_params(flat), header


def load_heads(trio, variant: str, trio_dir: str | Path, train_if_missing: bool = True,
               seed: int = 0, plan: HeadsPlan | None = None, progress: bool = True) -> HeadsModel:
    """The trained ``variant`` heads of ``trio`` (loaded from ``trio_dir``): ``<trio_dir>/heads``, trained there for
    every variant first when missing."""
    from speccascade.runtime.checkpoint import read_manifest

    if variant not in VARIANTS:
        raise InputError(f"heads variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    directory = heads_dir(trio_dir)
    if not (directory / "manifest.json").is_file():
        if not train_if_missing:
            raise InputError(f"no trained heads at {directory}; run `speccascade runtime heads train` first")
        train_all(trio, trio_dir, seed=seed, plan=plan, progress=progress)
    manifest = read_manifest(directory)
    file = f"{variant}.safetensors"
    if file not in manifest.get("files", {}):
        raise InputError(f"heads checkpoint {directory} holds no {file}")
    config, params, header = read_heads_file(directory / file)
    target_sha = target_sha256(trio_dir)
    if header.get("target_sha256") and target_sha and header["target_sha256"] != target_sha:
        raise InputError(f"heads file {directory / file} was trained on another Target (sha256 differs)")
    evaluation = manifest.get("metadata", {}).get("evaluation", {}).get(variant, {})
    return heads_model(config, params, name=f"{variant}-heads", accuracy=evaluation.get("marginal"),
                       metadata={"checkpoint": str(directory / file), **manifest.get("metadata", {})})


def target_sha256(trio_dir: str | Path) -> str | None:
    """The Target checkpoint's sha256 from the trio's manifest (None when there is no manifest)."""
    try:
        manifest = json.loads((Path(trio_dir) / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return manifest.get("files", {}).get("target.safetensors")


def train_all(trio, trio_dir: str | Path, seed: int = 0, plan: HeadsPlan | None = None, progress: bool = True,
              variants: tuple[str, ...] = VARIANTS) -> dict:
    """Make the self-distillation data once, train every variant on it identically, evaluate them on the held-out
    sequences, and write the checkpoint (module docstring). Returns the manifest's metadata."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from speccascade.runtime.checkpoint import write_manifest

    from .evaluate import evaluate_heads

    plan = plan or DEFAULT_HEADS_PLAN
    directory = heads_dir(trio_dir)
    directory.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, quiet=not progress)
    started = time.perf_counter()
    console.print(f"heads: self-distillation data from the Target ({plan.train_sequences} + {plan.eval_sequences} "
                  f"prompts of {plan.prompt_len} tokens, {plan.generate} greedy tokens each)")
    train, heldout, described = make_data(trio, plan, seed)
    (directory / DATA_FILE).write_text(json.dumps(described, indent=1))
    lm_head, embed = lm_head_of(trio.target)
    target_sha = target_sha256(trio_dir)
    losses, timings, evaluation, hashes = {}, {"data_s": described["seconds"]}, {}, {}
    columns = (TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not progress) as bar:
        for variant in variants:
            config = HeadsConfig(variant, plan.heads, lm_head.shape[1], lm_head.shape[0])
            params = init_heads(config, lm_head, embed, seed=seed)
            stage = time.perf_counter()
            params, history = train_heads(config, params, train, plan, seed=seed * 1000 + 7, progress=bar,
                                          label=variant)
            timings[f"{variant}_s"] = time.perf_counter() - stage
            losses[variant] = history
            model = heads_model(config, params, name=f"{variant}-heads")
            evaluation[variant] = evaluate_heads(model, heldout)
            hashes[variant] = save_heads(model, directory / f"{variant}.safetensors", target_sha)
    timings["total_s"] = time.perf_counter() - started
    metadata = {"seed": seed, "plan": plan.to_dict(), "variants": list(variants), "data": described,
                "loss_weights": plan.weights, "target_sha256": target_sha, "losses": losses,
                "evaluation": evaluation, "timings_s": timings,
                "environment": {"jax": jax.__version__, "backend": jax.default_backend()}}
    plot_losses(losses, directory / PLOT_FILE)
    write_manifest(directory, [f"{v}.safetensors" for v in variants] + [DATA_FILE, PLOT_FILE], metadata)
    console.print(f"trained {len(variants)} head variants in {timings['total_s']:.0f} s -> {directory}")
    return metadata


def plot_losses(losses: dict[str, list[list[float]]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = len(next(iter(losses.values()))[0])
    fig, axes = plt.subplots(1, heads, figsize=(4 * heads, 3.5), squeeze=False)
    for k in range(heads):
        axis = axes[0, k]
        for variant, history in losses.items():
            values = np.asarray(history)[:, k]
            window = max(1, len(values) // 25)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            axis.plot(values, alpha=0.25)
            axis.plot(np.arange(window - 1, len(values)), smooth, label=variant, color=axis.lines[-1].get_color())
        axis.set(title=f"head {k + 1}: cross-entropy", xlabel="step", ylabel="nats")
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)



def small_trio_plan():
    """A trio between the quick test plan (whose 40-step Target decodes nothing but spaces, so every head is
    trivially right) and the default one (20 minutes here): a 1.8M-parameter Target (d 192, 4 layers, vocabulary
    1024) trained for 500 steps of 16 x 128 tokens; Draft and Tiny barely trained (the heads do not use them).
    A few minutes on 2 CPU cores."""
    from speccascade.runtime.train import StageConfig
    from speccascade.runtime.trio import TrioPlan

    return TrioPlan(
        vocab_size=1024,
        target=dict(d_model=192, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=512, max_len=256),
        draft=dict(d_model=64, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=128, max_len=256),
        tiny=dict(d_embed=32, d_hidden=64, max_len=256),
        target_stage=StageConfig(steps=500, batch=16, seq_len=128, learning_rate=3e-3, warmup_steps=30),
        draft_stage=StageConfig(steps=40, batch=8, seq_len=128, learning_rate=1e-2, warmup_steps=5),
        tiny_stage=StageConfig(steps=30, batch=8, seq_len=64, learning_rate=2e-2, warmup_steps=5),
        eval_windows=16, eval_len=128)
