"""Per-stage forward times for a configuration: the bridge from profiles to strategy expressions.

Hardware mode: each role's model is placed (``placement.place``) and one forward over ``tokens`` new tokens costs
``forward.forward_time`` on the level holding its weights. Drafts run replicated on every chip (tensor parallel 1);
the target is split over all chips. Abstract mode (Leviathan et al. 2023 section 3.4): target forwards cost 1 for
any number of tokens, a draft forward costs ``c``, a tiny forward ``c_tiny``; times are in target steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from speccascade.hardware import ChipProfile, ModelProfile, load_chip, load_model
from speccascade.errors import InputError

from .config import PredictConfig
from .forward import forward_time
from .placement import Placement, Resident, place

def heads_params(model: ModelProfile, heads: int) -> float:
    """Medusa-1 heads: each a residual block (d x d) plus its own output layer (d x vocab) (Cai et al. 2024, eq. 1)."""
    return heads * (model.d_model * model.d_model + model.d_model * model.vocab)


def heads_profile(target: ModelProfile, heads: int) -> ModelProfile:
    """The heads as a resident of their own, so placement counts their bytes."""
    return ModelProfile(name=f"{target.name}+{heads}-medusa-heads", architecture="projection",
                        params_total=heads_params(target, heads), params_embedding=0.0, tied_embeddings=False,
                        layers=0, d_model=target.d_model, heads=0, kv_heads=0, head_dim=0, d_ff=target.d_model,
                        vocab=target.vocab, dtype=target.dtype, source="Medusa-1 heads: H x (d^2 + d V) parameters")


@dataclass(frozen=True)
class StageTimings:
    """``forward_ms(role, tokens)``: milliseconds (or target steps in abstract mode) of one forward of a role."""

    config: PredictConfig
    chip: ChipProfile | None = None
    models: dict[str, ModelProfile] = field(default_factory=dict)
    placement: Placement | None = None
    tensor_parallel: dict[str, int] = field(default_factory=dict)

    @property
    def abstract(self) -> bool:
        return self.chip is None

    @property
    def unit(self) -> str:
        return "target steps" if self.abstract else "ms"

    def level(self, role: str) -> str:
        return self.placement.levels[role] if self.placement else "-"

    def forward_ms(self, role: str, tokens, *, output_columns=None, batch=None, context=None) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=float)
        if self.abstract:
            cost = {"target": 1.0, "draft": self.config.c, "tiny": self.config.c_tiny}.get(role)
            if cost is None:
                raise InputError(f"abstract mode has no cost for the {role}: give --c (draft) or --c-tiny (tiny)")
            return np.full_like(tokens, cost, dtype=float)
        if role not in self.models:
            raise InputError(f"no {role} model given (--{role})")
        seconds = forward_time(self.chip, self.models[role], level=self.level(role), tokens=tokens,
                               context=self.config.context if context is None else context,
                               batch=self.config.batch if batch is None else batch,
                               tp=self.tensor_parallel[role], output_columns=output_columns,
                               combine=self.config.combine).total_s
        return 1e3 * np.asarray(seconds, dtype=float)

    def heads_ms(self, heads: int) -> float:
        """Medusa heads' weights streamed once per step from the target's level (memory-bound estimate)."""
        if self.abstract:
            return 0.0
        target = self.models["target"]
        level = self.chip.level(self.level("heads") if "heads" in self.models else self.level("target"))
        bytes_read = heads_params(target, heads) * target.bytes_per_param / self.tensor_parallel["target"]
        return 1e3 * bytes_read / (level.bandwidth_bytes_per_s * self.chip.bandwidth_fraction(level.name))

    def bound_ms(self, max_tokens_per_step) -> np.ndarray:
        """Fastest possible time per token: target weights streamed once per step at the datasheet bandwidth of
        their level (no efficiency correction, no KV, no overhead, drafts free), shared by the step's tokens."""
        max_tokens = np.asarray(max_tokens_per_step, dtype=float)
        if self.abstract:
            return 1.0 / max_tokens
        target = self.models["target"]
        level = self.chip.level(self.level("target"))
        bytes_read = target.streamed_params() * target.bytes_per_param / self.tensor_parallel["target"]
        return 1e3 * bytes_read / level.bandwidth_bytes_per_s / max_tokens


def stage_timings(config: PredictConfig, *, verify_tokens: int = 1, chip: ChipProfile | None = None,
                  heads: int = 0, models: dict[str, ModelProfile] | None = None) -> StageTimings:
    """Load profiles, place the models, and return the per-stage timing functions for ``config`` (``chip``
    replaces the named profile, e.g. a calibrated or what-if variant; ``models`` gives a role's profile object
    instead of loading its name, e.g. the profiles a runtime trace carries)."""
    if config.abstract:
        return StageTimings(config)
    chip = chip or load_chip(config.hardware)
    roles = {"target": config.target, "draft": config.draft, "tiny": config.tiny}
    given = models or {}
    models = {role: given[role] if role in given else load_model(name) for role, name in roles.items()
              if name is not None}
    if heads:
        models["heads"] = heads_profile(models["target"], heads)
    tensor_parallel = {role: (config.chips if role in ("target", "heads") else 1) for role in models}
    residents = [Resident(role, model, tensor_parallel[role], max_tokens=verify_tokens if role == "target" else 1)
                 for role, model in models.items()]
    if config.onchip_weights:
        placement = place(chip, residents, batch=config.batch, context=config.context)
    else:
        placement = place(chip.model_copy(update={"memory": [chip.memory[-1]]}), residents,
                          batch=config.batch, context=config.context)
    return StageTimings(config, chip, models, placement, tensor_parallel)
