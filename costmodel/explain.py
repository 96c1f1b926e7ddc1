"""Human-readable forms of the cost model: each strategy's equations, pretty-printed or in LaTeX.

Everything shown is generated from what the model computes: E is the strategy's closed form
(:mod:`.strategies`), the step time is the registry's step shape written with the stage-time functions
t_target(n), t_draft(n), t_tiny(n) (one forward of that model over n new tokens; ``t_draft^m``: the Draft with an
m-column output head), and ``forward.py`` gives t(n) itself.
"""

from __future__ import annotations

import sympy as sp

from speccascade import strategies as registry

from . import forward
from .strategies import ROLE_TIME, get_form


def _render(expression, latex: bool) -> str:
    return sp.latex(expression) if latex else sp.pretty(expression, use_unicode=True)


def explain_text(strategy: str, *, latex: bool = False) -> str:
    """The equations of ``strategy`` (or ``forward`` for one forward's time) as text."""
    if strategy == "forward":
        parts = [("memory_s", forward.MEMORY_S), ("compute_s", forward.COMPUTE_S), ("comm_s", forward.COMM_S),
                 ("token_s (calibrated)", forward.TOKEN_S), ("context_s (calibrated)", forward.CONTEXT_S),
                 ("forward_s (roofline)", forward.FORWARD_S["max"]), ("forward_s (sum, seed eq. 4)", forward.FORWARD_S["sum"])]
        return "\n\n".join(f"{name} =\n{_render(expression, latex)}" for name, expression in parts) + \
            "\n\nsource: costmodel/forward.py (roofline over the level holding the weights; Megatron all-reduce)"
    form = get_form(strategy)
    spec = registry.get(strategy)
    expected = form.expected_tokens
    step = form.step_time_expression()
    baseline = ROLE_TIME["target"](1)
    knobs = ", ".join(f"{knob.name} ({knob.description})" for knob in spec.knobs) or "none"
    pairs = ", ".join(f"{pair.name} = {pair.parameter}" for pair in spec.pairs) or "none"
    blocks = [f"{spec.name}: {spec.summary}\nknobs: {knobs}\npairs: {pairs}",
              f"expected tokens per step E =\n{_render(expected, latex)}"]
    blocks += [_render(note, latex) for note in form.notes]
    blocks += [f"step time (the registry's step shape) =\n{_render(step, latex)}",
               f"time per token = step / E =\n{_render(step / expected, latex)}",
               f"speedup = t_target(1) / (step / E) =\n{_render(baseline * expected / step, latex)}",
               f"source: {form.source}"]
    return "\n\n".join(blocks)
