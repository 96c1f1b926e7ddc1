"""The optimizer's choices as config files: the one TOML format ``predict``, ``simulate`` and ``runtime bench``
take with ``--config`` (so "optimize, then predict and run what it chose" is one file per configuration).

``rank-1.toml`` is the best choice, ``rank-2.toml`` ... the runner-ups ``optimize`` shows (``OptimizeResult.top``); every file holds the strategy, the models (or abstract costs), the knobs and the acceptance the choice used,
and a comment with its predicted ms/token. Files go through the output layer (no overwrite without ``force``).
"""

from __future__ import annotations

from pathlib import Path

import tomli_w

from speccascade.writers import OutputSet, output_dir

from ..config import PredictConfig
from .optimize import _config
from .request import Choice, OptimizeRequest
from .result import OptimizeResult


def choice_config(request: OptimizeRequest, choice: Choice) -> PredictConfig:
    """The prediction config of one choice (its structure at its best K and k_tiny)."""
    return _config(request, choice.structure, choice.k or 1, choice.k_tiny or 1)


def config_toml(config: PredictConfig, choice: Choice) -> str:
    data = config.model_dump(mode="json", exclude_defaults=True, exclude={"heads_accuracy"})
    data["strategy"] = config.strategy
    head = (f"# speccascade optimize: {choice.structure.label()}\n"
            f"# predicted {choice.ms_per_token:.4g} {choice.units}/token, speedup {choice.speedup:.3g}x\n")
    return head + tomli_w.dumps(data)


def write_configs(result: OptimizeResult, directory: str | Path, *, force: bool = False) -> list[Path]:
    """rank-N.toml for the choices ``optimize`` shows (the best, then its runner-ups), best first."""
    directory = output_dir(directory)
    choices = result.top()
    paths = [directory / f"rank-{index}.toml" for index in range(1, len(choices) + 1)]
    with OutputSet(paths, force=force) as outputs:
        for path, choice in zip(paths, choices):
            text = config_toml(choice_config(result.request, choice), choice)
            outputs.write(path, lambda temporary, text=text: temporary.write_text(text, encoding="utf-8"))
    return paths
