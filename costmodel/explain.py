"""Human-readable forms of the cost model: each strategy's equations, pretty-printed or in LaTeX.

The displayed equations are sympy objects written with the stage-time functions t_T(n), t_D(n), t_0(n) (one forward
of the Target, Draft or Tiny over n new tokens); the computational expressions in ``strategies.py`` are the same
equations with those forwards already evaluated, and ``forward.py`` gives t(n) itself.
"""

from __future__ import annotations

import sympy as sp

from speccascade.errors import InputError

from . import forward
from .strategies import STRATEGY_NAMES

a, a0, g, c = sp.symbols("alpha alpha_0 gamma_total c", nonnegative=True)
K, k0, m, N, z = sp.symbols("K k_0 m N z", positive=True)
KD = sp.Symbol("K_D", nonnegative=True)
i, j = sp.symbols("i j", integer=True, positive=True)
tT, tD, t0, tDm = (sp.Function(name) for name in ("t_T", "t_D", "t_0", "t_D^m"))
phi = sp.Function("phi")
a_i = sp.IndexedBase("alpha")
node_value = sp.Function("v")
t_heads = sp.Symbol("t_heads", nonnegative=True)


def _speculative_tokens(rate):
    return (1 - rate ** (K + 1)) / (1 - rate)


DISPLAY: dict[str, dict[str, object]] = {
    "autoregressive": {"E": sp.Integer(1), "step": tT(1), "source": "one target forward per token"},
    "speculative": {
        "E": _speculative_tokens(a), "step": K * tD(1) + tT(K + 1),
        "source": "Leviathan et al. 2023, eq. 1 (E -> K+1 as alpha -> 1); verification is one forward over K+1 tokens",
    },
    "vertical": {
        "E": (1 - a * phi(a) ** K) / (1 - a),
        "phi": sp.Eq(phi(z), (1 - a0) * z * (1 - (a0 * z) ** k0) / (1 - a0 * z) + a0**k0 * z ** (k0 + 1)),
        "step": K * (k0 * t0(1) + tD(k0 + 1)) + tT(K * (k0 + 1) + 1),
        "source": "Chen et al. 2024 (Cascade Speculative Drafting): phi is the generating function of the tokens one "
                  "Draft review of k_0 Tiny drafts yields; E -> 1 + K (1 - alpha_0^(k_0+1))/(1 - alpha_0) as alpha -> 1",
    },
    "filtered": {
        "E": _speculative_tokens(g), "gamma": sp.Eq(g, sp.Symbol("gamma_0") * sp.Symbol("gamma_1|0") * sp.Symbol("gamma_2|1")),
        "step": K * (t0(1) + tDm(1)) + tT(K + 1),
        "source": "the seed paper's Algorithm 1 and eq. 6; t_D^m: the Draft's output layer computes Tiny's top-m columns",
    },
    "horizontal": {
        "E": 1 + sp.Sum(sp.Product(a_i[j], (j, 1, i)), (i, 1, K)),
        "step": KD * tD(1) + (K - KD) * t0(1) + tT(K + 1),
        "source": "Chen et al. 2024 horizontal cascade: the Draft drafts positions 1..K_D, the Tiny the rest",
    },
    "heads": {
        "E": 1 + sp.Sum(node_value(i), (i, 1, N)), "step": tT(N + 1) + t_heads,
        "source": "Medusa (Cai et al. 2024): v(node) = prod of the marginal rank accuracies on its path; best-first "
                  "tree of N nodes; t_heads streams H (d^2 + d V) head weights",
    },
}


def _render(expression, latex: bool) -> str:
    return sp.latex(expression) if latex else sp.pretty(expression, use_unicode=True)


def explain_text(strategy: str, *, latex: bool = False) -> str:
    """The equations of ``strategy`` (or ``forward`` for one forward's time) as text."""
    if strategy == "forward":
        parts = [("memory_s", forward.MEMORY_S), ("compute_s", forward.COMPUTE_S), ("comm_s", forward.COMM_S),
                 ("forward_s (roofline)", forward.FORWARD_S["max"]), ("forward_s (sum, seed eq. 4)", forward.FORWARD_S["sum"])]
        return "\n\n".join(f"{name} =\n{_render(expression, latex)}" for name, expression in parts) + \
            "\n\nsource: costmodel/forward.py (roofline over the level holding the weights; Megatron all-reduce)"
    if strategy not in DISPLAY:
        raise InputError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGY_NAMES)}, forward")
    display = DISPLAY[strategy]
    time_per_token = display["step"] / display["E"]
    blocks = [f"expected tokens per step E =\n{_render(display['E'], latex)}"]
    for extra in ("phi", "gamma"):
        if extra in display:
            blocks.append(_render(display[extra], latex))
    blocks += [f"step time =\n{_render(display['step'], latex)}",
               f"time per token = step / E =\n{_render(time_per_token, latex)}",
               f"speedup = t_T(1) / (step / E) =\n{_render(tT(1) * display['E'] / display['step'], latex)}",
               f"source: {display['source']}"]
    return "\n\n".join(blocks)
