"""speccascade: predict, simulate, execute and calibrate speculative decoding and multi-stage cascades.

Public API (jax-free; the runtime lives in :mod:`speccascade.runtime` and is imported only when used)::

    from speccascade import PredictConfig, predict
    print(predict(PredictConfig(alpha=0.75, k=7, c=0.02)).speedup)
"""

from speccascade.costmodel.config import HEADLINE, HeadsAccuracy, PredictConfig
from speccascade.costmodel.predict import Prediction, evaluate, predict
from speccascade.costmodel.timings import stage_timings
from speccascade.hardware import ChipProfile, InputError, ModelProfile, load_chip, load_model

__all__ = ["HEADLINE", "ChipProfile", "HeadsAccuracy", "InputError", "ModelProfile", "PredictConfig", "Prediction",
           "evaluate", "load_chip", "load_model", "predict", "stage_timings"]
