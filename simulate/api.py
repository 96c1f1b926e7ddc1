"""``simulate(config, ...)``: the Python entry point (the CLI calls it too)."""

from __future__ import annotations

from typing import Any

from speccascade.costmodel.config import PredictConfig
from speccascade.hardware import ChipProfile

from . import engine
from .build import build_step_model, sample_width
from .policies import DraftPolicy
from .result import SimulationResult, summarise


def simulate(config: PredictConfig, *, strategy: str | None = None, process: Any = None, inner_process: Any = None,
             policy: DraftPolicy | None = None, steps: int = 1_000_000, seed: int = 0, tokens: int = 256,
             max_requests: int = 200_000, progress: bool | None = None, threads: int | None = None,
             chip: ChipProfile | None = None) -> SimulationResult:
    """Monte-Carlo simulation of ``config``'s strategy (default ``config.resolved_strategy()``).

    ``process``: the target's acceptance process (default: i.i.d. with the config's alpha; positional alphas for
    horizontal); ``inner_process``: Tiny -> Draft acceptance inside the vertical cascade (default i.i.d.
    alpha_tiny); ``policy``: draft-length policy (default fixed K); ``steps``: target steps to simulate (rounded up
    to whole rows of lanes); ``tokens``: the N of N-token request latency; ``seed``: everything is reproducible
    from it.
    """
    model, prediction = build_step_model(config, strategy=strategy, process=process, inner_process=inner_process,
                                         policy=policy, chip=chip)
    raw = engine.run(model, steps, seed, tokens_per_request=tokens, width=sample_width(model),
                     max_requests=max_requests, progress=progress, threads=threads)
    warnings = []
    if not prediction.fits:
        warnings.append("the models do not fit the chip (see `speccascade predict`); times assume they do")
    return summarise(raw, model, prediction, seed=seed, tokens_per_request=tokens, closed=model.closed_form(),
                     warnings=warnings)
