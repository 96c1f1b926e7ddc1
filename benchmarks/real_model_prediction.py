"""Measured forwards of real-size models against the cost model's prediction, before and after calibration
(docs/real-models.md, "Measured on this machine").

    python3 benchmarks/real_model_prediction.py --chip probe.toml --calibrated local-calibrated.toml \
        runs/gemma-2b-bf16/trace.jsonl runs/gemma-2b-int8/trace.jsonl

For every ``forward`` record of the traces (``speccascade runtime microbench``): the measured ms, the achieved
weight bandwidth, and the cost model's ms (:func:`speccascade.calibrate.forward_fit.predict_ms`, the cost model's
own forward time) on the probed chip profile and on the calibrated one, with the relative errors
(predicted - measured) / measured. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json

from speccascade.calibrate.forward_fit import predict_ms
from speccascade.calibrate.points import Device, forward_points
from speccascade.hardware import load_chip
from speccascade.traces import read_traces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="+")
    parser.add_argument("--chip", required=True, help="the probed (uncalibrated) chip profile")
    parser.add_argument("--calibrated", help="the calibrated chip profile (speccascade calibrate)")
    args = parser.parse_args()
    traces = read_traces(args.traces)
    chips = {"probed": load_chip(args.chip)}
    if args.calibrated:
        chips["calibrated"] = load_chip(args.calibrated)
    rows = []
    points, unused = forward_points(Device(chips["probed"], tuple(traces)))
    predictions = {label: predict_ms(chip, points) for label, chip in chips.items()}
    bytes_of = {(f.role, f.tokens, f.context): f.param_bytes for trace in traces for f in trace.forwards}
    for index, point in enumerate(points):
        row = {"role": point.role, "model": point.model.name, "dtype": point.model.dtype, "tokens": point.tokens,
               "context": point.context, "level": point.level, "measured_ms": round(point.ms, 2),
               "achieved_gb_s": round(bytes_of[(point.role, point.tokens, point.context)] / point.ms / 1e6, 2)}
        for label, values in predictions.items():
            row[f"{label}_ms"] = round(float(values[index]), 2)
            row[f"{label}_error"] = round(float(values[index]) / point.ms - 1.0, 3)
        rows.append(row)
    print(json.dumps({"chips": {label: chip.name for label, chip in chips.items()}, "forwards": rows,
                      "unused": [u.reason for u in unused]}, indent=1))


if __name__ == "__main__":
    main()
