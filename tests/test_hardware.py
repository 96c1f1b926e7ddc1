"""Chip and model profiles, the hardware CLI, and a quick probe of this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speccascade.cli import main
from speccascade.hardware import InputError, UnknownNameError, list_chips, list_models, load_chip, load_model

GiB = 1 << 30
SHIPPED_CHIPS = {"tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e", "v100", "a100-40g", "a100-80g", "h100-sxm", "h200", "l4",
                 "tpu-v5e-as-stated", "rtx-3090", "rtx-4090", "a10g", "l40s"}
SHIPPED_MODELS = {"gemma-2b", "gemma-7b", "llama-2-7b", "llama-2-13b", "llama-2-70b", "vicuna-7b", "vicuna-13b",
                  "vicuna-33b", "llama-3-8b", "llama-3-70b", "mistral-7b", "tiny-10m"}


@pytest.fixture(autouse=True)
def empty_user_home(tmp_path, monkeypatch):
    """Profiles a user probed on this machine must not leak into the tests."""
    monkeypatch.setenv("SPECCASCADE_HOME", str(tmp_path / "home"))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``speccascade ARGV`` through :func:`main`; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def decoder_params(model) -> float:
    """Parameters from the architecture: embedding (+ untied lm_head) + layers x (attention + gated MLP + 2 norms)
    + final norm; the projection model is V*(d_model + d_ff + 1) + d_ff*(d_model + 3)."""
    if model.architecture == "projection":
        return model.vocab * (model.d_model + model.d_ff + 1) + model.d_ff * (model.d_model + 3)
    d, hd = model.d_model, model.head_dim
    attention = d * model.heads * hd * 2 + d * model.kv_heads * hd * 2
    per_layer = attention + 3 * d * model.d_ff + 2 * d
    embeddings = model.vocab * d * (1 if model.tied_embeddings else 2)
    return embeddings + model.layers * per_layer + d


# --- shipped profiles -------------------------------------------------------------------------------------
def test_every_shipped_profile_is_listed_and_validates():
    assert SHIPPED_CHIPS <= set(list_chips())
    assert SHIPPED_MODELS <= set(list_models())
    for name in list_chips():
        chip = load_chip(name)
        assert chip.name == name
        assert chip.corrections.calibrated is False  # shipped profiles hold datasheet peaks only
        assert all(level.source for level in chip.memory), name
    for name in list_models():
        assert load_model(name).name == name


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_stated_params_match_the_architecture(name):
    model = load_model(name)
    assert decoder_params(model) == pytest.approx(model.params_total, rel=2e-3)


def test_gemma_7b_weights_fill_a_v5e_chip():
    """17.08e9 bytes in bf16: above the datasheet's "16 GB" but just under 16 GiB (99.4%), so one chip holds the
    weights with ~0.1 GB to spare: no room for the seed's int8 Gemma-2B draft, nor for a KV cache of 256 tokens."""
    gemma, draft, hbm = load_model("gemma-7b"), load_model("gemma-2b:int8"), load_chip("tpu-v5e").memory[-1]
    assert gemma.weight_bytes == pytest.approx(17.08e9, rel=0.01)
    assert gemma.weight_bytes > 16e9
    assert gemma.weight_bytes == pytest.approx(16 * GiB, rel=0.01) and hbm.capacity_bytes == 16 * GiB
    assert gemma.weight_bytes + draft.weight_bytes > hbm.capacity_bytes
    assert gemma.weight_bytes + 256 * gemma.kv_bytes_per_token > hbm.capacity_bytes


def test_tiny_is_about_ten_million_params_and_20_mb_in_bf16():
    tiny = load_model("tiny-10m")
    assert tiny.architecture == "projection" and tiny.vocab == 256000
    assert tiny.params_total == pytest.approx(10e6, rel=0.01)
    assert tiny.weight_bytes == pytest.approx(20e6, rel=0.01)


def test_quantization_suffix_scales_weight_bytes():
    bf16, int8, int4 = load_model("gemma-2b"), load_model("gemma-2b:int8"), load_model("gemma-2b:int4")
    assert int8.weight_bytes == pytest.approx(bf16.weight_bytes / 2)
    assert int4.weight_bytes == pytest.approx(bf16.weight_bytes / 4)
    assert int8.name == "gemma-2b:int8" and int8.params_total == bf16.params_total
    with pytest.raises(InputError, match="unknown quantization"):
        load_model("gemma-2b:int3")


def test_architecture_spot_numbers():
    assert load_model("gemma-2b").kv_heads == 1 and load_model("gemma-2b").head_dim == 256
    for name in ("llama-3-8b", "llama-3-70b", "mistral-7b", "llama-2-70b"):
        assert load_model(name).kv_heads == 8
    assert load_model("llama-3-8b").vocab == 128256


def test_as_stated_v5e_keeps_the_seed_figures_apart_from_the_documented_ones():
    stated, documented = load_chip("tpu-v5e-as-stated"), load_chip("tpu-v5e")
    assert stated.level("VMEM").capacity_bytes == 16 * (1 << 20)
    assert documented.level("VMEM").capacity_bytes == 128 * (1 << 20)
    assert documented.cores_per_chip == 1 and stated.cores_per_chip == 16
    assert stated.level("HBM").bandwidth_bytes_per_s == documented.level("HBM").bandwidth_bytes_per_s == 819e9


def test_gpu_profiles_use_dense_peaks_and_fastest_level_first():
    h100 = load_chip("h100-sxm")
    assert h100.peak_flops["bf16"] == 989e12  # dense, not the 1979 sparse headline
    assert [level.name for level in h100.memory] == ["L2", "HBM"]
    assert h100.memory[-1].bandwidth_bytes_per_s == 3.35e12
    assert load_chip("v100").memory[-1].capacity_bytes == 16e9


@pytest.mark.parametrize("name, bf16, int8, bandwidth", [
    ("rtx-3090", 71e12, 284e12, 936e9),     # GeForce: fp32-accumulate rate (half of fp16-accumulate 142), dense
    ("rtx-4090", 165.2e12, 660.6e12, 1008e9),
    ("a10g", 70e12, 140e12, 600e9),         # disputed tensor peaks (no NVIDIA datasheet); memory is not disputed
    ("l40s", 362.05e12, 733e12, 864e9),     # datasheet dense, not the 733 sparse headline
])
def test_validation_gpu_profiles_use_dense_fp32_accumulate_peaks(name, bf16, int8, bandwidth):
    chip = load_chip(name)
    assert chip.peak_flops["bf16"] == bf16 and chip.peak_flops["int8"] == int8
    assert chip.memory[-1].bandwidth_bytes_per_s == bandwidth and chip.memory[0].name == "L2"
    assert any("disputed" in note.lower() for note in chip.notes)


# --- bad input --------------------------------------------------------------------------------------------
def test_unknown_chip_name_lists_known_names():
    with pytest.raises(UnknownNameError) as error:
        load_chip("tpu-v99")
    assert "tpu-v5e" in str(error.value) and "\n" not in str(error.value)


def test_cli_unknown_name_is_one_line_and_exit_2(capsys):
    code, out, err = run_cli(capsys, "hardware", "show", "tpu-v99")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: unknown")
    assert "tpu-v5e" in err and "gemma-7b" in err
    assert "Traceback" not in err + out


def test_cli_malformed_toml_is_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nvendor = \n')
    code, _, err = run_cli(capsys, "hardware", "show", str(broken))
    assert code == 2 and "not valid TOML" in err and err.count("\n") == 1
    misspelled = tmp_path / "misspelled.toml"
    misspelled.write_text(_shipped("chips", "tpu-v5e").read_text().replace("cores_per_chip", "core_per_chip"))
    code, _, err = run_cli(capsys, "hardware", "show", str(misspelled))
    assert code == 2 and "_per_chip" in err and err.count("\n") == 1  # names the missing or misspelled field


def _shipped(kind: str, name: str) -> Path:
    from speccascade.hardware.registry import _package_dir

    return _package_dir(kind) / f"{name}.toml"


# --- CLI output -------------------------------------------------------------------------------------------
def test_cli_list_json(capsys):
    code, out, _ = run_cli(capsys, "hardware", "list", "--json")
    assert code == 0
    listing = json.loads(out)
    assert SHIPPED_CHIPS <= {chip["name"] for chip in listing["chips"]}
    assert SHIPPED_MODELS <= {model["name"] for model in listing["models"]}
    v5e = next(chip for chip in listing["chips"] if chip["name"] == "tpu-v5e")
    assert v5e["levels"] == ["VMEM", "HBM"] and v5e["main_bandwidth_bytes_per_s"] == 819e9


def test_cli_list_and_show_tables(capsys):
    code, out, _ = run_cli(capsys, "hardware", "list")
    assert code == 0 and "tpu-v5e-as-stated" in out and "tiny-10m" in out
    code, out, _ = run_cli(capsys, "hardware", "show", "tpu-v5p")
    assert code == 0 and "disputed" in out
    code, out, _ = run_cli(capsys, "hardware", "show", "gemma-2b:int8", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["kind"] == "model" and shown["dtype"] == "int8"


def test_model_profiles_by_path_are_written_and_read_afresh(tmp_path):
    from speccascade.hardware import write_model_toml

    for name in SHIPPED_MODELS:  # the writer's format reads back exactly
        profile = load_model(name)
        assert load_model(str(write_model_toml(profile, tmp_path / f"{name}.toml", {"layers": "from the test"}))) == profile
    path = tmp_path / "gemma-2b.toml"
    assert "layers = 18" in path.read_text() and "# from the test" in path.read_text()
    assert load_model(f"{path}:int8") == load_model("gemma-2b:int8")
    write_model_toml(load_model("gemma-7b"), path)  # the same path, another profile: not cached
    assert load_model(str(path)) == load_model("gemma-7b")
    bare = tmp_path / "profiles" / "target"  # a path without the .toml suffix
    bare.parent.mkdir()
    bare.write_text(path.read_text())
    assert load_model(str(bare)) == load_model("gemma-7b")
    with pytest.raises(InputError, match="missing.toml: file not found"):
        load_model(str(tmp_path / "missing.toml"))
    with pytest.raises(InputError, match="unknown quantization 'int3'"):
        load_model(f"{path}:int3")


def test_cached_probe_profile_is_this_machines_only():
    from speccascade.hardware.probe import cached_profile, default_output, write_profile

    assert cached_profile() is None
    here = load_chip("tpu-v5e").model_copy(update={"name": "local", "description": "Some CPU, probed (cpu, 2 cores)"})
    write_profile(here, default_output("local"))
    assert cached_profile() == here and cached_profile(device="Some CPU") == here
    assert cached_profile(device="Another CPU") is None
    default_output("local").write_text("name = 3\n")
    assert cached_profile() is None  # an invalid file is no profile


# --- probe ------------------------------------------------------------------------------------------------
def test_quick_probe_writes_a_profile_load_chip_reads_back(tmp_path, capsys):
    pytest.importorskip("jax")
    output = tmp_path / "probed.toml"
    code, out, err = run_cli(capsys, "hardware", "probe", "--quick", "--name", "ci-box", "--output", str(output),
                             "--json")
    assert code == 0, err
    assert json.loads(out)["path"] == str(output)
    chip = load_chip(str(output))
    assert chip.name == "ci-box" and chip.corrections.calibrated
    assert chip.corrections.overhead_s > 0
    assert {"fp32", "bf16"} <= set(chip.peak_flops)
    bandwidths = [level.bandwidth_bytes_per_s for level in chip.memory]
    assert bandwidths == sorted(bandwidths, reverse=True) and bandwidths[-1] > 0
    assert all(level.source.startswith("measured by speccascade hardware probe") for level in chip.memory)
    assert output.read_text().startswith("# Chip profile 'ci-box'")


def test_probe_rejects_a_name_that_is_not_a_file_name(capsys):
    code, _, err = run_cli(capsys, "hardware", "probe", "--quick", "--name", "../evil")
    assert code == 2 and "profile name" in err
