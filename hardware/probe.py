"""Measure this machine with JAX and describe it as a :class:`ChipProfile`.

``probe(name, quick)`` runs four measurements on JAX's default device, each timed with ``block_until_ready``
after a warm-up call (so compilation is excluded) and reported as the median over repeats:

* weight-streaming bandwidth of the main memory (DRAM, or HBM on an accelerator): a jitted loop of
  matrix-vector products ``v <- (W @ v) / n`` over a square fp32 matrix much larger than the last-level cache;
  bandwidth = bytes of W read per call / seconds per call (the vector traffic is negligible);
* the same for each CPU cache level (L2, L3) with a matrix of a quarter of the level's capacity, so the matrix
  stays resident; capacities come from ``/sys/devices/system/cpu/cpu*/cache`` (``os.sysconf`` as fallback);
* matmul FLOP/s of an n x n x n product (2 n^3 FLOPs / seconds) in fp32, bf16 and int8 (int8 x int8 -> int32);
  a dtype the backend cannot run is left out and noted (bf16 then falls back to the fp32 figure);
* per-call dispatch overhead: the median wall time of a trivial jitted function (``x + 1`` on a scalar); it
  becomes ``corrections.overhead_s``, the fixed per-forward cost of the cost model.

Main-memory capacity comes from ``/proc/meminfo`` (CPU) or the device's ``memory_stats()["bytes_limit"]``.
Every number's ``source`` says "measured by speccascade hardware probe on DATE, METHOD". The measured
bandwidths and FLOP/s take the place of datasheet peaks, so ``bandwidth_fraction`` and ``compute_efficiency``
stay at 1. JAX is imported inside the functions: ``speccascade.hardware`` imports without it.
"""

from __future__ import annotations

import datetime
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .chip import ChipProfile
from speccascade.errors import InputError
from .registry import user_home

MiB = 1 << 20
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ProbeSettings:
    """How hard to measure: ``quick`` keeps the whole probe to a few seconds (for tests)."""

    main_matrix_min_bytes: int
    main_matrix_max_bytes: int
    matmul_sizes: tuple[int, ...]
    repeats: int
    dispatch_calls: int


QUICK = ProbeSettings(main_matrix_min_bytes=256 * MiB, main_matrix_max_bytes=256 * MiB, matmul_sizes=(512,),
                      repeats=3, dispatch_calls=200)
FULL = ProbeSettings(main_matrix_min_bytes=512 * MiB, main_matrix_max_bytes=2048 * MiB,
                     matmul_sizes=(1024, 2048), repeats=7, dispatch_calls=2000)


@dataclass(frozen=True)
class CacheLevel:
    """One CPU cache level as the kernel reports it."""

    name: str                 # "L2", "L3"
    capacity_bytes: int       # per instance
    instances: int            # distinct instances over the CPUs this process may use
    per_core: bool            # one instance per core


# --- timing helpers -------------------------------------------------------------------------------------
def median_seconds(call: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``call()`` (which must block until its result is ready) after one warm-up call."""
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def matvec_bandwidth(matrix_bytes: int, repeats: int, device=None, min_traffic_bytes: int = 64 * MiB
                     ) -> tuple[float, int]:
    """Bytes/s of streaming an fp32 square matrix through ``v <- (W @ v) / n``; returns (bandwidth, bytes of W).

    Small matrices run several products inside one jitted ``fori_loop`` (at least ``min_traffic_bytes`` read per
    call) so that the dispatch overhead does not hide the bandwidth."""
    import jax
    import jax.numpy as jnp

    n = max(128, int((matrix_bytes / 4) ** 0.5) // 128 * 128)
    weight = jax.device_put(jnp.ones((n, n), jnp.float32), device)
    vector = jax.device_put(jnp.ones((n,), jnp.float32), device)
    weight_bytes = n * n * 4
    products = max(1, -(-min_traffic_bytes // weight_bytes))

    @jax.jit
    def stream(weight, vector):
        return jax.lax.fori_loop(0, products, lambda _, v: (weight @ v) * (1.0 / n), vector)

    seconds = median_seconds(lambda: stream(weight, vector).block_until_ready(), repeats)
    return products * weight_bytes / seconds, weight_bytes


def matmul_flops(size: int, dtype_name: str, repeats: int, device=None) -> float:
    """FLOP/s of one ``size``^3 matmul: 2 size^3 / seconds. int8 multiplies int8 x int8 into int32."""
    import jax
    import jax.numpy as jnp

    dtype = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "int8": jnp.int8}[dtype_name]
    accumulate = jnp.int32 if dtype_name == "int8" else None
    left = jax.device_put(jnp.ones((size, size), dtype), device)
    right = jax.device_put(jnp.ones((size, size), dtype), device)
    product = jax.jit(lambda a, b: jax.lax.dot(a, b, preferred_element_type=accumulate))
    seconds = median_seconds(lambda: product(left, right).block_until_ready(), repeats)
    return 2.0 * size**3 / seconds


def dispatch_overhead(calls: int, device=None) -> float:
    """Median seconds of one call of a trivial jitted function (``x + 1`` on a scalar), result awaited."""
    import jax
    import jax.numpy as jnp

    scalar = jax.device_put(jnp.zeros((), jnp.float32), device)
    increment = jax.jit(lambda x: x + 1.0)
    return median_seconds(lambda: increment(scalar).block_until_ready(), calls)


# --- what the operating system says ---------------------------------------------------------------------
def _parse_size(text: str) -> int:
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def cpu_cache_levels(sysfs: Path = Path("/sys/devices/system/cpu")) -> list[CacheLevel]:
    """Unified/data cache levels >= 2, fastest first, from sysfs (``os.sysconf`` if sysfs has none)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    found: dict[int, dict[str, Any]] = {}
    for cpu in cpus:
        for index in sorted((sysfs / f"cpu{cpu}" / "cache").glob("index*")):
            try:
                level = int((index / "level").read_text())
                kind = (index / "type").read_text().strip()
                size = _parse_size((index / "size").read_text())
                shared = (index / "shared_cpu_list").read_text().strip()
            except (OSError, ValueError):
                continue
            if level < 2 or kind not in ("Unified", "Data"):
                continue
            entry = found.setdefault(level, {"size": size, "groups": set()})
            entry["groups"].add(shared)
    if not found:
        for level in (2, 3):
            key = f"SC_LEVEL{level}_CACHE_SIZE"
            size = os.sysconf(key) if key in os.sysconf_names else 0
            if size and size > 0:
                found[level] = {"size": size, "groups": {"?"}}
    levels = []
    for level in sorted(found):
        groups = found[level]["groups"]
        per_core = all(group.isdigit() for group in groups)  # each instance serves exactly one CPU
        levels.append(CacheLevel(f"L{level}", found[level]["size"], len(groups), per_core))
    return levels


def dram_bytes(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo (os.sysconf as fallback)."""
    values: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    total = values.get("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total, values.get("MemAvailable", total)


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, str]:
    """(vendor, model name) from /proc/cpuinfo, or platform defaults."""
    vendor, model = "unknown", "CPU"
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "vendor_id" and vendor == "unknown":
                vendor = value.strip()
            if key.strip() == "model name" and model == "CPU":
                model = value.strip()
    except OSError:
        pass
    return vendor, model


# --- the probe ------------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    """A profile name must be a plain file name (no path, no markup)."""
    if not NAME_PATTERN.match(name):
        raise InputError(f"profile name {name!r} must be letters, digits, '.', '_' or '-'")
    return name


def probe(name: str = "local", quick: bool = False) -> ChipProfile:
    """Measure JAX's default device on this machine; return it as a validated :class:`ChipProfile`."""
    check_name(name)
    import jax

    settings = QUICK if quick else FULL
    device = jax.devices()[0]
    stamp = f"measured by speccascade hardware probe on {datetime.date.today().isoformat()}"
    notes = [f"JAX {jax.__version__}, backend '{device.platform}', device '{device.device_kind}', "
             f"{'quick' if quick else 'full'} probe."]

    if device.platform == "cpu":
        vendor, model = cpu_model_name()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        main_capacity, available = dram_bytes()
        main_name, capacity_source = "DRAM", "/proc/meminfo MemTotal"
        caches = cpu_cache_levels()
    else:
        vendor = "NVIDIA" if "nvidia" in device.device_kind.lower() else (
            "Google" if device.platform == "tpu" else device.platform)
        model = device.device_kind
        cores = int(getattr(device, "core_count", None) or getattr(device, "num_cores", None) or 1)
        try:
            stats = device.memory_stats() or {}
        except Exception:  # some backends do not report memory
            stats = {}
        main_capacity = int(stats.get("bytes_limit", 0)) or dram_bytes()[0]
        available = main_capacity - int(stats.get("bytes_in_use", 0))
        main_name, capacity_source = "HBM", "device memory_stats() bytes_limit"
        caches = []
        notes.append("On-chip levels (L2, VMEM) are not probed on accelerators; see the datasheet profile.")

    last_level = max((c.capacity_bytes * c.instances for c in caches), default=0)
    main_matrix = min(max(settings.main_matrix_min_bytes, 4 * last_level), settings.main_matrix_max_bytes,
                      max(available // 4, 16 * MiB))
    if main_matrix < 4 * last_level:
        notes.append(f"main-memory matrix ({main_matrix / MiB:.0f} MiB) is under 4x the last-level cache "
                     f"({last_level / MiB:.0f} MiB): the {main_name} bandwidth may be inflated by caching.")
    # An accelerator streams 512 MiB in well under a millisecond: read >= 4 GiB per call to bury the dispatch.
    traffic = 64 * MiB if device.platform == "cpu" else 4096 * MiB
    main_bw, main_bytes = matvec_bandwidth(main_matrix, settings.repeats, device, traffic)
    memory = [{
        "name": main_name, "capacity_bytes": float(main_capacity), "bandwidth_bytes_per_s": main_bw,
        "source": f"{stamp}: capacity from {capacity_source}; bandwidth = median over {settings.repeats} calls "
                  f"of jitted fp32 matrix-vector products streaming a {main_bytes / MiB:.0f} MiB matrix",
    }]
    for cache in reversed(caches):  # slowest cache first, so each is compared with the level below it
        chip_capacity = cache.capacity_bytes * cache.instances
        matrix = max(256 << 10, chip_capacity // 4)
        bandwidth, used = matvec_bandwidth(matrix, settings.repeats, device)
        if bandwidth <= memory[0]["bandwidth_bytes_per_s"]:
            notes.append(f"{cache.name} ({chip_capacity / MiB:.1f} MiB) left out: measured {bandwidth / 1e9:.1f} GB/s "
                         f"is not above the next slower level's {memory[0]['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s.")
            continue
        memory.insert(0, {
            "name": cache.name, "capacity_bytes": float(cache.capacity_bytes if cache.per_core else chip_capacity),
            "bandwidth_bytes_per_s": bandwidth, "scope": "core" if cache.per_core else "chip",
            "source": f"{stamp}: capacity from /sys/devices/system/cpu cache index ({cache.instances} instance(s)); "
                      f"bandwidth = median over {settings.repeats} calls of jitted fp32 matrix-vector products "
                      f"on a {used / MiB:.2f} MiB matrix (a quarter of the level)",
        })

    peak_flops: dict[str, float] = {}
    for dtype_name in ("fp32", "bf16", "int8"):
        try:
            peak_flops[dtype_name] = max(matmul_flops(size, dtype_name, settings.repeats, device)
                                         for size in settings.matmul_sizes)
        except Exception as error:  # a backend without this dtype: note it and fall back
            notes.append(f"{dtype_name} matmul failed on this backend ({type(error).__name__}); left out.")
    if "bf16" not in peak_flops:
        if "fp32" not in peak_flops:
            raise InputError("probe could not run an fp32 or bf16 matmul on this device")
        peak_flops["bf16"] = peak_flops["fp32"]
        notes.append("bf16 peak set to the measured fp32 figure (bf16 matmul unavailable).")
    sizes = " and ".join(str(size) for size in settings.matmul_sizes)
    overhead = dispatch_overhead(settings.dispatch_calls, device)

    return ChipProfile.model_validate({
        "name": name,
        "vendor": vendor,
        "description": f"{model}, probed ({device.platform}, {cores} cores)",
        "cores_per_chip": cores,
        "memory": memory,
        "peak_flops": peak_flops,
        "peak_flops_source": f"{stamp}: 2 n^3 / median seconds of a jitted n x n x n matmul (n = {sizes}, best n), "
                             f"{settings.repeats} repeats; int8 is int8 x int8 -> int32",
        "corrections": {
            "overhead_s": overhead,
            "calibrated": True,
            "source": f"{stamp}: overhead_s = median wall time of {settings.dispatch_calls} calls of a trivial "
                      f"jitted function (x + 1 on a scalar); bandwidths and FLOP/s are measured, so no fractions",
        },
        "notes": notes + ["Interconnect not probed (single device)."],
    })


# --- writing ----------------------------------------------------------------------------------------------
def default_output(name: str) -> Path:
    """Where ``speccascade hardware probe`` writes by default: ``$SPECCASCADE_HOME/chips/NAME.toml``."""
    return user_home() / "chips" / f"{name}.toml"


def cached_profile(name: str = "local", device: str | None = None) -> ChipProfile | None:
    """The profile an earlier ``speccascade hardware probe --name NAME`` wrote for this machine, or None: none was
    written, it does not validate, or ``device`` (the device or CPU model the probe names first in its
    ``description``, e.g. ``cpu_model_name()[1]`` or JAX's ``device_kind``) differs, so it was probed elsewhere.
    Reads a file only (no JAX, no measurement)."""
    from .registry import load_toml_model

    path = default_output(name)
    if not path.is_file():
        return None
    try:
        profile = load_toml_model(path, ChipProfile)
    except InputError:
        return None
    if device is not None and not profile.description.startswith(f"{device}, probed"):
        return None
    return profile


PROBE_SOURCE = "measured by speccascade hardware probe"


def probe_output(name: str, output: str | Path | None = None, *, force: bool = False) -> Path:
    """Where a probe of ``name`` writes, checked before anything is measured: ``output`` (an existing file there
    is kept unless ``force``) or ``$SPECCASCADE_HOME/chips/NAME.toml``, where a profile an earlier probe wrote is
    replaced (the probe refreshes its own measurement) and anything else (a calibration, a user's own file) is kept
    unless ``force``."""
    from speccascade.writers import check_new_file

    from .registry import load_toml_model

    if output is not None:
        if str(output).strip() == "":
            raise InputError("--output: empty file name")
        return check_new_file(Path(output), force=force)
    path = default_output(check_name(name))
    if path.exists() and not force:
        try:
            previous = load_toml_model(path, ChipProfile)
        except InputError:
            previous = None
        if previous is None or not previous.corrections.source.startswith(PROBE_SOURCE):
            raise InputError(f"{path}: exists and was not written by a probe; refusing to overwrite it (use "
                             "--force, another --name, or --output FILE)")
    return check_new_file(path, force=True)


def write_profile(profile: ChipProfile, path: Path, *, force: bool = True) -> Path:
    """Write ``profile`` as TOML (tomli_w) with a header comment, atomically; returns the path written. The CLI
    decides about replacing with :func:`probe_output` first; ``force=False`` keeps an existing file."""
    import tomli_w

    from speccascade.writers import write_text

    header = (f"# Chip profile '{profile.name}' written by `speccascade hardware probe`.\n"
              "# Every number was measured on this machine; each `source` field says how and when.\n")
    return write_text(Path(path), header + tomli_w.dumps(profile.model_dump(mode="json", exclude_none=True)),
                      force=force)
