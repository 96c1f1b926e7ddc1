"""Measure the heads strategy per variant and tree size against autoregressive decoding, next to the predictions.

Decoding: greedy, on the held-out prompts the evaluation used (the first ``prompts`` of them), ``new_tokens`` new
tokens each, ``rounds`` times over the prompts; round-robin per prompt (autoregressive, then every variant at every
tree size), so machine load affects all alike. Every decoder compiles once and runs one warm-up generation first. Measured per (variant, N):
mean tokens per step (= accepted nodes + 1, what Spec-Bench calls mean accepted tokens), ms/token (median over
prompts) and the speedup (median over prompts of AR ms / heads ms, paired). Each variant's steps go to
``trace-<variant>.jsonl`` (the runtime's trace schema: strategy ``heads``, knob ``tree_nodes``, pair
``heads->target`` with the accept/reject sequence along the accepted path).

Predictions per (variant, N), from the held-out evaluation (:mod:`.evaluate`) and measured forward times:

* accepted tokens: the cost model's 1 + sum of node values over the measured marginal accuracies (independent
  heads: ``predict --heads-accuracy``), the same tree valued with the measured conditional accuracies, and the
  replay of the tree on the held-out ranks; and the same three computed on the text this bench decoded (the
  prompts' greedy continuations, ``bench_text_*``), which separates a difference between the held-out set and the
  decoded text from what the tree model itself assumes;
* speedup: the cost model's E / R with R = (t_T(N + 1) + t_heads(N)) / t_T(1) (its ``--verify-cost``), t_T from
  the forward microbenchmark (8 chained forwards per jit, fastest of 9: this machine is shared) and t_heads the
  heads' proposal for that tree (same method). Host overhead (sampling, tree walk, KV compaction, dispatch) is not in the prediction.
"""

from __future__ import annotations

import datetime
import statistics
import time
import uuid
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from speccascade.costmodel.config import HeadsAccuracy, PredictConfig
from speccascade.costmodel.predict import evaluate as predict_evaluate
from speccascade.traces import Header, TraceWriter
from speccascade.writers import output_dir

from ..bench import chip_for_header, hardware_info, model_infos, step_record
from ..decoding import Autoregressive, Decoder
from ..decoding.heads import HeadsTree
from ..microbench import time_forwards

SIZES = (1, 2, 4, 8, 16, 32, 64)


def heads_ms(heads, tree, d_model: int, repeats: int = 9, chain: int = 8) -> float:
    """Fastest ms of one ``propose`` for ``tree`` over ``repeats`` (``chain`` chained calls per jit, each fed the
    previous output): the least disturbed sample on a shared machine."""
    @jax.jit
    def chained(params, hidden):
        def body(step, carry):
            hidden, total = carry
            tokens = heads.propose(params, hidden, (total + step) % heads.vocab_size, tree)
            return hidden + 1e-6 * jnp.sum(tokens), total + jnp.sum(tokens)
        return jax.lax.fori_loop(0, chain, body, (hidden, jnp.zeros((), jnp.int32)))

    hidden = jnp.ones((d_model,), jnp.float32)
    jax.block_until_ready(chained(heads.params, hidden))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(chained(heads.params, hidden))
        samples.append((time.perf_counter() - start) * 1e3 / chain)
    return min(samples)


def predicted(evaluation: dict, nodes: int, verify_cost: float) -> dict[str, float]:
    """The cost model's prediction for one variant and tree size (abstract mode, --verify-cost)."""
    accuracy = HeadsAccuracy(cumulative=False, heads=evaluation["marginal"], source="held-out evaluation")
    config = PredictConfig(strategy="heads", heads_accuracy=accuracy, tree_nodes=nodes, verify_cost=verify_cost)
    result = predict_evaluate("heads", config)
    return {"expected_tokens": float(result["expected_tokens"]), "speedup": float(result["speedup"]),
            "verify_cost": verify_cost}


def bench_heads(trio, heads: dict[str, object], prompts: Sequence[Sequence[int]], sizes: Sequence[int] = SIZES,
                new_tokens: int = 64, out: str | Path | None = None, progress: bool = True, seed: int = 0,
                rounds: int = 2, force: bool = True) -> dict:
    """Measure (module docstring); ``heads`` maps variant -> HeadsModel (with its held-out evaluation in
    ``metadata["evaluation"][variant]``). Returns a JSON-ready dict."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    target = trio.target
    prompts = [list(map(int, p)) for p in prompts]
    longest = max(len(p) for p in prompts)
    capacity = longest + new_tokens + max(sizes) + 2
    decoders = {("autoregressive", 0): Decoder(Autoregressive(target), capacity)}
    for variant, model in heads.items():
        for nodes in sizes:
            decoders[(variant, nodes)] = Decoder(HeadsTree(model, target, nodes), capacity)
    writers = {}
    if out is not None:
        out = Path(out)
        output_dir(out)
        hardware = hardware_info()
        chip, notes = chip_for_header(None, hardware)
        for variant, model in heads.items():
            infos, more = model_infos({"target": target})
            header = Header(run_id=uuid.uuid4().hex[:12],
                            created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                            command="speccascade runtime heads bench", chip=chip, hardware=hardware, models=infos,
                            notes=notes + more + [f"heads: {variant} ({model.param_bytes} bytes of head weights)"],
                            config={"variant": variant, "sizes": list(sizes), "new_tokens": new_tokens,
                                    "prompt_tokens": [len(p) for p in prompts], "capacity": capacity,
                                    "sampling": "greedy",
                                    "strategies": {f"heads:tree_nodes={n}": decoders[(variant, n)].strategy.config()
                                                   for n in sizes}})
            writers[variant] = TraceWriter(out / f"trace-{variant}.jsonl", header, force=force)
    ms: dict[tuple, list[float]] = {key: [] for key in decoders}
    steps: dict[tuple, list[int]] = {key: [] for key in decoders}
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("compile + warm-up", total=len(decoders))
        for decoder in decoders.values():
            decoder.generate(prompts[0], new_tokens, seed=seed)
            bar.advance(task)
        task = bar.add_task("timed generations", total=rounds * len(prompts) * len(decoders))
        decoded: dict[int, tuple[int, ...]] = {}
        order = [(i, p) for _ in range(rounds) for i, p in enumerate(prompts)]
        for repeat, (index, prompt) in enumerate(order):
            for key, decoder in decoders.items():
                generation = decoder.generate(prompt, new_tokens, seed=seed)
                ms[key].append(generation.decode_ms / new_tokens)
                if key[0] == "autoregressive":
                    decoded[index] = generation.tokens
                usable = generation.steps[:-1] or generation.steps  # the last step may be cut at the length limit
                steps[key] += [step.emitted for step in usable]
                if key[0] in writers:
                    context = len(prompt)
                    for stats in generation.steps:
                        writers[key[0]].write(step_record("heads", {"tree_nodes": key[1]}, "fused", repeat,
                                                          context, stats))
                        context += stats.emitted
                bar.advance(task)
        for writer in writers.values():
            writer.close()
        context = longest + new_tokens // 2
        task = bar.add_task("forward microbenchmark", total=len(sizes) + 1)
        counts = sorted({1, *(n + 1 for n in sizes)})
        records = time_forwards(target, "target", counts, [context], capacity, repeats=9,
                                on_record=lambda r: bar.advance(task))
        forward = {record.tokens: record.ms_min for record in records}  # least disturbed: this machine is shared
    heads_time = {variant: {n: heads_ms(model, decoders[(variant, n)].strategy.tree, model.config.d_model)
                            for n in sizes} for variant, model in heads.items()}
    ar_ms = ms[("autoregressive", 0)]
    # the text decoding really saw (the bench prompts' greedy continuations): what its own ranks predict
    decoded_text = [list(prompts[i]) + list(decoded[i]) for i in range(len(prompts))]
    result = {"ar_ms_per_token": statistics.median(ar_ms), "new_tokens": new_tokens, "prompts": len(prompts),
              "rounds": rounds, "sizes": list(sizes), "forward_ms": {str(k): v for k, v in forward.items()},
              "variants": {}}
    for variant, model in heads.items():
        evaluation = model.metadata.get("evaluation", {}).get(variant)
        rows = {}
        for nodes in sizes:
            key = (variant, nodes)
            verify_cost = (forward[nodes + 1] + heads_time[variant][nodes]) / forward[1]
            row = {"mean_tokens_per_step": float(np.mean(steps[key])), "steps": len(steps[key]),
                   "depth": decoders[key].strategy.tree.depth,
                   "ms_per_token": statistics.median(ms[key]),
                   "speedup": statistics.median([a / b for a, b in zip(ar_ms, ms[key])]),
                   "speedup_range": [min(a / b for a, b in zip(ar_ms, ms[key])),
                                     max(a / b for a, b in zip(ar_ms, ms[key]))],
                   "heads_ms": heads_time[variant][nodes], "verify_ms": forward[nodes + 1]}
            if evaluation is not None:
                prediction = predicted(evaluation, nodes, verify_cost)
                row.update({"predicted_accepted": prediction["expected_tokens"],
                            "predicted_conditional": evaluation["predicted_conditional"][nodes],
                            "replay": evaluation["replay"][nodes],
                            "predicted_speedup": prediction["speedup"], "verify_cost": verify_cost})
            rows[str(nodes)] = row
        best = max(rows, key=lambda n: rows[n]["speedup"])
        result["variants"][variant] = {"sizes": rows, "best_tree_nodes": int(best),
                                       "top1": [row[0] for row in evaluation["cumulative"]] if evaluation else None}
    return complete(result, target, heads, prompts, decoded_text)


def complete(result: dict, target, heads: dict, prompts, decoded_text=None) -> dict:
    """Add to a bench result what the decoded text and the timings imply (idempotent):

    * per (variant, N) from the decoded text itself (the prompts' greedy continuations, remade with the Target when
      not given): ``bench_text_predicted`` / ``bench_text_conditional`` / ``bench_text_replay`` (the per-position
      predictions of :mod:`.evaluate` on that text) and ``walk_replay`` (:func:`.evaluate.walk_replay`: the
      decoding walk over its ranks, which weighs positions as decoding visits them);
    * the step time split: ``step_ms`` (ms/token x tokens/step), ``forwards_ms`` (t_T(N + 1) + t_heads) and
      ``host_ms`` (the rest: verification, KV compaction, buffer updates, dispatch, the statistics copy), the same
      for autoregressive decoding, and ``predicted_speedup_host``: the cost model's speedup with a per-step host
      time equal to autoregressive decoding's (what a calibrated chip's step overhead adds)."""
    from .evaluate import evaluate_heads, walk_replay
    from .data import annotate

    prompts = [list(map(int, p)) for p in prompts]
    width = max(len(p) for p in prompts)
    new_tokens = result["new_tokens"]
    if decoded_text is None:
        from ..decoding import Autoregressive, Decoder

        decoder = Decoder(Autoregressive(target), width + new_tokens + 1)
        decoded_text = [p + list(decoder.generate(p, new_tokens).tokens) for p in prompts]
    same = all(len(p) == width for p in prompts)
    forward = {int(k): v for k, v in result["forward_ms"].items()}
    ar_step = result["ar_ms_per_token"]
    ar_host = max(ar_step - forward[1], 0.0)
    result["ar_step_ms"], result["ar_host_ms"] = ar_step, ar_host
    for variant, entry in result["variants"].items():
        model = heads[variant]
        if same:
            texts = np.asarray(decoded_text, np.int32)
            per_position = evaluate_heads(model, annotate(target, texts, width))
            walk = walk_replay(model, annotate(target, texts, width - 1), new_tokens)
            entry["bench_text"] = {key: per_position[key] for key in ("positions", "cumulative", "marginal",
                                                                      "conditional")}
        for nodes, row in entry["sizes"].items():
            n = int(nodes)
            if same:
                row.update({"bench_text_predicted": per_position["predicted_independent"][n],
                            "bench_text_conditional": per_position["predicted_conditional"][n],
                            "bench_text_replay": per_position["replay"][n], "walk_replay": walk[n]})
            step = row["ms_per_token"] * row["mean_tokens_per_step"]
            forwards = row["verify_ms"] + row["heads_ms"]
            row.update({"step_ms": step, "forwards_ms": forwards, "host_ms": step - forwards})
            if "predicted_accepted" in row:
                row["predicted_speedup_host"] = (row["predicted_accepted"] * (forward[1] + ar_host)
                                                 / (forwards + ar_host))
    return result
