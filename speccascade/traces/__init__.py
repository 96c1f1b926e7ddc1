"""Runtime traces: a versioned JSON Lines schema (version 2) that the simulator, calibration and the cost model
read without JAX.

A trace file holds one JSON object per line, each with a ``kind``:

* ``header`` (first line, exactly once): ``schema_version``, run id, time, the command, the run config, ``chip``
  (the chip profile the run ran on: a profile name that :func:`speccascade.hardware.load_chip` resolves, or an
  embedded :class:`~speccascade.hardware.chip.ChipProfile`, e.g. a probed one; None when unknown, said in
  ``notes``), the hardware (backend, device kind and count, host), every model (role, name, parameter bytes,
  vocabulary, and its full :class:`~speccascade.hardware.model.ModelProfile`: architecture, dtype, bytes) and
  ``notes``. With the chip and the model profiles a trace holds every cost-model input but the acceptance, which
  its steps measure: any trace can be predicted (:meth:`Header.profiles`).
* ``step``: one decoding step: the strategy's canonical registry name (:mod:`speccascade.strategies`) and its
  knobs as typed fields (:class:`Knobs`), tokens emitted, per drafter->verifier pair the proposed / tested /
  accepted counts, the beta = sum_x min(p, q) sum over tested positions and the accept/reject sequence
  (``"AAR"``; rounds of an inner pair are separated by ``|``), milliseconds per model (staged mode) and the
  step's wall milliseconds.
* ``forward``: one microbenchmark point: a model's forward over ``tokens`` new tokens at ``context`` positions.
* ``compile``: compile seconds of one jitted function (excluded from every timing).

Every record is appended and flushed as it happens (:class:`TraceWriter`), so a killed run keeps every completed
step; :func:`read_trace` keeps them too and reports a partial last line instead of failing. A summary of a whole
benchmark is a separate JSON document (:class:`Summary`).

Version 1 files (the runtime before the strategy registry) are converted on read (:func:`convert_v1_record`): a
v1 step's ``strategy`` was a label whose knobs lived in the header's ``config.strategies``; its ``cascade`` was the
delivered-token-budget cascade, now ``vertical-budget`` with ``k = k_outer`` and ``k_tiny = k_inner``; the
filtered cascade's ``top_m`` is now ``filter_width``. A v1 header names no chip and carries no model profiles:
they stay None and the header's ``notes`` say so. One call over several files refuses a mix of versions
(:func:`read_traces`); ``python -m speccascade.traces upgrade OLD.jsonl NEW.jsonl`` rewrites a v1 file as v2.

The package: :mod:`.records` (the record models), :mod:`.v1` (conversion), :mod:`.files` (writing and reading),
:mod:`.summaries` (benchmark summaries), ``__main__`` (the upgrade/check command). It imports neither JAX nor the
models (tested in a subprocess).
"""

from .files import Trace, TraceWriter, file_version, read_trace, read_traces, upgrade_trace
from .records import (READABLE_VERSIONS, RECORD_KINDS, SCHEMA_VERSION, SEQUENCE_CHARS, UPGRADE_HINT, CompileRecord,
                      ForwardRecord, HardwareInfo, Header, Knobs, ModelInfo, PairRecord, Record, StepRecord)
from .summaries import PairSummary, Spread, StrategySummary, Summary, acceptance_from_steps, read_summary, \
    write_summary
from .v1 import V1_NOTE, convert_v1_record, v1_strategy

__all__ = [
    "READABLE_VERSIONS", "RECORD_KINDS", "SCHEMA_VERSION", "SEQUENCE_CHARS", "UPGRADE_HINT", "V1_NOTE", "CompileRecord", "ForwardRecord", "HardwareInfo",
    "Header", "Knobs", "ModelInfo", "PairRecord", "PairSummary", "Record", "Spread", "StepRecord",
    "StrategySummary", "Summary", "Trace", "TraceWriter", "acceptance_from_steps", "convert_v1_record",
    "file_version", "read_summary", "read_trace", "read_traces", "upgrade_trace", "v1_strategy", "write_summary",
]
