"""Audit checks on sizes and memory: stated sizes vs params x bytes/param, models vs the capacity of their memory
level (documented and as stated), everything vs main memory, reported memory use, quantization factors, and the
stated hardware vs the profile.

Sizes are in GB (10^9 bytes). A model placed in a per-core level (TPU VMEM) must fit one core's capacity; the
target is split over ``claim.tp`` chips, drafts are replicated (as in ``costmodel.timings``).
"""

from __future__ import annotations

import math

from speccascade.hardware import BYTES_PER_PARAM, load_model

from .findings import AuditContext, Finding, finding, relative_gap
from ..placement import Resident, place

GB = 1e9
SIZE_TOLERANCE = 0.10     # stated sizes, capacities and bandwidths may round by up to 10% (GB vs GiB: 7%)
QUANTIZATION_TOLERANCE = 0.05


def _tp(ctx: AuditContext, role: str) -> int:
    return ctx.claim.tp if role == "target" else 1


def _level_capacity_gb(ctx: AuditContext, level_name: str) -> float:
    """What one model can use of a level: one core's share for a per-core scratchpad, else the chip's."""
    return ctx.chip.level(level_name).capacity_bytes / GB


# --- stated hardware -----------------------------------------------------------------------------------

def _profile_notes(ctx: AuditContext, word: str) -> str:
    notes = [note for note in ctx.chip.notes if word.lower() in note.lower()]
    return f" (profile note: {notes[0]})" if notes else ""


def check_stated_hardware(ctx: AuditContext) -> list[Finding]:
    stated, chip, claim = ctx.claim.stated_hardware, ctx.chip, ctx.claim
    findings = []
    chips = stated.chips or claim.chips
    if stated.chips is not None and stated.chips != claim.chips:
        findings.append(finding("hardware-chips", "warning", f"the source states {stated.chips} chips but the "
                                f"claim audits {claim.chips}", stated=stated.chips, audited=claim.chips))
    if stated.cores_total is not None:
        actual = chips * chip.cores_per_chip
        numbers = {"stated_cores": stated.cores_total, "chips": chips, "cores_per_chip": chip.cores_per_chip,
                   "profile_cores": actual}
        if stated.cores_total != actual:
            findings.append(finding("hardware-cores", "error", f"{stated.cores_total} cores stated, but {chips} "
                                    f"{chip.name} chips have {chip.cores_per_chip} core(s) each = {actual}", **numbers))
        else:
            findings.append(finding("hardware-cores", "info", f"{actual} cores agree with the profile", **numbers))
    tables = (("capacity", stated.memory_capacity_gb, lambda level: level.capacity_bytes / GB, "GB"),
              ("bandwidth", stated.memory_bandwidth_gb_s, lambda level: level.bandwidth_bytes_per_s / GB, "GB/s"))
    names = [level.name for level in chip.memory]
    for what, table, documented, unit in tables:
        for level_name, value in table.items():
            if level_name not in names:
                findings.append(finding(f"hardware-{what}", "warning", f"stated {what} of '{level_name}', a level "
                                        f"{chip.name} does not have ({', '.join(names)})", stated=value))
                continue
            level = chip.level(level_name)
            profile_value = documented(level)
            per = " per core" if level.scope == "core" and what == "capacity" else " per chip"
            numbers = {"level": level_name, "stated": value, "profile": profile_value, "unit": unit}
            if relative_gap(value, profile_value) > SIZE_TOLERANCE:
                findings.append(finding(f"hardware-{what}", "warning", f"{level_name} {what} stated {value:g} "
                                        f"{unit}{per}; the {chip.name} profile has {profile_value:.4g} {unit}"
                                        f"{_profile_notes(ctx, level_name)}", **numbers))
            else:
                findings.append(finding(f"hardware-{what}", "info", f"{level_name} {what} {value:g} {unit} agrees "
                                        f"with the profile ({profile_value:.4g} {unit})", **numbers))
    if stated.interconnect_gbit_s is not None and chip.interconnect is not None:
        link_gbit = chip.interconnect.link_bandwidth_bytes_per_s * 8 / GB
        numbers = {"stated_gbit_s": stated.interconnect_gbit_s, "profile_link_gbit_s_one_way": link_gbit}
        severity = "warning" if relative_gap(stated.interconnect_gbit_s, link_gbit) > SIZE_TOLERANCE else "info"
        findings.append(finding("hardware-interconnect", severity, f"interconnect stated {stated.interconnect_gbit_s:g}"
                                f" Gbit/s; the profile has {link_gbit:g} Gbit/s one way per link "
                                f"({chip.interconnect.links_per_chip} links)", **numbers))
    return findings


# --- model sizes -----------------------------------------------------------------------------------------

def _dtype_of(bytes_per_param: float) -> str:
    names = [name for name, size in BYTES_PER_PARAM.items() if math.isclose(size, bytes_per_param, rel_tol=0.05)]
    return "/".join(names) if names else "no standard dtype"


def check_model_sizes(ctx: AuditContext) -> list[Finding]:
    sizes, params = ctx.claim.by_role("stated_sizes_gb"), ctx.claim.by_role("stated_params")
    findings = []
    for role, model in ctx.models.items():
        stated_gb, stated_params = sizes.get(role), params.get(role)
        bpp = model.bytes_per_param
        profile_gb = model.params_total * bpp / GB
        if stated_params is not None and relative_gap(stated_params, model.params_total) > SIZE_TOLERANCE:
            findings.append(finding("params-vs-profile", "warning", f"{role} {model.name}: {stated_params:.4g} "
                                    f"params stated, the profile has {model.params_total:.4g} ({model.source})",
                                    role=role, stated=stated_params, profile=model.params_total))
        if stated_gb is None:
            continue
        numbers = {"role": role, "model": model.name, "stated_gb": stated_gb, "dtype": model.dtype,
                   "bytes_per_param": bpp}
        if stated_params is not None:
            own_gb = stated_params * bpp / GB
            implied = stated_gb * GB / stated_params
            if relative_gap(stated_gb, own_gb) > SIZE_TOLERANCE:
                findings.append(finding("size-vs-bytes-per-param", "error", f"{role} {model.name}: stated "
                                        f"{stated_gb:g} GB, but {stated_params:.4g} params x {bpp:g} bytes ({model.dtype}) "
                                        f"= {own_gb:.3g} GB; {stated_gb:g} GB is {implied:.2g} bytes/param "
                                        f"({_dtype_of(implied)})", **numbers, computed_gb=own_gb,
                                        implied_bytes_per_param=implied))
                continue
        implied = stated_gb * GB / model.params_total
        if relative_gap(stated_gb, profile_gb) > SIZE_TOLERANCE:
            findings.append(finding("size-vs-profile", "warning", f"{role} {model.name}: stated {stated_gb:g} GB, "
                                    f"but the profile's {model.params_total:.4g} params x {bpp:g} bytes ({model.dtype}) "
                                    f"= {profile_gb:.3g} GB ({stated_gb:g} GB would be {stated_gb * GB / bpp:.3g} "
                                    f"params)", **numbers, computed_gb=profile_gb, implied_bytes_per_param=implied))
        else:
            findings.append(finding("size-vs-profile", "info", f"{role} {model.name}: {stated_gb:g} GB agrees with "
                                    f"{profile_gb:.3g} GB", **numbers, computed_gb=profile_gb))
    return findings


def check_quantization(ctx: AuditContext) -> list[Finding]:
    findings = []
    for role, factor in ctx.claim.by_role("quantization_reduction").items():
        model = ctx.models[role]
        base = load_model(model.name.split(":")[0]) if ":" in model.name else model
        derived = base.bytes_per_param / model.bytes_per_param
        numbers = {"role": role, "stated_factor": factor, "from_dtype": base.dtype, "to_dtype": model.dtype,
                   "derived_factor": derived}
        severity = "error" if relative_gap(factor, derived) > QUANTIZATION_TOLERANCE else "info"
        verb = "but" if severity == "error" else "and"
        findings.append(finding("quantization-factor", severity, f"{role} {model.name}: stated {factor:g}x smaller, "
                                f"{verb} {base.dtype} -> {model.dtype} is {base.bytes_per_param:g} -> "
                                f"{model.bytes_per_param:g} bytes/param = {derived:g}x", **numbers))
    return findings



# --- memory levels ---------------------------------------------------------------------------------------

def check_level_fit(ctx: AuditContext) -> list[Finding]:
    """A model placed in a level must fit it: its real bytes vs the documented and the stated capacity, and
    its stated size vs the stated capacity."""
    stated_capacity = ctx.claim.stated_hardware.memory_capacity_gb
    sizes = ctx.claim.by_role("stated_sizes_gb")
    findings = []
    for role, level_name in ctx.claim.by_role("placement").items():
        model = ctx.models[role]
        real_gb = model.weight_bytes / _tp(ctx, role) / GB
        documented_gb = _level_capacity_gb(ctx, level_name)
        per = "per core" if ctx.chip.level(level_name).scope == "core" else "per chip"
        numbers = {"role": role, "model": model.name, "level": level_name, "model_gb": real_gb,
                   "documented_capacity_gb": documented_gb}
        problems = []
        if real_gb > documented_gb:
            problems.append(f"{real_gb:.3g} GB of weights exceed {ctx.chip.name}'s {level_name} "
                            f"({documented_gb:.4g} GB {per})")
        stated_gb = stated_capacity.get(level_name)
        if stated_gb is not None and relative_gap(stated_gb, documented_gb) > SIZE_TOLERANCE:
            # a stated capacity that agrees with the profile (e.g. "16 GB" for 16 GiB) adds nothing to check
            numbers["stated_capacity_gb"] = stated_gb
            if real_gb > stated_gb:
                problems.append(f"its {real_gb:.3g} GB ({model.params_total:.3g} params x {model.bytes_per_param:g} "
                                f"bytes) exceed the source's own {level_name} figure, {stated_gb:g} GB")
            if role in sizes and sizes[role] > stated_gb:
                numbers["stated_size_gb"] = sizes[role]
                problems.append(f"the source's own size for it, {sizes[role]:g} GB, exceeds its {stated_gb:g} GB "
                                f"{level_name}")
        if problems:
            if real_gb <= documented_gb:
                problems.append(f"it does fit the documented {ctx.chip.name} {level_name} ({documented_gb:.4g} GB {per})")
            findings.append(finding("memory-level-fit", "error", f"{role} {model.name} is placed in {level_name}, "
                                    f"but " + "; ".join(problems), **numbers))
        else:
            findings.append(finding("memory-level-fit", "info", f"{role} {model.name} ({real_gb:.3g} GB) fits "
                                    f"{level_name} ({documented_gb:.4g} GB {per}; weights alone, see memory-fit)", **numbers))
    return findings


def _residents(ctx: AuditContext) -> list[Resident]:
    verify = (ctx.claim.k or 0) + 1
    return [Resident(role, model, _tp(ctx, role), verify if role == "target" else 1)
            for role, model in ctx.models.items()]


def check_main_memory(ctx: AuditContext) -> list[Finding]:
    """The target alone, then all models, with KV caches at the claim's batch and context, vs main memory."""
    claim, chip = ctx.claim, ctx.chip
    main = chip.memory[-1]
    capacity_gb = main.chip_capacity_bytes(chip.cores_per_chip) / GB
    residents = _residents(ctx)
    target = next(r for r in residents if r.role == "target")
    target_gb = (target.weight_bytes_per_chip() + target.kv_bytes_per_chip(claim.batch, claim.context)) / GB
    numbers = {"target_gb_per_chip": target_gb, "capacity_gb": capacity_gb, "tensor_parallel": claim.tp,
               "batch": claim.batch, "context": claim.context}
    if target_gb > capacity_gb:
        kv_gb = target.kv_bytes_per_chip(claim.batch, claim.context) / GB
        need = math.ceil(target_gb * claim.tp / capacity_gb)
        return [finding("target-fit", "error", f"the target {target.model.name} needs {target_gb:.2f} GB per chip "
                        f"({target.weight_bytes_per_chip() / GB:.2f} GB weights + {kv_gb:.2f} GB KV cache at batch "
                        f"{claim.batch}, context {claim.context}) with tensor parallelism {claim.tp}, but one "
                        f"{chip.name} chip has {capacity_gb:.2f} GB of {main.name}; it needs tensor parallelism "
                        f"over {need} or more chips", **numbers, chips_needed=need)]
    placement = place(chip, residents, batch=claim.batch, context=claim.context)
    used_gb = placement.bytes_per_chip[main.name] / GB
    numbers |= {"used_gb_per_chip": used_gb, "placement": ", ".join(f"{r}: {l}" for r, l in placement.levels.items())}
    if not placement.fits:
        return [finding("memory-fit", "error", "; ".join(placement.warnings), **numbers)]
    return [finding("memory-fit", "info", f"all models and KV caches fit: {used_gb:.2f} of {capacity_gb:.2f} GB "
                    f"{main.name} per chip", **numbers)]


def check_reported_memory(ctx: AuditContext) -> list[Finding]:
    """Reported memory use vs the chip's main memory and vs the weights that must be resident."""
    claim, chip, reported = ctx.claim, ctx.chip, ctx.claim.reported
    capacity_gb = chip.memory[-1].chip_capacity_bytes(chip.cores_per_chip) / GB
    findings = []
    cases = [("reported-memory", reported.memory_gb, list(ctx.models), "the method"),
             ("reported-baseline-memory", reported.baseline_memory_gb, ["target"], "autoregressive decoding")]
    for id_, value, roles, what in cases:
        if value is None:
            continue
        weights_gb = sum(ctx.models[role].weight_bytes / _tp(ctx, role) for role in roles) / GB
        listing = " + ".join(f"{ctx.models[role].name} {ctx.models[role].weight_bytes / _tp(ctx, role) / GB:.2f}"
                             for role in roles)
        numbers = {"reported_gb": value, "weights_gb_per_chip": weights_gb, "capacity_gb": capacity_gb}
        problems = []
        if value > capacity_gb:
            problems.append(f"more than one {chip.name} chip's {capacity_gb:.2f} GB")
        if value < weights_gb * (1 - SIZE_TOLERANCE):
            problems.append(f"less than the weights alone ({listing} = {weights_gb:.2f} GB per chip at tensor "
                            f"parallelism {claim.tp})")
        if problems:
            findings.append(finding(id_, "error", f"{what} reportedly uses {value:g} GB per chip: "
                                    + "; ".join(problems), **numbers))
        else:
            findings.append(finding(id_, "info", f"{what}: {value:g} GB is consistent with {weights_gb:.2f} GB of "
                                    f"weights per chip", **numbers))
    return findings


MEMORY_CHECKS = (check_stated_hardware, check_model_sizes, check_quantization, check_level_fit, check_main_memory,
                 check_reported_memory)
