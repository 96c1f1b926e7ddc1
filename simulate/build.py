"""From a :class:`~speccascade.costmodel.config.PredictConfig` (the same one ``predict`` takes) to a step model.

The strategy, K, k_tiny, alphas, gammas and stage times all come from the config; the acceptance *process* and
the draft-length *policy* are the simulator's own inputs. Defaults reproduce the cost model's assumptions:
i.i.d. with the config's alpha (alpha_tiny inside the vertical cascade, gamma_2|1 for the filtered cascade's target),
positional alphas for the horizontal cascade, the best-first tree for heads, fixed K.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import Prediction, default_k_draft, predict, timings_for
from speccascade.hardware import ChipProfile
from speccascade.errors import InputError

from .empirical import EmpiricalData, empirical_process
from .policies import DraftPolicy, check_policy, is_fixed
from .processes import IID, Markov, Positional
from .steps import Autoregressive, Heads, Speculative, StepModel, Vertical, policy_step_ms
from .tree import TreeAcceptance

PROCESS_KINDS = ("iid", "positional", "markov", "empirical")


def target_alpha(config: PredictConfig, strategy: str) -> float | None:
    """The acceptance the target applies to draft tokens, as the cost model reads it for ``strategy``."""
    if strategy == "filtered" and config.gamma_target_given_draft is not None:
        return config.gamma_target_given_draft
    return config.alpha


def make_process(kind: str, alpha: float | None, *, rho: float = 0.0, alphas=None,
                 empirical: EmpiricalData | None = None, persistent: bool = True, resample: str = "stream",
                 level: str = "--alpha"):
    """One process of ``kind`` (iid | positional | markov | empirical) with mean ``alpha``."""
    if kind not in PROCESS_KINDS:
        raise InputError(f"unknown process {kind!r}; known: {', '.join(PROCESS_KINDS)}")
    if kind != "markov" and rho:
        raise InputError(f"--rho applies to the markov process, not {kind}")
    if kind == "positional":
        if alphas is None:
            raise InputError("the positional process needs --alphas a1,a2,...")
        return Positional(tuple(alphas))
    if kind == "empirical":
        if empirical is None:
            raise InputError("the empirical process needs --empirical FILE (JSON/JSONL of outcomes or betas)")
        return empirical_process(empirical, resample)
    if alpha is None:
        raise InputError(f"the {kind} process needs {level}")
    return IID(alpha) if kind == "iid" else Markov(alpha, rho, persistent)


def _prediction_config(config: PredictConfig, strategy: str, process) -> PredictConfig:
    """Fill the alpha the cost model needs for its timing when a process supplies the acceptance instead."""
    if process is not None and strategy in ("speculative", "vertical", "filtered") and config.alpha is None:
        return config.model_copy(update={"alpha": process.mean_acceptance})
    return config


def _draft_ms_per_position(strategy: str, config: PredictConfig, timings, k: int) -> np.ndarray:
    if strategy == "speculative":
        return np.full(k, float(timings.forward_ms("draft", 1)))
    if strategy == "filtered":
        per = float(timings.forward_ms("tiny", 1)) + float(
            timings.forward_ms("draft", 1, output_columns=float(config.filter_width)))
        return np.full(k, per)
    k_draft = config.k_draft if config.k_draft is not None else default_k_draft(k)
    draft = float(timings.forward_ms("draft", 1)) if k_draft > 0 else 0.0
    tiny = float(timings.forward_ms("tiny", 1)) if k_draft < k else 0.0
    return np.array([draft] * k_draft + [tiny] * (k - k_draft))


def build_step_model(config: PredictConfig, *, strategy: str | None = None, process: Any = None,
                     inner_process: Any = None, policy: DraftPolicy | None = None,
                     chip: ChipProfile | None = None) -> tuple[StepModel, Prediction]:
    """The step model for ``config`` and the cost model's prediction for the same configuration."""
    strategy = strategy or config.resolved_strategy()
    policy = check_policy(policy)
    if not is_fixed(policy) and strategy not in ("speculative", "filtered", "horizontal"):
        raise InputError(f"draft-length policies apply to speculative, filtered and horizontal, not {strategy}")
    if strategy == "heads" and process is not None:
        raise InputError("heads: acceptance comes from --heads-accuracy (the candidate tree); --process applies "
                         "to strategies with draft tokens")
    prediction = predict(_prediction_config(config, strategy, process), strategy, alternatives=False, chip=chip)
    step_ms = prediction.step_ms
    if strategy == "autoregressive":
        return Autoregressive("autoregressive", 1, step_ms), prediction
    if strategy == "heads":
        tree = TreeAcceptance.build(config.heads_accuracy.marginal(), config.tree_nodes)
        return Heads("heads", tree.max_tokens, step_ms, tree=tree), prediction
    if strategy == "vertical":
        outer = process or make_process("iid", config.alpha)
        inner = inner_process or make_process("iid", config.alpha_tiny, level="--alpha-tiny")
        model = Vertical("vertical", config.k * (config.k_tiny + 1) + 1, step_ms, outer=outer, inner=inner,
                         k=config.k, k_tiny=config.k_tiny)
        return model, prediction
    if strategy == "horizontal":
        k = len(config.alphas)
        process = process or Positional(tuple(config.alphas))
    else:
        k = config.k
        process = process or make_process("iid", target_alpha(config, strategy))
    filter_pass = None
    if strategy == "filtered":
        filter_pass = config.gamma_tiny * config.gamma_draft_given_tiny
    table = None
    if not is_fixed(policy):
        timings = timings_for(config, strategy, chip=chip)
        table = policy_step_ms(policy, k, _draft_ms_per_position(strategy, config, timings, k), timings)
    model = Speculative(strategy, k + 1, step_ms, process=process, k=k, policy=policy, filter_pass=filter_pass,
                        step_ms_table=table)
    return model, prediction


def sample_width(model: StepModel) -> int:
    """Numbers sampled per step (sizes the chunks): K for per-position samplers, reviews for the cascade."""
    if isinstance(model, Vertical):
        return model.k + 1
    if isinstance(model, Heads):
        return max(1, model.tree.tree.depth) * 2
    if isinstance(model, Speculative):
        per_position = getattr(model.process, "name", "") == "empirical-betas" or not is_fixed(model.policy)
        return model.k if per_position else 2
    return 1
