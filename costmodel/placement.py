"""Where each model's weights live, and whether everything fits.

Rule (the seed paper's eq. 4 reads each model's weights from "its" level; we make the level explicit): models are
placed smallest first (the Tiny runs most often) in the fastest memory level whose remaining per-chip capacity
holds their per-chip weight bytes (weight bytes / tensor parallelism). The last level (HBM or DRAM) also holds every
KV cache; if the weights placed there plus the caches exceed it, the configuration does not fit, and we report the
smallest tensor parallelism for the target that would make it fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from speccascade.hardware import ChipProfile, ModelProfile


@dataclass(frozen=True)
class Resident:
    """One model as it sits on each chip."""

    role: str
    model: ModelProfile
    tensor_parallel: int
    max_tokens: int  # longest forward (for the KV cache length)

    def weight_bytes_per_chip(self) -> float:
        return self.model.weight_bytes / self.tensor_parallel

    def kv_bytes_per_chip(self, batch: float, context: float) -> float:
        return self.model.kv_bytes_per_token * batch * (context + self.max_tokens) / self.tensor_parallel


@dataclass(frozen=True)
class Placement:
    levels: dict[str, str]                       # role -> memory level of its weights
    bytes_per_chip: dict[str, float]             # level -> bytes used per chip
    capacity_per_chip: dict[str, float]          # level -> capacity per chip
    fits: bool
    warnings: list[str] = field(default_factory=list)


def place(chip: ChipProfile, residents: list[Resident], *, batch: int, context: int) -> Placement:
    """Place ``residents`` on ``chip`` (see module docstring)."""
    capacity = {level.name: level.chip_capacity_bytes(chip.cores_per_chip) for level in chip.memory
                if level.holds_weights or level is chip.memory[-1]}
    used = {name: 0.0 for name in capacity}
    main = chip.memory[-1].name
    levels: dict[str, str] = {}
    for resident in sorted(residents, key=lambda r: r.weight_bytes_per_chip()):
        need = resident.weight_bytes_per_chip()
        chosen = next((name for name in capacity if name != main and used[name] + need <= capacity[name]), main)
        used[chosen] += need
        levels[resident.role] = chosen
    used[main] += sum(r.kv_bytes_per_chip(batch, context) for r in residents)
    fits = used[main] <= capacity[main]
    warnings = []
    if not fits:
        warnings.append(_does_not_fit(chip, residents, used, capacity, batch, context))
    return Placement(levels, used, capacity, fits, warnings)


def _does_not_fit(chip: ChipProfile, residents: list[Resident], used: dict[str, float],
                  capacity: dict[str, float], batch: int, context: int) -> str:
    main = chip.memory[-1].name
    gb = 1e9
    parts = ", ".join(f"{r.role} {r.model.name} {r.weight_bytes_per_chip() / gb:.2f} GB" for r in residents)
    message = (f"does not fit: {used[main] / gb:.2f} GB per chip needed in {main} "
               f"({parts}, plus KV cache) but {chip.name} has {capacity[main] / gb:.2f} GB per chip")
    target = next((r for r in residents if r.role == "target"), None)
    if target is None:
        return message
    others = sum(r.weight_bytes_per_chip() + r.kv_bytes_per_chip(batch, context) for r in residents if r is not target)
    per_chip_room = capacity[main] - others
    kv_total = target.model.kv_bytes_per_token * batch * (context + target.max_tokens)
    if per_chip_room <= 0:
        return message + "; the drafts alone fill it"
    needed = math.ceil((target.model.weight_bytes + kv_total) / per_chip_room)
    return message + f"; the target needs tensor parallelism over {needed} or more chips"
