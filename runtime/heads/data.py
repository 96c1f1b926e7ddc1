"""The heads' self-distillation data (seed 002 section 5.1.2, Medusa's recipe): corpus prompts, the frozen Target's
greedy continuations, and one causal Target forward per sequence for the hidden states and labels.

Prompts are windows of ``prompt_len`` tokens cut at random from the trio's corpus split (training files for the
training set, held-out files for the evaluation set); the Target continues each greedily for ``generate`` tokens
(batched, KV cache); at every position t the final hidden state h_t is a head's input and the Target's argmax
p(. | x_<=t) its label (head k at t learns label[t + k]). Only positions t >= prompt_len - 1 are used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from speccascade.errors import InputError

if TYPE_CHECKING:
    from .train import HeadsPlan


@dataclass(frozen=True)
class Sequences:
    """Target-continued sequences and what one causal Target forward says about them."""

    tokens: np.ndarray        # int32 [S, T]
    hidden: np.ndarray        # float32 [S, T, d]: final-normed hidden state at each position
    labels: np.ndarray        # int32 [S, T]: argmax of the Target's logits at each position (its next-token guess)
    prompt_len: int

    def positions(self, heads: int) -> np.ndarray:
        """(sequence, t) pairs usable for every head: t >= prompt_len - 1 and t + heads < T, int64 [M, 2]."""
        length = self.tokens.shape[1]
        ts = np.arange(self.prompt_len - 1, length - heads)
        rows = np.repeat(np.arange(self.tokens.shape[0]), ts.size)
        return np.stack([rows, np.tile(ts, self.tokens.shape[0])], axis=1)

    def batch(self, pairs: np.ndarray, heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hidden [M, d], labels [M, H] = label[t + k], inputs [M, H] = x[t + k] for k = 1..H)."""
        rows, ts = pairs[:, 0], pairs[:, 1]
        offsets = np.arange(1, heads + 1)
        labels = self.labels[rows[:, None], ts[:, None] + offsets[None, :]]
        inputs = self.tokens[rows[:, None], ts[:, None] + offsets[None, :]]
        return self.hidden[rows, ts], labels.astype(np.int32), inputs.astype(np.int32)


def corpus_prompts(tokenizer, files: tuple[str, ...], corpus, count: int, length: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``count`` random windows of ``length`` tokens from random ``files`` of ``corpus`` (each file encoded once,
    an end-of-text token first as in training), int32 [count, length]."""
    order = rng.permutation(len(files))
    prompts: list[np.ndarray] = []
    per_file = max(1, -(-count // max(1, min(len(files), 64))))   # ceil: enough even if a file is too short
    for index in np.concatenate([order, order]):                    # a second pass if files were too short
        ids = np.asarray([tokenizer.eot_id] + tokenizer.encode(corpus.texts((files[index],))[0]), np.int32)
        if ids.size <= length:
            continue
        for start in rng.integers(0, ids.size - length, size=per_file):
            prompts.append(ids[start:start + length])
        if len(prompts) >= count:
            break
    if len(prompts) < count:
        raise InputError(f"the corpus gave only {len(prompts)} prompts of {length} tokens, {count} needed")
    return np.stack(prompts[:count])


def continue_greedily(target, prompts: np.ndarray, new: int, batch: int) -> np.ndarray:
    """The Target's greedy continuation of every prompt by ``new`` tokens (batched, KV cache), int32 [S, P + new]."""
    length = prompts.shape[1] + new

    @jax.jit
    def run(params, prompt):
        cache = target.init_cache(prompt.shape[0], length)
        logits, cache = target.forward(params, cache, prompt)
        first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)

        def body(carry, _):
            token, cache = carry
            logits, cache = target.forward(params, cache, token[:, None])
            nxt = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
            return (nxt, cache), token

        (_, _), tokens = jax.lax.scan(body, (first, cache), None, length=new)
        return jnp.concatenate([prompt, tokens.T], axis=1)

    out = []
    for start in range(0, prompts.shape[0], batch):
        chunk = prompts[start:start + batch]
        pad = batch - chunk.shape[0]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)]) if pad else chunk
        out.append(np.asarray(run(target.params, jnp.asarray(padded)))[:chunk.shape[0]])
    return np.concatenate(out).astype(np.int32)


def annotate(target, tokens: np.ndarray, prompt_len: int, batch: int = 16) -> Sequences:
    """Hidden states and the Target's argmax at every position of ``tokens`` (one causal forward each)."""
    @jax.jit
    def run(params, chunk):
        logits, hidden, _ = target.forward_hidden(params, None, chunk)
        return hidden, jnp.argmax(logits, axis=-1).astype(jnp.int32)

    hidden, labels = [], []
    for start in range(0, tokens.shape[0], batch):
        h, y = run(target.params, jnp.asarray(tokens[start:start + batch]))
        hidden.append(np.asarray(h, np.float32))
        labels.append(np.asarray(y))
    return Sequences(tokens, np.concatenate(hidden), np.concatenate(labels), prompt_len)


def make_sequences(trio, plan: HeadsPlan, seed: int, split: str) -> tuple[Sequences, np.ndarray]:
    """The ``split`` ("train" or "heldout") sequences and their prompts; each split draws its prompts from its own
    generator (seeded from ``seed`` and the split), so the held-out set can be remade alone."""
    from speccascade.runtime.corpus import stdlib_corpus

    trio_plan = trio.metadata.get("plan", {})
    corpus = stdlib_corpus(max_files=trio_plan.get("corpus_max_files"))
    train_files, heldout_files = corpus.split(trio_plan.get("heldout_every", 20))
    files, count = (train_files, plan.train_sequences) if split == "train" else (heldout_files, plan.eval_sequences)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    prompts = corpus_prompts(trio.tokenizer, files, corpus, count, plan.prompt_len, rng)
    tokens = continue_greedily(trio.target, prompts, plan.generate, plan.generation_batch)
    return annotate(trio.target, tokens, plan.prompt_len), prompts


def make_data(trio, plan: HeadsPlan, seed: int) -> tuple[Sequences, Sequences, dict]:
    """(training sequences, held-out sequences, a description of both) for ``trio``'s Target."""
    started = time.perf_counter()
    described: dict = {}
    sets = []
    for split in ("train", "heldout"):
        data, prompts = make_sequences(trio, plan, seed, split)
        sets.append(data)
        generated = data.tokens[:, plan.prompt_len:]
        described[split] = {"sequences": int(data.tokens.shape[0]), "prompt_tokens": plan.prompt_len,
                            "generated_tokens": plan.generate, "positions": int(data.positions(plan.heads).shape[0]),
                            "distinct_generated_tokens": int(np.unique(generated).size),
                            "repeated_4grams": _repetition(generated)}
    described["heldout_prompts"] = sets[1].tokens[:, :plan.prompt_len].tolist()
    described["seconds"] = time.perf_counter() - started
    described["how"] = ("prompts: random windows of the trio's corpus split (train / held-out files); continuation: "
                        "the Target's greedy decoding; labels: the Target's argmax at each position (one causal "
                        "forward over the whole sequence)")
    return sets[0], sets[1], described


def _repetition(tokens: np.ndarray) -> float:
    """Share of generated 4-grams that already occurred earlier in the same sequence (how loopy the text is)."""
    repeated = total = 0
    for row in tokens:
        seen = set()
        for i in range(len(row) - 3):
            gram = tuple(row[i:i + 4])
            repeated += gram in seen
            total += 1
            seen.add(gram)
    return repeated / max(total, 1)
