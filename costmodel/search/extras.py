"""The closed forms next to an optimizer result: Lambert-W optimal K, break-even acceptance, and the Tiny
acceptance at which a third stage pays (see ``optimal.py``).

Abstract mode uses the formulas as they are (verify = one target step). Hardware mode measures the cost ratios on
the winning speculative structure: c = t_D(1) / t_T(1) and v(K) = t_T(K+1) / t_T(1) (verification of K+1 tokens
relative to one decode step), finds the continuous K that minimizes the modelled ms/token with scipy, and finds the
smallest alpha_tiny at which the vertical cascade beats the best 2-level speedup with the modelled costs.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from speccascade import strategies as registry

from . import optimal
from ..predict import evaluate


def closed_form_extras(result, evaluated: dict) -> dict:
    request = result.request
    if request.abstract:
        return {"closed_form": _abstract(request)}
    speculative = [choice for choice in result.ranked if choice.structure.strategy == registry.SPECULATIVE.name]
    if not speculative:
        return {}
    best = speculative[0]
    timings = evaluated[best.structure]
    return {"closed_form": _hardware(request, best, timings, evaluated)}


def _abstract(request) -> dict:
    out = {"optimal_k": optimal.optimal_k(request.alpha, request.c, k_max=4096).to_json(),
           "break_even": optimal.minimum_break_even(request.c, np.ones(request.k_max)).to_json()
           | {"note": "v = 1: the threshold is alpha = c at K = 1 (Leviathan et al. 2023)"}}
    if request.c_tiny is not None:
        out["synergy"] = optimal.synergy_threshold(request.alpha, request.c, request.c_tiny, k_max=request.k_max,
                                                   k_tiny_max=request.k_tiny_max).to_json()
        out["synergy"].pop("grid")
    return out


def _hardware(request, best, timings, evaluated) -> dict:
    t_target = float(timings.forward_ms("target", 1))
    ks = np.arange(1, request.k_max + 1, dtype=float)
    c_value = float(timings.forward_ms("draft", 1)) / t_target
    verify = np.asarray(timings.forward_ms("target", ks + 1), dtype=float) / t_target
    config = timings.config

    def ms_per_token(k_value: float) -> float:
        return float(evaluate(registry.SPECULATIVE.name, config, timings, k=np.asarray(k_value))["ms_per_token"])

    continuous = minimize_scalar(ms_per_token, bounds=(1.0, float(request.k_max)), method="bounded")
    lambert = optimal.optimal_k(best.structure.alpha, c_value, k_max=request.k_max)
    out = {
        "draft": best.structure.draft, "c": c_value,
        "verify_cost_by_k": [{"k": int(k), "v": float(v)} for k, v in zip(ks, verify)],
        "k_continuous_scipy": float(continuous.x),
        "optimal_k_verify_one_step": lambert.to_json(),
        "break_even": optimal.minimum_break_even(c_value, verify).to_json(),
    }
    vertical = next((s for s in evaluated if s.strategy == registry.VERTICAL.name and s.draft == best.structure.draft
                     and s.chips == best.structure.chips and s.batch == best.structure.batch), None)
    if vertical is not None:
        out["synergy"] = _hardware_synergy(request, vertical, evaluated[vertical], best.speedup)
    return out


def _hardware_synergy(request, vertical, timings, best_2level_speedup: float) -> dict:
    """Smallest alpha_tiny at which the modelled vertical cascade beats the best modelled 2-level speedup."""
    ks = np.arange(1, request.k_max + 1, dtype=float)[:, None]
    k_tinies = np.arange(1, request.k_tiny_max + 1, dtype=float)[None, :]

    def best_speedup(alpha_tiny: np.ndarray) -> np.ndarray:
        values = [float(np.max(evaluate(registry.VERTICAL.name, timings.config, timings, k=ks, k_tiny=k_tinies,
                                        alpha_tiny=float(a0))["speedup"])) for a0 in np.ravel(alpha_tiny)]
        return np.asarray(values).reshape(np.shape(alpha_tiny))

    threshold = float(optimal._bisect_increasing(best_speedup, np.asarray([best_2level_speedup]), steps=30)[0])
    return {"tiny": vertical.tiny, "best_2level_speedup": best_2level_speedup,
            "alpha_tiny_min": None if np.isnan(threshold) else threshold,
            "c_tiny": float(timings.forward_ms("tiny", 1)) / float(timings.forward_ms("target", 1))}
