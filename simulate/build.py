"""From a :class:`~speccascade.costmodel.config.PredictConfig` (the same one ``predict`` takes) to a step model.

The strategy, K, k_tiny, alphas, gammas and stage times all come from the config; the acceptance *process* and
the draft-length *policy* are the simulator's own inputs. Defaults reproduce the cost model's assumptions:
i.i.d. with the config's alpha (alpha_tiny inside the vertical cascade, gamma_2|1 for the filtered cascade's target),
positional alphas for the horizontal cascade, the best-first tree for heads, fixed K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from speccascade import strategies as registry
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import Prediction, evaluate, predict, timings_for
from speccascade.errors import InputError
from speccascade.hardware import ChipProfile

from .empirical import EmpiricalData, empirical_process
from .policies import DraftPolicy, check_policy, is_fixed
from .processes import IID, Markov, Positional
from .steps import Autoregressive, Heads, Speculative, StepModel, Vertical, VerticalBudget, policy_step_ms
from .tree import TreeAcceptance

PROCESS_KINDS = ("iid", "positional", "markov", "empirical")


def target_alpha(config: PredictConfig, strategy: str) -> float | None:
    """The acceptance the target applies to draft tokens, as the cost model reads it for ``strategy``: the
    parameter of the registry's pair into the target (``gamma_total``: the filtered cascade's gamma_2|1 part)."""
    parameters = {pair.parameter for pair in registry.get(strategy).pairs if pair.verifier == "target"}
    if "gamma_total" in parameters and config.gamma_total is not None:  # measured: the filter is inside it
        return config.gamma_total
    if "gamma_total" in parameters and config.gamma_target_given_draft is not None:
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


@dataclass(frozen=True)
class Request:
    """What a simulator implementation gets: the config, the cost model's prediction and evaluation of it, the
    acceptance processes (None: the cost model's i.i.d. assumption) and the draft-length policy."""

    config: PredictConfig
    strategy: str
    prediction: Prediction
    process: Any
    inner_process: Any
    policy: DraftPolicy
    chip: ChipProfile | None

    def outer(self) -> Any:
        return self.process or make_process("iid", target_alpha(self.config, self.strategy))

    def inner(self) -> Any:
        return self.inner_process or make_process("iid", self.config.alpha_tiny, level="--alpha-tiny")

    def evaluation(self) -> dict[str, Any]:
        return evaluate(self.strategy, self.config, timings_for(self.config, self.strategy, chip=self.chip))


@dataclass(frozen=True)
class SimulatorImpl:
    """One strategy in the simulator: ``build(request) -> StepModel``; ``policies``: takes draft-length policies."""

    build: Callable[[Request], StepModel]
    policies: bool = False


SIMULATOR: registry.Implementations[SimulatorImpl] = registry.Implementations("simulator")


def _autoregressive(request: Request) -> StepModel:
    return Autoregressive(request.strategy, 1, request.prediction.step_ms)


def _heads(request: Request) -> StepModel:
    config = request.config
    tree = TreeAcceptance.build(config.heads_accuracy.marginal(), config.tree_nodes)
    return Heads(request.strategy, tree.max_tokens, request.prediction.step_ms, tree=tree)


def _vertical(request: Request) -> StepModel:
    config = request.config
    return Vertical(request.strategy, config.k * (config.k_tiny + 1) + 1, request.prediction.step_ms,
                    outer=request.outer(), inner=request.inner(), k=config.k, k_tiny=config.k_tiny)


def _vertical_budget(request: Request) -> StepModel:
    config, result = request.config, request.evaluation()
    return VerticalBudget(request.strategy, config.k + 1, request.prediction.step_ms, outer=request.outer(),
                          inner=request.inner(), k=config.k, k_tiny=config.k_tiny,
                          review_ms=float(np.asarray(result["review_ms"]).reshape(-1)[0]),
                          verify_ms=float(np.asarray(result["fixed_ms"]).reshape(-1)[0]))


def _drafting(request: Request, k: int, process: Any, filter_pass: float | None, per_position) -> StepModel:
    """One drafting level over k positions (speculative, filtered, horizontal), with an optional policy table."""
    table = None
    if not is_fixed(request.policy):
        timings = timings_for(request.config, request.strategy, chip=request.chip)
        table = policy_step_ms(request.policy, k, per_position(timings), timings)
    return Speculative(request.strategy, k + 1, request.prediction.step_ms, process=process, k=k,
                       policy=request.policy, filter_pass=filter_pass, step_ms_table=table)


def _speculative(request: Request) -> StepModel:
    k = request.config.k
    return _drafting(request, k, request.outer(), None,
                     lambda timings: np.full(k, float(timings.forward_ms("draft", 1))))


def _filtered(request: Request) -> StepModel:
    config, k = request.config, request.config.k

    def per_position(timings):
        return np.full(k, float(timings.forward_ms("tiny", 1)) + float(
            timings.forward_ms("draft", 1, output_columns=float(config.filter_width))))

    filter_pass = None if config.gamma_total is not None else config.gamma_tiny * config.gamma_draft_given_tiny
    return _drafting(request, k, request.outer(), filter_pass, per_position)


def _horizontal(request: Request) -> StepModel:
    config = request.config
    k = len(config.alphas)
    k_draft = config.k_draft if config.k_draft is not None else registry.default_k_draft(k)

    def per_position(timings):
        draft = float(timings.forward_ms("draft", 1)) if k_draft > 0 else 0.0
        tiny = float(timings.forward_ms("tiny", 1)) if k_draft < k else 0.0
        return np.array([draft] * k_draft + [tiny] * (k - k_draft))

    return _drafting(request, k, request.process or Positional(tuple(config.alphas)), None, per_position)


SIMULATOR.register("autoregressive", SimulatorImpl(_autoregressive))
SIMULATOR.register("speculative", SimulatorImpl(_speculative, policies=True))
SIMULATOR.register("vertical", SimulatorImpl(_vertical))
SIMULATOR.register("vertical-budget", SimulatorImpl(_vertical_budget))
SIMULATOR.register("filtered", SimulatorImpl(_filtered, policies=True))
SIMULATOR.register("horizontal", SimulatorImpl(_horizontal, policies=True))
SIMULATOR.register("heads", SimulatorImpl(_heads))


def _prediction_config(config: PredictConfig, strategy: str, process) -> PredictConfig:
    """Fill the alpha the cost model needs for its timing when a process supplies the acceptance instead."""
    parameters = {pair.parameter for pair in registry.get(strategy).pairs}
    if process is not None and parameters & {"alpha", "gamma_total"} and config.alpha is None:
        return config.model_copy(update={"alpha": process.mean_acceptance})
    return config


def build_step_model(config: PredictConfig, *, strategy: str | None = None, process: Any = None,
                     inner_process: Any = None, policy: DraftPolicy | None = None,
                     chip: ChipProfile | None = None) -> tuple[StepModel, Prediction]:
    """The step model for ``config`` and the cost model's prediction for the same configuration."""
    strategy = registry.canonical(strategy or config.resolved_strategy())
    implementation = SIMULATOR.get(strategy)
    policy = check_policy(policy)
    if not is_fixed(policy) and not implementation.policies:
        raise InputError(f"draft-length policies apply to {', '.join(n for n in SIMULATOR.names() if SIMULATOR.get(n).policies)}, "
                         f"not {strategy}")
    if "heads" in registry.get(strategy).roles and process is not None:
        raise InputError("heads: acceptance comes from --heads-accuracy (the candidate tree); --process applies "
                         "to strategies with draft tokens")
    config = _prediction_config(config, strategy, process)
    prediction = predict(config, strategy, alternatives=False, chip=chip)
    request = Request(config, strategy, prediction, process, inner_process, policy, chip)
    return implementation.build(request), prediction


def sample_width(model: StepModel) -> int:
    """Numbers sampled per step (sizes the chunks): K for per-position samplers, reviews for the cascade."""
    if isinstance(model, (Vertical, VerticalBudget)):
        return model.k + 1
    if isinstance(model, Heads):
        return max(1, model.tree.tree.depth) * 2
    if isinstance(model, Speculative):
        per_position = getattr(model.process, "name", "") == "empirical-betas" or not is_fixed(model.policy)
        return model.k if per_position else 2
    return 1
