"""Lossless decoding strategies over :class:`speccascade.runtime.api.CausalLM` models.

    from speccascade.runtime.decoding import Decoder, Speculative, SamplingConfig
    decoder = Decoder(Speculative(draft, target, k=4), capacity=256)
    generation = decoder.generate(prompt_ids, max_new=64)
"""

from .base import DecodingStrategy
from .cascade import FilteredCascade, VerticalBudget, VerticalCascade
from .decoder import Decoder, Generation, PairStats, StepStats, summarize_acceptance
from .program import Loop, Stage, StagedRunner, fuse
from .sampling import GREEDY, SamplingConfig, sample, to_probs, verify_chain
from .strategies import Autoregressive, Speculative
from .build import RUNTIME, STRATEGY_NAMES, build_strategy, check_strategy

__all__ = [
    "GREEDY", "RUNTIME", "STRATEGY_NAMES", "Autoregressive", "Decoder", "FilteredCascade", "Generation", "Loop", "PairStats",
    "SamplingConfig", "Speculative", "Stage", "StagedRunner", "StepStats", "DecodingStrategy", "VerticalBudget", "VerticalCascade",
    "build_strategy", "check_strategy", "fuse", "sample", "summarize_acceptance", "to_probs", "verify_chain",
]
