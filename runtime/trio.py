"""The default Tiny -> Draft -> Target trio: plan, training, evaluation, loading.

Training order (the seed's recipe): the Target learns next-token prediction on the standard-library corpus; the
Draft is distilled from the Target (KL); the Tiny is distilled from the Draft (KL). The int8 Draft is the fp32
Draft quantized at load time (:mod:`.models.quant`), so it is not stored. Sizes (default plan):

- Target: transformer d=512, 6 layers, 8 query / 2 kv heads, SwiGLU 1408, ~19.0M params (76 MB fp32);
- Draft: d=192, 3 layers, 3 / 1 heads, SwiGLU 512, ~2.0M params (7.9 MB fp32, ~2.0 MB int8);
- Tiny: the seed's projection model, 64-d embedding, 192 hidden, ~1.07M params (4.3 MB).

76 + 7.9 + 4.3 MB is over the 40 MB that may ship in the repository, so the first use trains the trio into
``$SPECCASCADE_HOME/trio`` (reproducibly from the seed; 20 minutes measured on 2 shared CPU cores).

Next to each model's checkpoint the trio writes its model profile, ``target.toml``, ``draft.toml`` and
``tiny.toml`` (:mod:`.profiles`; the format of ``hardware/models/*.toml``, every number commented with its origin
and the checkpoint's sha256), so the cost model predicts the trio: ``speccascade predict --hardware CHIP --target
~/.speccascade/trio/target.toml --draft ~/.speccascade/trio/draft.toml``. Loading a trio trained before the
profiles existed writes them; every loaded model's ``CausalLM.profile`` is its trio profile.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from speccascade.errors import InputError
from speccascade.hardware.registry import user_home
from speccascade.runtime.api import CausalLM
from speccascade.runtime.tokenizer import ByteBPETokenizer
from speccascade.runtime.train import StageConfig

TOKENIZER_FILE = "tokenizer.json"
MODEL_FILES = {"target": "target.safetensors", "draft": "draft.safetensors", "tiny": "tiny.safetensors"}
PROFILE_FILES = {"target": "target.toml", "draft": "draft.toml", "tiny": "tiny.toml"}
PLOT_FILE = "loss_curves.png"
# bf16: bfloat16 weights, float32 accumulation; on XLA:CPU with AMX its forward over 2..7 tokens costs about what
# one token costs (8-row matmuls, see runtime/models/transformer.py); fp32 (default) streams its weights faster
TARGET_WEIGHTS = ("bf16", "fp32")
DRAFT_WEIGHTS = ("fp32", "int8")


@dataclass(frozen=True)
class TrioPlan:
    """Everything that determines a trained trio (with the seed)."""

    vocab_size: int
    target: dict
    draft: dict
    tiny: dict
    target_stage: StageConfig
    draft_stage: StageConfig
    tiny_stage: StageConfig
    corpus_max_files: int | None = None
    heldout_every: int = 20
    eval_windows: int = 32
    eval_len: int = 256

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


DEFAULT_PLAN = TrioPlan(
    vocab_size=4096,
    target=dict(d_model=512, n_layers=6, n_heads=8, n_kv_heads=2, d_ff=1408, max_len=512),
    draft=dict(d_model=192, n_layers=3, n_heads=3, n_kv_heads=1, d_ff=512, max_len=512),
    tiny=dict(d_embed=64, d_hidden=192, max_len=512),
    target_stage=StageConfig(steps=360, batch=8, seq_len=256, learning_rate=2e-3, warmup_steps=30),
    draft_stage=StageConfig(steps=480, batch=8, seq_len=256, learning_rate=4e-3, warmup_steps=20),
    tiny_stage=StageConfig(steps=160, batch=16, seq_len=128, learning_rate=1e-2, warmup_steps=10),
)

QUICK_PLAN = TrioPlan(
    vocab_size=512,
    target=dict(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_len=128),
    draft=dict(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64, max_len=128),
    tiny=dict(d_embed=16, d_hidden=32, max_len=128),
    target_stage=StageConfig(steps=40, batch=8, seq_len=64, learning_rate=1e-2, warmup_steps=5),
    draft_stage=StageConfig(steps=30, batch=8, seq_len=64, learning_rate=1e-2, warmup_steps=5),
    tiny_stage=StageConfig(steps=30, batch=8, seq_len=64, learning_rate=2e-2, warmup_steps=5),
    corpus_max_files=12, eval_windows=8, eval_len=64,
)


@dataclass(frozen=True)
class Trio:
    """The trained models as float32 CausalLMs, their tokenizer, and the checkpoint's metadata (corpus, seed, steps,
    losses, acceptance). ``draft_int8`` (the Draft with int8 weights) and ``target_bf16`` (the Target with bfloat16
    weights) are converted from ``modules`` (role -> nnx module) on first use, so loading pays for neither."""

    target: CausalLM
    draft: CausalLM
    tiny: CausalLM
    tokenizer: ByteBPETokenizer
    metadata: dict
    modules: dict = field(default_factory=dict, repr=False, compare=False)
    max_len: int | None = None
    profiles: dict = field(default_factory=dict, repr=False, compare=False)  # role -> ModelProfile (stored weights)
    _converted: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def draft_int8(self) -> CausalLM:
        return self.converted("draft", "int8")

    @property
    def target_bf16(self) -> CausalLM:
        return self.converted("target", "bfloat16")

    def converted(self, role: str, weights: str) -> CausalLM:
        """``role``'s model with its weights in ``weights`` (int8 or bfloat16), built on first use and kept."""
        if (role, weights) not in self._converted:
            from speccascade.runtime.models import as_causal_lm

            if role not in self.modules:
                raise InputError(f"this trio holds no {role} module to convert to {weights} weights")
            dtype = "bf16" if weights == "bfloat16" else weights
            model = as_causal_lm(self.modules[role], f"{role}-{dtype}", self.max_len, weights=weights)
            if role in self.profiles:
                model = dataclasses.replace(model, profile=self.profiles[role].with_dtype(dtype))
            self._converted[(role, weights)] = model
        return self._converted[(role, weights)]

    def models(self, target: str = "fp32", draft: str = "fp32") -> dict[str, CausalLM]:
        """{"tiny", "draft", "target"} with the Target's weights in ``target`` (bf16 or fp32) and the Draft's in
        ``draft`` (fp32 or int8)."""
        if target not in TARGET_WEIGHTS or draft not in DRAFT_WEIGHTS:
            raise InputError(f"target weights must be one of {', '.join(TARGET_WEIGHTS)} and draft weights one of "
                             f"{', '.join(DRAFT_WEIGHTS)}; got target {target!r}, draft {draft!r}")
        return {"tiny": self.tiny, "draft": self.draft_int8 if draft == "int8" else self.draft,
                "target": self.target_bf16 if target == "bf16" else self.target}


def default_trio_dir() -> Path:
    return user_home() / "trio"


def profile_name(role: str) -> str:
    return f"speccascade-trio-{role}"


def trio_profile(role: str, module, sha256: str | None = None):
    """The ModelProfile of the trio's ``role`` model (stored weights), naming its checkpoint and sha256."""
    from speccascade.runtime.profiles import model_profile

    return model_profile(module.config, name=profile_name(role), checkpoint=MODEL_FILES[role], sha256=sha256)


def write_model_profiles(directory: str | Path, modules: dict, hashes: dict[str, str]) -> dict[str, Path]:
    """Write ``target.toml``/``draft.toml``/``tiny.toml`` (model profiles, ``hardware/models`` format) next to the
    checkpoints; ``hashes`` maps checkpoint file names to their sha256. Returns role -> path."""
    from speccascade.runtime.profiles import write_profile_toml

    directory = Path(directory)
    return {role: write_profile_toml(module.config, directory / PROFILE_FILES[role], name=profile_name(role),
                                     checkpoint=MODEL_FILES[role], sha256=hashes.get(MODEL_FILES[role]))
            for role, module in modules.items()}


def load_trio(path: str | Path, max_len: int | None = None) -> Trio:
    """Load a trained trio from a checkpoint directory (hashes verified; bad files raise InputError)."""
    from speccascade.runtime.checkpoint import load_model, read_manifest
    from speccascade.runtime.models import as_causal_lm, tiny_causal_lm

    path = Path(path)
    manifest = read_manifest(path)
    missing = [f for f in (*MODEL_FILES.values(), TOKENIZER_FILE) if f not in manifest.get("files", {})]
    if missing:
        raise InputError(f"checkpoint {path} is incomplete: manifest lists no {', '.join(missing)}")
    tokenizer = ByteBPETokenizer.load(path / TOKENIZER_FILE)
    modules = {role: load_model(path / file)[1] for role, file in MODEL_FILES.items()}
    for role, module in modules.items():
        if module.config.vocab_size != tokenizer.vocab_size:
            raise InputError(f"checkpoint {path}: {role} has vocabulary {module.config.vocab_size}, tokenizer "
                             f"has {tokenizer.vocab_size}")
    hashes = manifest.get("files", {})
    if any(not (path / file).is_file() for file in PROFILE_FILES.values()):
        try:  # a trio trained before the profiles existed
            write_model_profiles(path, modules, hashes)
        except OSError:  # a read-only checkpoint still loads; its models carry their profiles
            pass
    profiles = {role: trio_profile(role, module, hashes.get(MODEL_FILES[role])) for role, module in modules.items()}
    models = {"target": as_causal_lm(modules["target"], "target", max_len),
              "draft": as_causal_lm(modules["draft"], "draft", max_len),
              "tiny": tiny_causal_lm(modules["tiny"], "tiny", max_len)}
    models = {role: dataclasses.replace(model, profile=profiles[role]) for role, model in models.items()}
    return Trio(**models, tokenizer=tokenizer, metadata=manifest.get("metadata", {}), modules=modules,
                max_len=max_len, profiles=profiles)


def load_default_trio(path: str | Path | None = None, train_if_missing: bool = True, seed: int = 0,
                      max_len: int | None = None) -> Trio:
    """The default trio from ``path`` (default ``$SPECCASCADE_HOME/trio``); trains it there first if absent."""
    path = Path(path) if path is not None else default_trio_dir()
    if not (path / "manifest.json").is_file():
        if not train_if_missing:
            raise InputError(f"no trained trio at {path}; run `speccascade runtime train` first")
        train_trio(path, seed=seed)
    return load_trio(path, max_len)


def train_trio(output_dir: str | Path, seed: int = 0, quick: bool = False, progress: bool = True,
               plan: TrioPlan | None = None) -> dict:
    """Train Target, then Draft (KL from Target), then Tiny (KL from Draft); save the checkpoint in
    ``output_dir`` (safetensors + tokenizer + manifest + loss plot) and return its metadata.

    ``quick``: the tiny test plan (a 512-token vocabulary, a few dozen steps, well under a minute).
    """
    import jax
    from flax import nnx
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from speccascade.runtime.checkpoint import save_model, write_manifest
    from speccascade.runtime.corpus import stdlib_corpus
    from speccascade.runtime.models import Tiny, TinyConfig, Transformer, TransformerConfig
    from speccascade.runtime.tokenizer import train_bpe
    from speccascade.runtime.train import train_model

    plan = plan or (QUICK_PLAN if quick else DEFAULT_PLAN)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, quiet=not progress)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    corpus = stdlib_corpus(max_files=plan.corpus_max_files)
    train_files, heldout_files = corpus.split(plan.heldout_every)
    console.print(f"corpus: {len(corpus.files)} files of the Python {sys.version.split()[0]} standard library "
                  f"({len(train_files)} train / {len(heldout_files)} held out)")
    texts = corpus.texts(train_files)
    tokenizer = train_bpe(texts, plan.vocab_size)
    tokenizer.save(output_dir / TOKENIZER_FILE)
    train_tokens = tokenizer.encode_documents(texts)
    heldout_tokens = tokenizer.encode_documents(corpus.texts(heldout_files))
    timings["tokenizer_s"] = time.perf_counter() - started
    console.print(f"tokenizer: {tokenizer.vocab_size} tokens; {train_tokens.size:,} training tokens, "
                  f"{heldout_tokens.size:,} held out ({timings['tokenizer_s']:.0f} s)")

    target = Transformer(TransformerConfig(vocab_size=tokenizer.vocab_size, **plan.target), rngs=nnx.Rngs(seed))
    draft = Transformer(TransformerConfig(vocab_size=tokenizer.vocab_size, **plan.draft), rngs=nnx.Rngs(seed + 1))
    tiny = Tiny(TinyConfig(vocab_size=tokenizer.vocab_size, **plan.tiny), rngs=nnx.Rngs(seed + 2))
    columns = (TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(), TimeRemainingColumn())
    losses: dict[str, list[float]] = {}
    with Progress(*columns, console=console, disable=not progress) as bar:
        for role, module, stage, teacher, offset in (("target", target, plan.target_stage, None, 0),
                                                     ("draft", draft, plan.draft_stage, target, 1),
                                                     ("tiny", tiny, plan.tiny_stage, draft, 2)):
            stage_start = time.perf_counter()
            losses[role] = train_model(module, train_tokens, stage, seed=seed * 1000 + offset, teacher=teacher,
                                       progress=bar, label=role)
            timings[f"{role}_s"] = time.perf_counter() - stage_start

    eval_start = time.perf_counter()
    evaluation = evaluate_trio(target, draft, tiny, heldout_tokens, plan.eval_windows, plan.eval_len)
    timings["eval_s"] = time.perf_counter() - eval_start
    hashes = {}
    for role, module in (("target", target), ("draft", draft), ("tiny", tiny)):
        hashes[MODEL_FILES[role]] = save_model(module, output_dir / MODEL_FILES[role], role)
    write_model_profiles(output_dir, {"target": target, "draft": draft, "tiny": tiny}, hashes)
    timings["total_s"] = time.perf_counter() - started
    metadata = {
        "seed": seed, "quick": quick, "plan": plan.to_dict(), "corpus": corpus.metadata(),
        "corpus_split": {"heldout_every": plan.heldout_every, "train_tokens": int(train_tokens.size),
                         "heldout_tokens": int(heldout_tokens.size)},
        "tokenizer": {"vocab_size": tokenizer.vocab_size, "merges": len(tokenizer.merges)},
        "losses": losses, "loss_kind": {"target": "cross-entropy (nats/token)", "draft": "KL(target || draft)",
                                        "tiny": "KL(draft || tiny)"},
        "evaluation": evaluation, "timings_s": timings,
        "environment": {"python": platform.python_version(), "jax": jax.__version__,
                        "backend": jax.default_backend(), "devices": len(jax.devices())},
    }
    plot_losses(losses, output_dir / PLOT_FILE)
    write_manifest(output_dir, [*MODEL_FILES.values(), TOKENIZER_FILE], metadata)
    console.print(f"trained trio in {timings['total_s']:.0f} s -> {output_dir}")
    console.print(json.dumps(evaluation["acceptance"], indent=1))
    return metadata


def evaluate_trio(target, draft, tiny, heldout_tokens, windows: int, length: int) -> dict:
    """Held-out cross-entropy of each model and the acceptance of each (drafter, verifier) pair."""
    from speccascade.runtime.models import as_causal_lm, tiny_causal_lm
    from speccascade.runtime.train import acceptance, heldout_loss, heldout_windows, lm_logits

    data = heldout_windows(heldout_tokens, windows, length)
    models = {"target": as_causal_lm(target, "target"), "draft": as_causal_lm(draft, "draft"),
              "draft_int8": as_causal_lm(draft, "draft-int8", weights="int8"), "tiny": tiny_causal_lm(tiny)}
    logits = {role: lm_logits(lm, data) for role, lm in models.items()}
    pairs = [("draft", "target"), ("draft_int8", "target"), ("tiny", "draft"), ("tiny", "draft_int8"),
             ("tiny", "target")]
    return {
        "heldout_windows": [int(data.shape[0]), int(data.shape[1])],
        "heldout_cross_entropy": {role: heldout_loss(value, data) for role, value in logits.items()},
        "acceptance": {f"{q}->{p}": acceptance(logits[q], logits[p]) for q, p in pairs},
        "param_bytes": {role: lm.param_bytes for role, lm in models.items()},
        "param_count": {"target": target.config.param_count(), "draft": draft.config.param_count(),
                        "tiny": tiny.config.param_count()},
    }


def plot_losses(losses: dict[str, list[float]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(losses["target"], color="tab:blue")
    left.set(title="Target: next-token cross-entropy", xlabel="step", ylabel="nats / token")
    for role, color, label in (("draft", "tab:orange", "Draft: KL(Target || Draft)"),
                               ("tiny", "tab:green", "Tiny: KL(Draft || Tiny)")):
        right.plot(losses[role], color=color, label=label)
    right.set(title="Distillation", xlabel="step", ylabel="KL (nats)", yscale="log")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
