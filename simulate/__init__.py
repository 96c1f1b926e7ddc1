"""Monte-Carlo acceptance simulator: distributions, correlated acceptance, nested cascades (numpy, jax-free).

Where the cost model gives means under i.i.d. acceptance, the simulator samples whole steps: position-dependent,
bursty (Markov) or recorded (empirical) acceptance, draft-length policies, every strategy, and reports the
distribution of tokens per step, ms per token and N-token request latency with confidence intervals and tails.
"""

from .api import simulate
from .build import build_step_model, make_process
from .empirical import EmpiricalBetas, EmpiricalData, EmpiricalOutcomes, load_empirical, parse_empirical
from .policies import ConfidenceThreshold, DraftPolicy, FixedK
from .processes import IID, Markov, Positional, markov_rho_range
from .result import SimulationResult
from .tree import TreeAcceptance

__all__ = ["simulate", "build_step_model", "make_process", "EmpiricalBetas", "EmpiricalData", "EmpiricalOutcomes",
           "load_empirical", "parse_empirical", "ConfidenceThreshold", "DraftPolicy", "FixedK", "IID", "Markov",
           "Positional", "markov_rho_range", "SimulationResult", "TreeAcceptance"]
