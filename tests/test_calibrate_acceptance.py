"""Acceptance calibration (calibrate/acceptance.py) and the acceptance file (speccascade/acceptance_file.py).

Steps are simulated with the simulator's own processes (IID, Markov, Positional) at known parameters, written as
trace step records with speccascade.traces' writer, and fitted; no JAX.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_runner import run
from speccascade.acceptance_file import AcceptanceFile
from speccascade.calibrate import acceptance_mle as mle
from speccascade.calibrate.acceptance import fit_acceptance
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.errors import InputError
from speccascade.simulate.processes import IID, Markov, Positional
from speccascade.traces import HardwareInfo, Header, Knobs, ModelInfo, PairRecord, StepRecord, TraceWriter

ROOT = Path(__file__).resolve().parent.parent
HARDWARE = HardwareInfo(backend="cpu", device_kind="cpu", device_count=1, host="test")
MODELS = [ModelInfo(role=role, name=role, param_bytes=1, vocab_size=64, max_len=4096)
          for role in ("tiny", "draft", "target")]


def header(sampling: str = "T=1 top_k=0 top_p=1") -> Header:
    return Header(run_id="sim", created_utc="2026-01-01T00:00:00+00:00", hardware=HARDWARE, models=MODELS,
                  config={"sampling": sampling})


def rounds_of(accepted: np.ndarray, drafts) -> list[str]:
    """'A' * a + 'R' unless all ``drafts`` were accepted (a censored round)."""
    drafts = np.broadcast_to(drafts, np.shape(accepted))
    return ["A" * int(a) + ("R" if a < n else "") for a, n in zip(np.ravel(accepted), np.ravel(drafts))]


def pair(rounds: list[str], proposed: int) -> PairRecord:
    sequence = "|".join(rounds)
    marks = sequence.replace("|", "")
    return PairRecord(proposed=max(proposed, len(marks)), tested=len(marks), accepted=marks.count("A"),
                      beta_sum=0.0, sequence=sequence)


def speculative_steps(process, k: int, runs: int, steps: int, seed: int) -> list[list[StepRecord]]:
    """``runs`` generations of ``steps`` speculative steps each (lanes of the simulator's process)."""
    accepted = process.sample(np.random.default_rng(seed), k, steps, runs, None).accepted
    out = []
    for lane in range(runs):
        records = []
        for index, sequence in enumerate(rounds_of(accepted[:, lane], k)):
            records.append(StepRecord(strategy="speculative", knobs=Knobs(k=k), mode="fused", repeat=lane,
                                      step=index, context=16 + 4 * index, tokens_emitted=sequence.count("A") + 1,
                                      pairs={"draft->target": pair([sequence], k)}, step_ms=1.0))
        out.append(records)
    return out


def vertical_steps(outer, inner, k: int, k_tiny: int, runs: int, steps: int, seed: int) -> list[list[StepRecord]]:
    """Vertical cascade steps as simulate/steps.py's Vertical draws them: k reviews of k_tiny Tiny drafts (the inner
    chain runs on across reviews), then the Target judges the M delivered tokens."""
    rng = np.random.default_rng(seed)
    reviews = inner.sample(rng, k_tiny, steps * k, runs, None).accepted.reshape(steps, k, runs)
    delivered = reviews.sum(axis=1).astype(np.int64) + k
    verdicts = outer.sample(rng, k * (k_tiny + 1), steps, runs, None, proposed=delivered.astype(np.uint16)).accepted
    out = []
    for lane in range(runs):
        records = []
        for index in range(steps):
            tiny = rounds_of(reviews[index, :, lane], k_tiny)
            target = rounds_of(verdicts[index, lane:lane + 1], delivered[index, lane])
            records.append(StepRecord(
                strategy="vertical", knobs=Knobs(k=k, k_tiny=k_tiny), mode="fused", repeat=lane, step=index,
                context=16 + 8 * index, tokens_emitted=int(verdicts[index, lane]) + 1, step_ms=1.0,
                pairs={"tiny->draft": pair(tiny, k * k_tiny), "draft->target": pair(target, k * (k_tiny + 1))}))
        out.append(records)
    return out


def write_trace(path: Path, runs: list[list[StepRecord]], sampling: str = "T=1 top_k=0 top_p=1") -> Path:
    with TraceWriter(path, header(sampling)) as writer:
        for records in runs:
            for record in records:
                writer.write(record)
    return path


def covered(value: float, interval) -> bool:
    return interval is not None and interval[0] <= value <= interval[1]


# --- recovery at the stated rate -------------------------------------------------------------------------------
def test_iid_alpha_is_recovered_within_its_interval_at_the_stated_rate(tmp_path):
    hits, seeds = 0, 30
    for seed in range(seeds):
        alpha = (0.6, 0.8, 0.9)[seed % 3]
        path = write_trace(tmp_path / f"iid{seed}.jsonl", speculative_steps(IID(alpha), 4, 6, 150, seed))
        entry = fit_acceptance([path], bootstrap=400, seed=seed).entry("alpha")
        assert entry.steps == 900 and entry.runs == 6 and entry.strategies == ["speculative"]
        assert entry.judged > 900
        assert entry.ci[1] - entry.ci[0] < 0.08
        hits += covered(alpha, entry.ci)
    assert hits >= 25, f"95% intervals covered the true alpha in {hits} of {seeds} fits"


def test_markov_alpha_and_rho_are_recovered_and_the_chain_retained(tmp_path):
    alpha_hits = rho_hits = retained = positional = 0
    seeds = 16
    for seed in range(seeds):
        path = write_trace(tmp_path / f"markov{seed}.jsonl", speculative_steps(Markov(0.75, 0.5), 4, 8, 250, seed))
        entry = fit_acceptance([path], bootstrap=400, seed=seed).entry("alpha")
        alpha_hits += covered(0.75, entry.ci)
        rho_hits += covered(0.5, entry.markov.rho_ci)
        retained += entry.markov.significant and entry.rho is not None
        positional += entry.positional.significant
        assert abs(entry.markov.alpha - entry.alpha) < 0.02
    assert alpha_hits >= 13 and rho_hits >= 13, (alpha_hits, rho_hits)
    assert retained == seeds
    assert positional <= 2  # a chain's position effect is explained by its state (controlled test)


def test_positional_alphas_are_recovered_and_not_mistaken_for_a_chain(tmp_path):
    alphas = (0.95, 0.85, 0.7, 0.5)
    hits = total = chains = 0
    for seed in range(8):
        path = write_trace(tmp_path / f"pos{seed}.jsonl", speculative_steps(Positional(alphas), 4, 8, 250, seed))
        entry = fit_acceptance([path], bootstrap=400, seed=seed).entry("alpha")
        assert entry.positional.significant and len(entry.positional.alphas) == 4
        assert entry.positional.trials[0] == 2000
        hits += sum(covered(a, ci) for a, ci in zip(alphas, entry.positional.ci))
        total += len(alphas)
        chains += entry.markov.significant
    assert hits >= 0.8 * total, f"{hits} of {total}"
    assert chains <= 1


def test_likelihood_ratio_tests_have_a_sane_false_positive_rate_on_iid_data():
    rng = np.random.default_rng(7)
    p_values = {"markov": [], "positional": [], "markov_given_position": [], "positional_given_state": []}
    retained = 0
    for _ in range(200):
        accepted = IID(0.8).sample(rng, 4, 400, 1, None).accepted[:, 0]
        counts = mle.run_counts([[seq] for seq in rounds_of(accepted, 4)], 4)
        tests = mle.lrt_tests(counts.sum(axis=0), 4, min_trials=50, min_transitions=20)
        for name in p_values:
            p_values[name].append(getattr(tests, name))
        retained += mle.retained(tests.markov, tests.markov_given_position, 0.01)
        retained += mle.retained(tests.positional, tests.positional_given_state, 0.01)
    for name, values in p_values.items():
        rate = np.mean(np.array(values) < 0.05)
        assert 0.01 <= rate <= 0.10, f"{name}: {rate:.3f} of i.i.d. datasets below p = 0.05"
        assert 0.35 <= np.median(values) <= 0.65, name
    assert retained <= 6  # at most ~1.5% of 400 decisions at the 1% level


def test_vertical_rounds_fit_alpha_tiny_and_pool_alpha_with_speculative(tmp_path):
    runs = vertical_steps(IID(0.8), Markov(0.7, 0.4), 3, 3, 6, 200, seed=3)
    runs += speculative_steps(IID(0.8), 4, 4, 200, seed=4)
    path = write_trace(tmp_path / "vertical.jsonl", runs)
    fit = fit_acceptance([path], bootstrap=400)
    tiny, alpha = fit.entry("alpha_tiny"), fit.entry("alpha")
    assert tiny.pair == "tiny->draft" and tiny.models == {"tiny": "tiny", "draft": "draft"}
    assert covered(0.7, tiny.ci) and tiny.rho is not None and covered(0.4, tiny.markov.rho_ci)
    assert alpha.strategies == ["vertical", "speculative"] and covered(0.8, alpha.ci)
    assert alpha.homogeneity_p_value > 0.01 and alpha.rho is None
    assert {(entry.strategies[0], entry.parameter) for entry in fit.pairs} == {
        ("vertical", "alpha_tiny"), ("vertical", "alpha"), ("speculative", "alpha")}
    assert alpha.steps == sum(entry.steps for entry in fit.pairs if entry.parameter == "alpha")
    assert fit.document.provenance.steps_used == 2000 and fit.document.provenance.traces[0].steps == 2000


def test_filtered_steps_fit_gamma_total_apart_from_alpha(tmp_path):
    runs = speculative_steps(IID(0.6), 4, 3, 100, seed=5)
    for records in runs:
        for index, record in enumerate(records):
            records[index] = record.model_copy(update={"strategy": "filtered", "knobs": Knobs(k=4, filter_width=8)})
    runs += speculative_steps(IID(0.9), 4, 3, 100, seed=6)
    fit = fit_acceptance([write_trace(tmp_path / "filtered.jsonl", runs)], bootstrap=200)
    assert fit.entry("gamma_total").strategies == ["filtered"] and covered(0.6, fit.entry("gamma_total").ci)
    assert fit.entry("alpha").strategies == ["speculative"] and covered(0.9, fit.entry("alpha").ci)


# --- nothing silently dropped ----------------------------------------------------------------------------------
def test_unusable_records_are_reported_with_reasons(tmp_path):
    runs = speculative_steps(IID(0.8), 4, 2, 60, seed=1)
    bad = runs[0][10].model_copy(update={"pairs": {"draft->target": PairRecord(
        proposed=4, tested=2, accepted=1, beta_sum=0.0, sequence="RA")}})
    runs[0][10] = bad
    runs.append([StepRecord(strategy="autoregressive", mode="fused", repeat=0, step=index, context=5,
                            tokens_emitted=1, step_ms=1.0) for index in range(3)])
    path = write_trace(tmp_path / "mixed.jsonl", runs)
    with path.open("a") as handle:
        handle.write('{"kind": "step", "strategy": "spec')  # a killed run's partial last line
    fit = fit_acceptance([path], bootstrap=200)
    reasons = {item.reason: item for item in fit.skipped}
    prefix = next(item for reason, item in reasons.items() if "A after an R" in reason)
    assert prefix.records == 1 and prefix.file == str(path) and "step 10" in prefix.example
    assert reasons["autoregressive has no drafter->verifier pair"].records == 3
    assert any("partial last line" in reason for reason in reasons)
    entry = fit.entry("alpha")
    assert entry.steps == 119 and entry.runs == 3  # the bad step splits its run: the chain's state is lost there
    assert fit.document.provenance.records_skipped == 5
    assert any("A after an R" in line for line in fit.lines())


def test_replayed_runs_are_not_counted_twice(tmp_path):
    runs = speculative_steps(IID(0.8), 4, 2, 40, seed=2)
    replay = [record.model_copy(update={"repeat": 5}) for record in runs[0]]
    path = write_trace(tmp_path / "greedy.jsonl", runs + [replay], sampling="greedy")
    fit = fit_acceptance([path], bootstrap=200)
    assert fit.entry("alpha").steps == 80
    replayed = [item for item in fit.skipped if "replays" in item.reason]
    assert len(replayed) == 1 and replayed[0].records == 40 and replayed[0].example == "repeat 5 = repeat 0"
    sampled = write_trace(tmp_path / "sampled.jsonl", runs + [replay])  # other seed: real new evidence
    assert fit_acceptance([sampled], bootstrap=200).entry("alpha").steps == 120
    # runtime bench's header lists the prompts: repeat r decodes prompt r mod n, so equal sequences of two
    # different prompts (of equal length) are both evidence, while repeat n + r replays repeat r
    bench = header("greedy").model_copy(update={"config": {"sampling": "greedy", "prompt_tokens": [16, 16]}})
    other_prompt = [record.model_copy(update={"repeat": 1}) for record in runs[0]]
    same_prompt = [record.model_copy(update={"repeat": 2}) for record in runs[0]]
    with TraceWriter(tmp_path / "bench.jsonl", bench) as writer:
        for record in runs[0] + other_prompt + same_prompt:
            writer.write(record)
    fit = fit_acceptance([tmp_path / "bench.jsonl"], bootstrap=200)
    assert fit.entry("alpha").steps == 80 and [item.example for item in fit.skipped] == ["repeat 2 = repeat 0"]


def test_too_few_steps_says_so(tmp_path):
    path = write_trace(tmp_path / "short.jsonl", speculative_steps(IID(0.8), 4, 1, 5, seed=0))
    with pytest.raises(InputError, match=r"no acceptance could be fitted from .*short.jsonl: too few steps"):
        fit_acceptance([path])
    with pytest.raises(InputError, match="at least 100 resamples"):
        fit_acceptance([path], bootstrap=10)


def test_malformed_traces_name_file_and_line(tmp_path):
    path = write_trace(tmp_path / "broken.jsonl", speculative_steps(IID(0.8), 4, 1, 20, seed=0))
    lines = path.read_text().splitlines()
    lines[3] = '{"kind": "step", "strategy": "speculative"}'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"broken.jsonl:4: malformed trace record"):
        fit_acceptance([path])
    v1 = tmp_path / "v1.jsonl"
    v1.write_text(json.dumps({"kind": "header", "schema_version": 1, "run_id": "old", "created_utc": "x",
                              "hardware": {"backend": "cpu", "device_kind": "cpu", "device_count": 1, "host": "x"}})
                  + "\n")
    good = write_trace(tmp_path / "good.jsonl", speculative_steps(IID(0.8), 4, 1, 20, seed=0))
    with pytest.raises(InputError, match="traces mix schema versions"):
        fit_acceptance([v1, good])
    with pytest.raises(InputError, match="trace file not found: .*missing.jsonl"):
        fit_acceptance([tmp_path / "missing.jsonl"])


# --- the acceptance file ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Acceptance files: i.i.d. speculative (alpha 0.8), Markov speculative (rho 0.5), a vertical cascade."""
    folder = tmp_path_factory.mktemp("acceptance")
    files = {}
    for name, runs in (("iid", speculative_steps(IID(0.8), 4, 6, 200, 11)),
                       ("markov", speculative_steps(Markov(0.75, 0.5), 4, 6, 300, 12)),
                       ("vertical", vertical_steps(IID(0.85), IID(0.7), 3, 3, 6, 150, 13))):
        trace = write_trace(folder / f"{name}.jsonl", runs)
        files[name] = fit_acceptance([trace], bootstrap=300).write(folder / f"{name}.json")
    return files


def test_file_round_trip_gives_identical_predictions(fitted):
    for name, path in fitted.items():
        document = AcceptanceFile.read(path)
        again = AcceptanceFile.model_validate_json(path.read_text())
        assert document.model_dump() == again.model_dump()
        assert document.provenance.traces[0].sha256 and len(document.provenance.traces[0].sha256) == 64
    vertical = AcceptanceFile.read(fitted["vertical"])
    hardware = dict(hardware="tpu-v5e", chips=2, target="gemma-7b", draft="gemma-2b:int8", tiny="tiny-10m", k=4)
    from_file = predict(PredictConfig(acceptance=vertical, **hardware))
    from_path = predict(PredictConfig(acceptance=str(fitted["vertical"]), **hardware))
    values = vertical.values()
    explicit = predict(PredictConfig(alpha=values["alpha"].alpha, alpha_tiny=values["alpha_tiny"].alpha, **hardware))
    assert from_file.to_json() == from_path.to_json() == explicit.to_json()
    rewritten = vertical.write(Path(fitted["vertical"]).with_name("rewritten.json"))
    assert AcceptanceFile.read(rewritten).model_dump() == vertical.model_dump()


def test_explicit_settings_win_over_the_file(fitted):
    document = AcceptanceFile.read(fitted["vertical"])
    config = PredictConfig(acceptance=document, alpha=0.5, c=0.05, c_tiny=0.01, k=4)
    assert config.alpha == 0.5 and config.alpha_tiny == document.entry("alpha_tiny").alpha
    assert config.model_dump()["alpha_tiny"] == config.alpha_tiny and "acceptance" not in config.model_dump()


def test_gamma_total_fills_the_filtered_cascade(capsys, tmp_path):
    runs = speculative_steps(IID(0.6), 4, 4, 100, seed=5)
    runs = [[record.model_copy(update={"strategy": "filtered", "knobs": Knobs(k=4, filter_width=8)})
             for record in records] for records in runs]
    path = fit_acceptance([write_trace(tmp_path / "f.jsonl", runs)], bootstrap=200).write(tmp_path / "f.json")
    gamma = AcceptanceFile.read(path).entry("gamma_total").alpha
    base = dict(strategy="filtered", c=0.05, c_tiny=0.01, k=4, alpha=0.9)
    assert predict(PredictConfig(acceptance=str(path), **base)).to_json() == predict(
        PredictConfig(gamma_total=gamma, **base)).to_json()
    code, out, _ = run(capsys, "predict", "--strategy", "filtered", "--c", "0.05", "--c-tiny", "0.01", "--alpha",
                       "0.9", "--acceptance", str(path), "--json")
    assert code == 0 and json.loads(out)["expected_tokens_per_step"] == pytest.approx((1 - gamma**5) / (1 - gamma))
    code, out, err = run(capsys, "optimize", "--acceptance", str(path), "--alpha", "0.9", "--c", "0.05", "--c-tiny",
                         "0.01", "--strategies", "filtered", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert any(f"gamma_total / alpha = {gamma / 0.9:.4f}" in note for note in result["acceptance"])
    assert result["best"]["acceptance"] == pytest.approx(gamma)


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("{not json", "not valid JSON"),
    ('{"kind": "summary"}', "not an acceptance file"),
    ('{"kind": "acceptance", "version": 2}', "version 2 is newer than this reader"),
    ('{"kind": "acceptance", "version": "1"}', "version must be an integer"),
    ('{"kind": "acceptance", "version": 1, "parameters": []}', "missing field 'provenance'"),
])
def test_malformed_acceptance_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "fit.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        AcceptanceFile.read(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_file_with_several_model_sets_asks_which(fitted, tmp_path):
    document = AcceptanceFile.read(fitted["iid"])
    entry = document.parameters[0]
    other = entry.model_copy(update={"models": {"draft": "draft", "target": "target-bf16"}, "alpha": 0.5})
    both = document.model_copy(update={"parameters": [entry, other]})
    with pytest.raises(InputError, match=r"2 fits of alpha .*target-bf16"):
        both.values()
    assert both.values({"target": "runs/target-bf16.toml"})["alpha"].alpha == 0.5
    assert both.values({"target": "target"})["alpha"].alpha == entry.alpha


# --- the command line ------------------------------------------------------------------------------------------
def test_predict_optimize_sweep_take_the_file(capsys, fitted, tmp_path):
    alpha = AcceptanceFile.read(fitted["iid"]).entry("alpha").alpha
    flags = ["--c", "0.05", "--k", "4", "--json"]
    code, out, _ = run(capsys, "predict", "--acceptance", str(fitted["iid"]), *flags)
    measured = json.loads(out)
    code2, out2, _ = run(capsys, "predict", "--alpha", repr(alpha), *flags)
    assert code == code2 == 0
    assert measured.pop("acceptance")["parameters"]["alpha"]["used"] is True and measured == json.loads(out2)
    code, out, _ = run(capsys, "predict", "--acceptance", str(fitted["iid"]), "--alpha", "0.5", *flags)
    report = json.loads(out)["acceptance"]["parameters"]["alpha"]
    assert report["used"] is False and json.loads(out)["expected_tokens_per_step"] == pytest.approx(1.9375)
    code, out, _ = run(capsys, "optimize", "--acceptance", str(fitted["iid"]), "--c", "0.05", "--json")
    code2, out2, _ = run(capsys, "optimize", "--alpha", repr(alpha), "--c", "0.05", "--json")
    assert code == code2 == 0 and json.loads(out)["best"] == json.loads(out2)["best"]
    sweeps = []
    for index, acceptance in enumerate((["--acceptance", str(fitted["iid"])], ["--alpha", repr(alpha)])):
        code, out, err = run(capsys, "sweep", *acceptance, "--c", "0.05", "--grid", "k=1,2,4,8",
                             "--out", str(tmp_path / f"sweep{index}"), "--formats", "csv", "--no-plots", "--json")
        assert code == 0, err
        sweeps.append((tmp_path / f"sweep{index}" / "sweep.csv").read_text())
    assert sweeps[0] == sweeps[1]


def test_toml_config_names_the_file_relative_to_itself(capsys, fitted, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "run.toml").write_text(f'c = 0.05\nk = 4\nacceptance = "{Path(fitted["markov"]).name}"\n')
    (folder / Path(fitted["markov"]).name).write_text(Path(fitted["markov"]).read_text())
    code, out, err = run(capsys, "predict", "--config", str(folder / "run.toml"), "--json")
    assert code == 0, err
    assert json.loads(out)["acceptance"]["parameters"]["alpha"]["used"] is True
    (folder / "bad.toml").write_text('c = 0.05\nacceptance = "nope.json"\n')
    code, _, err = run(capsys, "predict", "--config", str(folder / "bad.toml"))
    assert code == 2 and "nope.json: file not found" in err and len(err.strip().splitlines()) == 1


def test_simulate_runs_the_fitted_markov_chain_and_says_so(capsys, fitted):
    document = AcceptanceFile.read(fitted["markov"])
    entry = document.entry("alpha")
    assert entry.rho is not None
    code, out, _ = run(capsys, "simulate", "--acceptance", str(fitted["markov"]), "--c", "0.05", "--k", "4",
                       "--steps", "40000", "--json")
    result = json.loads(out)
    assert code == 0 and result["process"]["process"] == "markov"
    assert result["process"]["rho"] == pytest.approx(entry.markov.rho)
    assert result["process"]["alpha"] == pytest.approx(entry.alpha)
    assert any("Markov process, rho = " in line for line in result["acceptance"]["processes"])
    code, out, _ = run(capsys, "simulate", "--acceptance", str(fitted["markov"]), "--c", "0.05", "--k", "4",
                       "--steps", "40000")
    assert code == 0 and "Markov process, rho" in out.replace("\n", " ")
    code, out, _ = run(capsys, "simulate", "--acceptance", str(fitted["iid"]), "--c", "0.05", "--steps", "40000",
                       "--json")
    assert json.loads(out)["process"]["process"] == "iid"
    code, out, _ = run(capsys, "simulate", "--acceptance", str(fitted["markov"]), "--c", "0.05", "--process",
                       "iid", "--steps", "40000", "--json")
    assert json.loads(out)["process"]["process"] == "iid"  # a given --process wins


@pytest.mark.parametrize("command", ["predict", "simulate", "optimize", "sweep"])
def test_cli_errors_are_one_line_naming_the_file(capsys, tmp_path, command):
    path = tmp_path / "broken.json"
    path.write_text('{"kind": "acceptance", "version": 1, "provenance": {}}')
    code, _, err = run(capsys, command, "--acceptance", str(path), "--c", "0.05")
    assert code == 2 and str(path) in err and len(err.strip().splitlines()) == 1


def test_calibration_imports_no_jax():
    code = ("import sys\nimport speccascade.calibrate.acceptance, speccascade.acceptance_file\n"
            "assert 'jax' not in sys.modules, 'jax was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
