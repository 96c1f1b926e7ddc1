"""Decoding heads on the frozen Target: Medusa, Cascadusa (seed 002 eq. 1), Cascadusa-var (eq. 2), Hydra-style.

``model`` (the heads and their candidate proposals), ``tree`` (the candidate tree, its mask and lossless
verification), ``train`` (self-distillation data, training, checkpoints), ``evaluate`` (held-out accuracies),
``bench`` and ``report`` (measured vs predicted, docs/heads.md). The decoding strategy is
:class:`speccascade.runtime.decoding.heads.HeadsTree` (registry name ``heads``).
"""

from .model import VARIANTS, HeadsConfig, HeadsModel, heads_model, random_heads

__all__ = ["VARIANTS", "HeadsConfig", "HeadsModel", "heads_model", "random_heads"]
