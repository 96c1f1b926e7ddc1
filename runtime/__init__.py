"""The JAX runtime: real Flax models (``runtime.models``), a trained default trio (``runtime.trio``), decoding
strategies over the :class:`~speccascade.runtime.api.CausalLM` contract, traces and benchmarks.

Importing this package does not import JAX (``speccascade.runtime.corpus`` and ``speccascade.runtime.profiles``
work without it; the trace schema is :mod:`speccascade.traces`); the sub-modules that need JAX import it
themselves.
"""
