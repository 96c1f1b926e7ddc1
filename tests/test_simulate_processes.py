"""Acceptance processes, correlation, policies, empirical replay, request cutting and timing consistency."""

import json

import numpy as np
import pytest

from speccascade.costmodel.acceptance import expected_tokens
from speccascade.costmodel.config import PredictConfig
from speccascade.costmodel.predict import predict
from speccascade.errors import InputError
from speccascade.simulate import (IID, ConfidenceThreshold, EmpiricalBetas, EmpiricalOutcomes, FixedK, Markov,
                                  Positional, build_step_model, load_empirical, markov_rho_range, parse_empirical,
                                  simulate)
from speccascade.simulate.exact import markov_survival, process_survival
from speccascade.simulate.processes import geometric_run
from speccascade.simulate.requests import RequestCutter

SPECULATIVE = PredictConfig(alpha=0.8, k=4, c=0.05)


def test_geometric_run_has_the_truncated_geometric_law():
    rng = np.random.default_rng(0)
    runs = geometric_run(rng, 0.7, 5, (2000, 1000))
    for j in range(7):
        expected = 0.7**j if j <= 5 else 0.0
        assert (runs >= j).mean() == pytest.approx(expected, abs=4 * np.sqrt(0.25 / runs.size) + 1e-12)
    assert geometric_run(rng, 0.0, 5, (3,)).tolist() == [0, 0, 0]
    assert geometric_run(rng, 1.0, 5, (3,)).tolist() == [5, 5, 5]


def test_markov_with_rho_zero_is_iid():
    for alpha, k in [(0.3, 2), (0.8, 4), (0.95, 9)]:
        assert markov_survival(Markov(alpha, 0.0), k) == pytest.approx(process_survival(IID(alpha), k))
        assert markov_survival(Markov(alpha, 0.0), k).sum() == pytest.approx(float(expected_tokens(alpha, k)))


def test_markov_chain_has_the_stated_mean_and_lag_one_correlation():
    """Judged-token stream of a persistent chain: mean alpha and lag-1 autocorrelation rho."""
    process = Markov(0.7, 0.4)
    rng = np.random.default_rng(1)
    data = process.sample(rng, 1, 20_000, 64, process.initial_state(rng, 64, 1))   # K = 1: every step judges 1
    outcomes = data.accepted.astype(float)                                          # (steps, lanes)
    assert outcomes.mean() == pytest.approx(0.7, abs=0.005)
    centred = outcomes - outcomes.mean()
    correlation = (centred[1:] * centred[:-1]).mean() / centred.var()
    assert correlation == pytest.approx(0.4, abs=0.01)


@pytest.mark.parametrize("alpha,rho,k", [(0.8, 0.5, 4), (0.6, 0.3, 8), (0.9, -0.1, 3), (0.5, -0.9, 5), (0.5, 0.9, 6)])
def test_markov_simulation_matches_its_exact_mean(alpha, rho, k):
    config = PredictConfig(alpha=alpha, k=k, c=0.05)
    for persistent in (True, False):
        result = simulate(config, process=Markov(alpha, rho, persistent), steps=400_000, seed=7)
        assert abs(result.z_score) < 3.0, (persistent, result.mean_tokens_per_step, result.closed_form_tokens_per_step)


def test_positive_correlation_lowers_tokens_per_step_when_bursts_persist():
    """Same mean alpha = 0.8, K = 4. i.i.d.: E = 3.3616. Bursts that outlive steps (persistent chain, rho > 0)
    lower E (rho 0.5: 3.1646) because a hard span costs one whole step per token; bursts confined to a step raise it
    (rho 0.5, reset every step: 3.7512); anti-correlation (rho < 0) raises it. Pinned against the simulation."""
    iid = float(expected_tokens(0.8, 4))
    runs = {label: simulate(SPECULATIVE, process=process, steps=1_000_000, seed=2)
            for label, process in {"iid": IID(0.8), "persistent": Markov(0.8, 0.5),
                                   "reset": Markov(0.8, 0.5, persistent=False),
                                   "anti": Markov(0.8, -0.2)}.items()}
    assert abs(runs["iid"].mean_tokens_per_step - iid) < 3 * runs["iid"].stderr_tokens_per_step
    persistent, reset, anti = runs["persistent"], runs["reset"], runs["anti"]
    assert persistent.closed_form_tokens_per_step == pytest.approx(3.16459, abs=1e-5)
    assert reset.closed_form_tokens_per_step == pytest.approx(3.7512, abs=1e-9)
    assert iid - persistent.mean_tokens_per_step > 20 * persistent.stderr_tokens_per_step
    assert reset.mean_tokens_per_step - iid > 20 * reset.stderr_tokens_per_step
    assert anti.mean_tokens_per_step - iid > 10 * anti.stderr_tokens_per_step
    # the tails widen with persistent bursts: p99 ms/token of a 256-token answer grows
    assert persistent.ms_per_token.p99 > runs["iid"].ms_per_token.p99


def test_rho_range_keeps_transition_probabilities_valid():
    assert markov_rho_range(0.8) == pytest.approx((-0.25, 1.0))
    assert markov_rho_range(0.2) == pytest.approx((-0.25, 1.0))
    assert markov_rho_range(0.5) == pytest.approx((-1.0, 1.0))
    for alpha in (0.1, 0.5, 0.8, 0.99):
        low, high = markov_rho_range(alpha)
        for rho in (low, 0.0, high):
            process = Markov(alpha, rho)
            assert 0.0 <= process.p01 <= 1.0 and 0.0 <= process.p11 <= 1.0
        with pytest.raises(InputError, match="rho"):
            Markov(alpha, low - 0.01)
        with pytest.raises(InputError, match="rho"):
            Markov(alpha, 1.01)


def test_positional_process_matches_horizontal_closed_form_and_checks_k():
    alphas = (0.95, 0.9, 0.7, 0.5, 0.2)
    result = simulate(PredictConfig(alpha=0.7, k=5, c=0.05), process=Positional(alphas), steps=300_000, seed=4)
    assert result.closed_form_source.endswith("horizontal_expected_tokens")
    assert abs(result.z_score) < 3.0
    with pytest.raises(InputError, match="K = 6"):
        simulate(PredictConfig(alpha=0.7, k=6, c=0.05), process=Positional(alphas), steps=10)


def test_threshold_policy_stops_at_low_confidence_and_charges_its_forwards():
    """Positional alphas 0.95, 0.9, 0.5, 0.9: threshold 0.6 proposes 2 drafts and runs 3 draft forwards."""
    alphas = (0.95, 0.9, 0.5, 0.9)
    config = PredictConfig(alpha=0.8, k=4, c=0.1)
    result = simulate(config, process=Positional(alphas), policy=ConfidenceThreshold(0.6), steps=200_000, seed=1)
    assert result.histogram["counts"][3:] == [0, 0]            # never more than 2 accepted + 1
    expected = 1 + 0.95 + 0.95 * 0.9
    assert abs(result.mean_tokens_per_step - expected) < 3 * result.stderr_tokens_per_step
    assert result.step_ms.mean == pytest.approx(3 * 0.1 + 1.0)   # abstract mode: 3 draft forwards + verify
    fixed = simulate(config, process=Positional(alphas), policy=FixedK(), steps=10_000, seed=1)
    assert fixed.step_ms.mean == pytest.approx(4 * 0.1 + 1.0)


def test_policy_step_times_agree_with_the_cost_model_in_hardware_mode():
    config = PredictConfig(hardware="tpu-v5e", chips=2, target="gemma-7b", draft="gemma-2b:int8", k=4, alpha=0.8)
    model, prediction = build_step_model(config, policy=ConfidenceThreshold(0.0))
    assert model.step_ms_table[4] == pytest.approx(prediction.step_ms, rel=1e-9)   # threshold 0: always K
    assert np.all(np.diff(model.step_ms_table) > 0)
    result = simulate(config, policy=ConfidenceThreshold(0.0), steps=50_000, seed=0)
    assert result.ms_per_token.mean == pytest.approx(prediction.ms_per_token, rel=0.01)


def test_markov_threshold_policy_never_gets_stuck():
    """After a rejection the Markov confidence (p01 = 0.4) is below the threshold: the step proposes nothing, the
    target writes one token and the chain moves on, so acceptance resumes."""
    result = simulate(SPECULATIVE, process=Markov(0.8, 0.5), policy=ConfidenceThreshold(0.6), steps=200_000, seed=0)
    assert 1.5 < result.mean_tokens_per_step < 5.0
    assert result.histogram["counts"][-1] > 0


def test_policies_are_pluggable():
    class TwoDrafts:
        name = "two"

        def propose(self, confidence):
            return np.full(confidence.shape[:-1], 2)

        def draft_forwards(self, proposed, k):
            return np.asarray(proposed)

    result = simulate(SPECULATIVE, policy=TwoDrafts(), steps=100_000, seed=0)
    assert abs(result.mean_tokens_per_step - float(expected_tokens(0.8, 2))) < 3 * result.stderr_tokens_per_step
    assert result.step_ms.mean == pytest.approx(2 * 0.05 + 1.0)
    with pytest.raises(InputError, match="propose"):
        simulate(SPECULATIVE, policy=object(), steps=10)
    with pytest.raises(InputError, match="policies apply"):
        simulate(PredictConfig(alpha=0.8, alpha_tiny=0.8, k=2, c=0.1, c_tiny=0.01), policy=TwoDrafts(), steps=10)


def test_replayed_outcomes_follow_the_record():
    # "1, 1, 0" repeated: from any offset the replay locks onto 3-token steps after at most two steps
    data = parse_empirical({"outcomes": [[1, 1, 0]] * 50})
    result = simulate(SPECULATIVE, process=EmpiricalOutcomes(data), steps=200_000, seed=0)
    assert result.mean_tokens_per_step == pytest.approx(3.0, abs=0.01)
    every_token = parse_empirical([True] * 10)
    assert simulate(SPECULATIVE, process=EmpiricalOutcomes(every_token), steps=1000).mean_tokens_per_step == 5.0


def test_recorded_bernoulli_outcomes_reproduce_iid():
    rng = np.random.default_rng(3)
    data = parse_empirical({"outcomes": (rng.random((400, 500)) < 0.75).astype(int).tolist()})
    result = simulate(PredictConfig(alpha=0.75, k=5, c=0.05), process=EmpiricalOutcomes(data), steps=400_000)
    assert result.mean_tokens_per_step == pytest.approx(float(expected_tokens(0.75, 5)), rel=0.01)


def test_empirical_betas_iid_resampling_is_iid_with_mean_beta_and_feeds_the_policy():
    rng = np.random.default_rng(2)
    betas = rng.beta(3, 1, size=(50, 40))
    data = parse_empirical({"betas": betas.tolist()})
    result = simulate(SPECULATIVE, process=EmpiricalBetas(data, "iid"), steps=300_000, seed=0)
    assert result.closed_form_tokens_per_step == pytest.approx(float(expected_tokens(betas.mean(), 4)))
    assert abs(result.z_score) < 3.0
    stream = simulate(SPECULATIVE, process=EmpiricalBetas(data, "stream"), steps=300_000, seed=0)
    assert stream.closed_form_tokens_per_step is None
    assert stream.mean_tokens_per_step == pytest.approx(result.mean_tokens_per_step, rel=0.02)
    gated = simulate(SPECULATIVE, process=EmpiricalBetas(data, "iid"), policy=ConfidenceThreshold(0.5),
                     steps=100_000, seed=0)
    assert gated.step_ms.mean < result.step_ms.mean


def test_empirical_files_json_jsonl_and_runtime_trace(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"outcomes": [[1, 0], [1, 1, 1, 0]]}))
    assert load_empirical(tmp_path / "a.json").kind == "outcomes"
    (tmp_path / "b.jsonl").write_text('{"betas": [0.9, 0.5]}\n[0.2, 0.7]\n')
    data = load_empirical(tmp_path / "b.jsonl")
    assert data.kind == "betas" and data.tokens == 4
    header = {"kind": "header", "schema_version": 1, "run_id": "r", "created_utc": "now",
              "hardware": {"backend": "cpu", "device_kind": "cpu", "device_count": 1, "host": "x"}}
    steps = [{"kind": "step", "strategy": "spec", "mode": "fused", "repeat": 0, "step": i, "context": i,
              "tokens_emitted": 2, "step_ms": 1.0,
              "pairs": {"draft->target": {"proposed": 3, "tested": 2, "accepted": 1, "beta_sum": 1.2,
                                          "sequence": "AR"}}} for i in range(5)]
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(json.dumps(record) for record in [header, *steps]) + "\n" + '{"kind": "st')
    data = load_empirical(trace)
    assert data.kind == "outcomes" and data.tokens == 10 and float(np.concatenate(data.sequences).mean()) == 0.5
    with pytest.raises(InputError, match="pairs found: draft->target"):
        load_empirical(trace, pair="tiny->draft")
    assert load_empirical(trace, strategy="spec").tokens == 10
    with pytest.raises(InputError, match="of strategy 'cascade'"):
        load_empirical(trace, strategy="cascade")


@pytest.mark.parametrize("content,message", [
    ("", "empty file"),
    ("{\"outcomes\": []}", "no recorded tokens"),
    ("{\"outcomes\": [[1, 2]]}", "0/1"),
    ("{\"betas\": [0.5, 1.5]}", r"\[0, 1\]"),
    ("{\"betas\": [0.5, \"x\"]}", "non-numeric"),
    ("{\"samples\": [1]}", "expected a key"),
    ("[1, 0]\n{oops\n[1]\n", ":2: not valid JSON"),
    ("{\"outcomes\": [[1], 0]}", "mixes numbers and lists"),
])
def test_bad_empirical_data_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_empirical(path)


def test_request_cutter_matches_a_plain_loop():
    rng = np.random.default_rng(9)
    blocks = [rng.integers(1, 6, size=(rows, 3)).astype(np.uint8) for rows in (40, 7, 55)]
    times = [rng.random((block.shape)) for block in blocks]
    cutter = RequestCutter(3, 17)
    for block, step_ms in zip(blocks, times):
        cutter.add(block, step_ms)
    latencies, counts = cutter.results()
    expected = []
    tokens, ms = np.concatenate(blocks), np.concatenate(times)
    for lane in range(3):
        total, steps, elapsed = 0, 0, 0.0
        for step in range(tokens.shape[0]):
            total, steps, elapsed = total + int(tokens[step, lane]), steps + 1, elapsed + ms[step, lane]
            if total >= 17:
                expected.append((lane, steps, elapsed))
                total, steps, elapsed = 0, 0, 0.0
    assert sorted(counts.tolist()) == sorted(steps for _, steps, _ in expected)
    assert sorted(latencies.tolist()) == pytest.approx(sorted(elapsed for _, _, elapsed in expected))


def test_request_latency_under_fixed_step_time():
    """Every step takes step_ms, so a request's latency is (steps to reach N tokens) x step_ms."""
    result = simulate(PredictConfig(alpha=0.9, k=4, c=0.1), steps=200_000, seed=0, tokens=100)
    step = predict(PredictConfig(alpha=0.9, k=4, c=0.1)).step_ms
    assert result.request_latency_ms.p50 / step == pytest.approx(round(result.request_latency_ms.p50 / step))
    assert result.request_latency_ms.p50 <= result.request_latency_ms.p95 <= result.request_latency_ms.p99
    assert result.ms_per_token.mean == pytest.approx(step / result.mean_tokens_per_step, rel=1e-9)
