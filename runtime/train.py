"""Training loops: next-token cross-entropy (the Target) and distillation by KL (Draft from Target, Tiny from Draft).

Losses, per predicted position, averaged over the batch:
- cross-entropy: -log q(x_{t+1} | x_<=t);
- distillation (DistillSpec, Zhou et al. 2024; the seed's "trained via distillation"): forward KL
  KL(p_teacher || q_student) = sum_v p(v) (log p(v) - log q(v)), teacher run in the same jitted step (no gradient).

Mixed precision: master weights, gradients and optimizer state are float32; the forward's matmuls take bfloat16
inputs with float32 accumulation (``matmul_dtype``; about 2x faster than float32 on a CPU with AVX-512 BF16/AMX).
Inference (acceptance, decoding) runs in float32.

Optimizer: AdamW (b2 = 0.95) with linear warm-up then cosine decay to 10% and global-norm clipping at 1.0 (optax).
Batches are random windows of ``seq_len + 1`` tokens from the training stream, drawn by a numpy Generator seeded
from the run's seed, so a run is reproducible. Every step's loss is kept (for the checkpoint metadata and the plot).

Acceptance of a (draft q, target p) pair on held-out text, both fed the true prefix (teacher forcing): greedy =
share of positions where argmax q == argmax p (a greedy draft token is accepted iff it is the target's argmax);
sampled = mean over positions of beta = sum_v min(p(v), q(v)) (Leviathan et al. 2023: the probability that a token
sampled from q is accepted at temperature 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from speccascade.errors import InputError


@dataclass(frozen=True)
class StageConfig:
    """One training run: ``steps`` of ``batch`` windows of ``seq_len`` tokens."""

    steps: int
    batch: int
    seq_len: int
    learning_rate: float
    warmup_steps: int = 20
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    matmul_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if min(self.steps, self.batch, self.seq_len) < 1 or self.learning_rate <= 0:
            raise InputError(f"training stage needs positive steps, batch, seq_len and learning rate: {self}")

    @property
    def tokens(self) -> int:
        return self.steps * self.batch * self.seq_len


def make_optimizer(stage: StageConfig) -> optax.GradientTransformation:
    """Linear warmup to ``learning_rate`` then cosine decay to a tenth of it over ``steps``, global-norm clipping
    at ``clip_norm``, AdamW (b1 0.9, b2 0.95, ``weight_decay``). Any plan with those fields works (the heads'
    ``HeadsPlan`` too)."""
    warmup = min(stage.warmup_steps, max(stage.steps - 1, 1))
    schedule = optax.warmup_cosine_decay_schedule(0.0, stage.learning_rate, warmup, max(stage.steps, warmup + 1),
                                                  end_value=0.1 * stage.learning_rate)
    return optax.chain(optax.clip_by_global_norm(stage.clip_norm),
                       optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=stage.weight_decay))


def sample_windows(tokens: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``batch`` random windows of ``length`` consecutive tokens, int32 [batch, length]."""
    if tokens.size < length + 1:
        raise InputError(f"training text has {tokens.size} tokens, fewer than one window of {length}")
    starts = rng.integers(0, tokens.size - length, size=batch)
    return np.stack([tokens[s:s + length] for s in starts]).astype(np.int32)


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))


def kl_divergence(teacher_logits: jax.Array, student_logits: jax.Array) -> jax.Array:
    """mean over positions of KL(p_teacher || q_student)."""
    logp = jax.nn.log_softmax(teacher_logits, axis=-1)
    logq = jax.nn.log_softmax(student_logits, axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1))


Teacher = tuple[Callable[[object, jax.Array], jax.Array], object]  # (logits_fn(params, tokens), params)


def with_matmul_dtype(params: dict, dtype) -> dict:
    """Cast matmul weights (``kernel``/``embedding`` leaves) to ``dtype``; norms and biases stay float32.
    The models' matmuls take their input in the weight's dtype and accumulate in float32."""
    return {key: (with_matmul_dtype(value, dtype) if isinstance(value, dict)
                  else value.astype(dtype) if key in ("kernel", "embedding") else value)
            for key, value in params.items()}


def _logits_fn(module: nnx.Module, matmul_dtype=jnp.float32) -> tuple[Callable, object]:
    graphdef, state = nnx.split(module)

    def logits(params, tokens):
        return nnx.merge(graphdef, with_matmul_dtype(params, matmul_dtype))(tokens)[0]

    return logits, nnx.to_pure_dict(state)


def train_model(module: nnx.Module, train_tokens: np.ndarray, stage: StageConfig, seed: int,
                teacher: nnx.Module | None = None, progress=None, label: str = "train") -> list[float]:
    """Train ``module`` in place (cross-entropy, or KL to ``teacher``); returns the loss of every step.

    ``progress``: an optional ``rich.progress.Progress``; one task named ``label`` advances per step.
    """
    dtype = jnp.dtype(stage.matmul_dtype)
    student_fn, params = _logits_fn(module, dtype)
    optimizer = make_optimizer(stage)
    opt_state = optimizer.init(params)
    teacher_fn, teacher_params = _logits_fn(teacher, dtype) if teacher is not None else (None, None)

    def loss_fn(params, teacher_params, window):
        inputs = window[:, :-1]
        logits = student_fn(params, inputs)
        if teacher_fn is None:
            return cross_entropy(logits, window[:, 1:])
        return kl_divergence(jax.lax.stop_gradient(teacher_fn(teacher_params, inputs)), logits)

    @jax.jit
    def step(params, opt_state, teacher_params, window):
        loss, grads = jax.value_and_grad(loss_fn)(params, teacher_params, window)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    task = progress.add_task(label, total=stage.steps, loss=float("nan")) if progress is not None else None
    losses: list[float] = []
    for _ in range(stage.steps):
        window = jnp.asarray(sample_windows(train_tokens, stage.batch, stage.seq_len + 1, rng))
        params, opt_state, loss = step(params, opt_state, teacher_params, window)
        losses.append(float(loss))
        if progress is not None:
            progress.update(task, advance=1, loss=losses[-1])
            if not progress.console.is_terminal and len(losses) % max(1, stage.steps // 10) == 0:
                progress.console.print(f"{label}: step {len(losses)}/{stage.steps} loss {losses[-1]:.4f}")
    state = nnx.state(module)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(module, state)
    return losses


def heldout_windows(tokens: np.ndarray, count: int, length: int) -> np.ndarray:
    """``count`` evenly spaced, non-overlapping windows (deterministic), int32 [count, length]."""
    count = max(1, min(count, tokens.size // length))
    starts = np.linspace(0, tokens.size - length, count).astype(np.int64)
    return np.stack([tokens[s:s + length] for s in starts]).astype(np.int32)


def lm_logits(lm, windows: np.ndarray, batch: int = 8) -> np.ndarray:
    """Logits of a CausalLM over each whole window (its causal forward without a cache), float32 [N, T, V]."""
    return np.concatenate([np.asarray(lm.forward(lm.params, None, jnp.asarray(windows[i:i + batch]))[0])
                           for i in range(0, len(windows), batch)])


def heldout_loss(logits: np.ndarray, windows: np.ndarray) -> float:
    """Cross-entropy in nats per token of the next token in each window."""
    return float(cross_entropy(jnp.asarray(logits[:, :-1]), jnp.asarray(windows[:, 1:])))


def acceptance(draft_logits: np.ndarray, target_logits: np.ndarray) -> dict[str, float]:
    """Greedy (argmax agreement) and sampled (beta = sum min(p, q)) acceptance of a draft against a target."""
    q = jax.nn.softmax(jnp.asarray(draft_logits), axis=-1)
    p = jax.nn.softmax(jnp.asarray(target_logits), axis=-1)
    greedy = jnp.mean(jnp.argmax(draft_logits, -1) == jnp.argmax(target_logits, -1))
    beta = jnp.mean(jnp.sum(jnp.minimum(p, q), axis=-1))
    return {"greedy": float(greedy), "sampled": float(beta), "positions": int(np.prod(draft_logits.shape[:-1]))}


def timed(fn: Callable, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
