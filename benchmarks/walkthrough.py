"""The loop of docs/validate.md, run end to end on this machine: calibrate -> optimize -> runtime bench -> compare.
Prints JSON as its last line.

1. ``runtime bench`` of a calibration set (autoregressive and one configuration per strategy, with the forward
   microbenchmarks and the host-overhead measurement) on the trio;
2. ``calibrate`` that trace: this machine's calibrated chip profile and the trio's measured acceptance;
3. ``optimize`` over speculative, vertical, vertical-budget and filtered (K <= --k-max, one chip, batch 1, no
   quantization: what the trio runs; at the mean context of the calibration run's steps) with that profile, the trio's model profiles and that acceptance, writing its
   top 5 with ``--write-config``;
4. ``runtime bench --config`` semantics for all five at once (their strategies and knobs, interleaved with
   autoregressive in one run so that the machine's drift hits them alike);
5. the comparison: is the optimizer's predicted best the measured best, and if not, by how much is the measured
   best faster (``regret`` = measured ms/token of the predicted best / the measured best's - 1); each
   configuration's predicted and measured ms/token and their error; the rank correlation (Kendall tau).

JSON: {"predicted_best", "measured_best", "best_matches", "regret", "kendall_tau", "rows": [...], "repeat_spread",
"commands"} (fractions, not percent).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

CALIBRATION = ("autoregressive", "speculative:k=2", "vertical:k=1:k_tiny=3", "vertical-budget:k=4:k_tiny=2",
               "filtered:k=4:filter_width=64")
SEARCHED = "speculative,vertical,vertical-budget,filtered"


def cli(args: list[str], log: list[str]) -> str:
    command = [sys.executable, "-m", "speccascade", *args]
    log.append(" ".join(["python3 -m speccascade", *args]))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(args)}\n{result.stderr[-2000:]}")
    return result.stdout


def spec_of(config_file: Path) -> str:
    """NAME:knob=value:... of a ``--write-config`` file (its strategy's own knobs only, sorted like bench labels)."""
    from speccascade import strategies as registry

    data = tomllib.loads(config_file.read_text())
    spec = registry.get(data["strategy"])
    knobs = {name: data[name] for name in spec.knob_names if name in data}
    return spec.name + "".join(f":{name}={value}" for name, value in sorted(knobs.items()))


def kendall_tau(first: list[float], second: list[float]) -> float | None:
    from scipy import stats

    if len(first) < 2:
        return None
    return float(stats.kendalltau(first, second).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trio", type=Path, default=None, help="trio directory (default: the default trio)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a fresh temporary one)")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--k-max", type=int, default=8)
    parser.add_argument("--target-weights", default="fp32")
    args = parser.parse_args()

    from speccascade.runtime.trio import default_trio_dir

    trio = args.trio or default_trio_dir()
    if not (trio / "manifest.json").is_file():
        sys.exit(f"no trained trio at {trio} (python3 -m speccascade runtime train)")
    out = args.out or Path(tempfile.mkdtemp(prefix="speccascade-walkthrough-"))
    out.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    common = ["--trio", str(trio), "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats),
              "--target-weights", args.target_weights, "--force"]
    cli(["runtime", "bench", "--strategies", ",".join(CALIBRATION), *common, "--out", str(out / "calibration"),
         "--json"], log)
    cli(["calibrate", str(out / "calibration" / "trace.jsonl"), "--out", str(out / "calibrated"), "--name",
         "walkthrough", "--force"], log)
    from speccascade.traces import read_trace

    steps = [step for step in read_trace(out / "calibration" / "trace.jsonl").steps if step.mode == "fused"]
    context = round(statistics.mean(step.context for step in steps))  # the context the runs decode at
    target_profile = "target.toml" if args.target_weights == "fp32" else f"target.toml:{args.target_weights}"
    chosen = json.loads(cli(["optimize", "--hardware", str(out / "calibrated" / "walkthrough.toml"),
                             "--target", str(trio / target_profile), "--draft", str(trio / "draft.toml"),
                             "--tiny", str(trio / "tiny.toml"), "--acceptance",
                             str(out / "calibrated" / "acceptance.json"), "--quantize", "", "--chips", "1", "--context", str(context),
                             "--strategies", SEARCHED, "--k-max", str(args.k_max), "--top", "5",
                             "--write-config", str(out / "chosen"), "--force", "--json"], log))
    ranked = [chosen["best"], *chosen["runner_ups"]][:5]
    specs = [spec_of(Path(path)) for path in chosen["written"]]
    cli(["runtime", "bench", "--strategies", ",".join(["autoregressive", *specs]), *common, "--no-microbench",
         "--overhead-steps", "0", "--out", str(out / "chosen-bench"), "--json"], log)
    summary = json.loads((out / "chosen-bench" / "summary.json").read_text())
    rows = []
    for rank, (spec, entry) in enumerate(zip(specs, ranked), start=1):
        measured = summary["strategies"][spec]["ms_per_token"]
        rows.append({"rank": rank, "config": spec, "predicted_ms_per_token": entry["ms_per_token"],
                     "measured_ms_per_token": measured["median"],
                     "error": entry["ms_per_token"] / measured["median"] - 1,
                     "measured_spread": (measured["max"] - measured["min"]) / measured["median"],
                     "predicted_speedup": entry["speedup"], "measured_speedup": summary["strategies"][spec]["speedup"]})
    best_measured = min(rows, key=lambda row: row["measured_ms_per_token"])
    result = {"predicted_best": rows[0]["config"], "measured_best": best_measured["config"],
              "best_matches": best_measured["rank"] == 1,
              "regret": rows[0]["measured_ms_per_token"] / best_measured["measured_ms_per_token"] - 1,
              "kendall_tau": kendall_tau([row["predicted_ms_per_token"] for row in rows],
                                         [row["measured_ms_per_token"] for row in rows]),
              "median_abs_error": statistics.median(abs(row["error"]) for row in rows),
              "repeat_spread": statistics.median(row["measured_spread"] for row in rows),
              "context": context, "autoregressive_ms_per_token": summary["strategies"]["autoregressive"]["ms_per_token"]["median"],
              "rows": rows, "out": str(out), "commands": log}
    (out / "walkthrough.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
