"""speccascade: predict, simulate, execute and calibrate speculative decoding and multi-stage cascades.

Public API (jax-free; the runtime lives in :mod:`speccascade.runtime` and is imported only when used)::

    from speccascade import PredictConfig, predict
    print(predict(PredictConfig(alpha=0.75, k=7, c=0.02)).speedup)
"""

from pathlib import Path as _Path

# The sub-packages live in top-level folders (hardware/, costmodel/, ...) that pyproject's package-dir installs as
# speccascade.<folder>. When Python imports this folder straight from a source checkout (``python3 -m`` from the
# repository root puts it first on sys.path), let the checkout's root serve as a second package directory so
# ``speccascade.costmodel`` resolves to ./costmodel exactly as the installed package does.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "costmodel" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (the package's own __path__)

from speccascade.costmodel.config import HEADLINE, HeadsAccuracy, PredictConfig
from speccascade.costmodel.predict import Prediction, evaluate, predict
from speccascade.costmodel.timings import stage_timings
from speccascade.hardware import ChipProfile, InputError, ModelProfile, load_chip, load_model
from speccascade.simulate import SimulationResult, simulate

__all__ = ["HEADLINE", "ChipProfile", "HeadsAccuracy", "InputError", "ModelProfile", "PredictConfig", "Prediction",
           "SimulationResult", "evaluate", "load_chip", "load_model", "predict", "simulate", "stage_timings"]
