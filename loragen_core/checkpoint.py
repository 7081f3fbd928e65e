"""Save and load generator checkpoints: config JSON + edge targets JSON + trainable weights.

A checkpoint directory holds only what training changes (meta tokens, routers, experts, the cloud's
q/v LoRA); the frozen cloud base weights are reloaded from `config.cloud_model`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import typing
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

from .adapter import PEFT_WEIGHTS_FILE
from .atomic import atomic_directory
from .config import LoRAGenConfig
from .generator import LoRAGenerator
from .lora_math import LoRATarget, find_lora_targets
from .model_loading import DEFAULT_MODEL, load_causal_lm, resolve_model_dir

GENERATOR_WEIGHTS_FILE = "generator.safetensors"
EDGE_TARGETS_FILE = "edge_targets.json"
# The trained generator shipped with the repository; absent until one is trained.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default"
# The lora_with_tools baseline (a peft adapter, bf16): what the UI's side-by-side and the demo compare against.
FULL_PROMPT_LORA_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "full_prompt_lora"


class CheckpointError(ValueError):
    """A generator checkpoint is missing files or does not match its config."""


def edge_targets_for(config: LoRAGenConfig) -> list[LoRATarget]:
    """The edge model's LoRA targets, read from its config without loading its weights."""
    model_config = AutoConfig.from_pretrained(resolve_model_dir(config.edge_model), local_files_only=True)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_config)
    return find_lora_targets(skeleton, config.ffn_module_names)


def build_generator(config: LoRAGenConfig, edge_targets: list[LoRATarget] | None = None) -> LoRAGenerator:
    """A freshly initialised (seeded) generator around the configured cloud LM."""
    cloud = load_causal_lm(config.cloud_model)
    return LoRAGenerator(config, cloud.model, cloud.tokenizer, edge_targets or edge_targets_for(config))


def save_generator(generator: LoRAGenerator, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a checkpoint atomically; `dtype=torch.bfloat16` halves it for shipping (loading casts
    back to the generator's float32 parameters)."""
    with atomic_directory(directory) as staging:
        _write_generator(generator, staging, dtype)
    return directory


def _write_generator(generator: LoRAGenerator, directory: Path, dtype: torch.dtype | None) -> None:
    generator.config.save(directory)
    (directory / EDGE_TARGETS_FILE).write_text(
        json.dumps([dataclasses.asdict(t) for t in generator.edge_targets], indent=1) + "\n"
    )
    state = {k: v.detach().contiguous().cpu() for k, v in generator.trainable_state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, directory / GENERATOR_WEIGHTS_FILE, metadata={"format": "pt"})


def read_edge_targets(path: Path) -> list[LoRATarget]:
    """The checkpoint's edge targets; malformed content is a CheckpointError naming what is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); the checkpoint is damaged.") from error
    if not isinstance(raw, list) or not raw:
        raise CheckpointError(f"{path} must be a non-empty JSON list of edge targets, not {json.dumps(raw)[:80]}.")
    fields = typing.get_type_hints(LoRATarget)  # {"module_name": str, "layer": int, ...}
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: entry {index} must be an object with the keys {list(fields)}, not {json.dumps(entry)[:80]}.")
        if entry.keys() != fields.keys():
            lacks, unknown = sorted(fields.keys() - entry.keys()), sorted(entry.keys() - fields.keys())
            wrong = [f"lacks keys {lacks}"] * bool(lacks) + [f"has unknown keys {unknown}"] * bool(unknown)
            raise CheckpointError(f"{path}: entry {index} {' and '.join(wrong)}.")
        for key, kind in fields.items():
            value = entry[key]
            # bool is an int subclass in Python, but `true` is no layer index or width.
            if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
                raise CheckpointError(f"{path}: entry {index} has {key}={value!r}; expected a {'non-negative int' if kind is int else kind.__name__}.")
    return [LoRATarget(**entry) for entry in raw]


def load_generator(directory: str | Path) -> LoRAGenerator:
    directory = Path(directory)
    for required in ("loragen_config.json", EDGE_TARGETS_FILE, GENERATOR_WEIGHTS_FILE):
        if not (directory / required).is_file():
            raise CheckpointError(f"{directory} is not a LoRA-Gen checkpoint: {required} is missing.")
    config = LoRAGenConfig.load(directory)
    targets = read_edge_targets(directory / EDGE_TARGETS_FILE)
    weights = directory / GENERATOR_WEIGHTS_FILE
    try:
        state = load_file(weights)
    except Exception as error:
        raise CheckpointError(f"{weights} is unreadable: {error}") from error
    # NaN/inf weights would silently generate (and cache) NaN adapters; refuse them before building.
    for name in sorted(state):
        if state[name].is_floating_point() and not torch.isfinite(state[name]).all():
            raise CheckpointError(
                f"{weights} is damaged: tensor {name} holds non-finite values (NaN or inf). "
                "Retrain the generator or re-download the checkpoint."
            )
    generator = build_generator(config, targets)
    state = _without_untrained_cloud_lora(state, generator, weights)
    try:
        missing, unexpected = generator.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches raise even with strict=False
        first = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
        raise CheckpointError(f"{weights} does not match {directory / EDGE_TARGETS_FILE} and the config: {first}") from error
    expected = set(generator.trainable_state_dict())
    if unexpected or expected & set(missing):
        raise CheckpointError(
            f"{directory} does not match its config: missing {sorted(expected & set(missing))[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}."
        )
    return generator


MODEL_CARD_FILES = ("README.md", "training_summary.json", "loss.png")


def directory_mib(path: Path) -> float:
    """Total size of the files directly in `path`, in MiB (a shipped checkpoint is flat)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file()) / 2**20


def ship_generator(source: str | Path, dest: str | Path, notes: str = "", max_mib: float = 64.0) -> Path:
    """`source` (a trainer's final/) → `dest`, in bf16 with its model card, all at once: a checkpoint
    over `max_mib` is refused and leaves `dest` (and any checkpoint already there) untouched.
    A PEFT LoRA directory (the lora baselines' final/) ships the same way, as a bf16 PEFT adapter."""
    source, dest = Path(source), Path(dest)
    if (source / PEFT_WEIGHTS_FILE).is_file() and not (source / GENERATOR_WEIGHTS_FILE).is_file():
        return _ship(source, dest, notes, max_mib, lambda staging: _write_peft_bf16(source, staging), "# LoRA baseline\n")
    generator = load_generator(source)
    return _ship(source, dest, notes, max_mib, lambda staging: _write_generator(generator, staging, torch.bfloat16),
                 "# LoRA-Gen generator\n")


def _write_peft_bf16(source: Path, staging: Path) -> None:
    """A PEFT adapter in bf16, its config naming the model by name rather than a local cache path."""
    tensors = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(source / PEFT_WEIGHTS_FILE).items()}
    save_file(tensors, staging / PEFT_WEIGHTS_FILE, metadata={"format": "pt"})
    config = json.loads((source / "adapter_config.json").read_text())
    if Path(str(config.get("base_model_name_or_path") or "")).name == DEFAULT_MODEL:  # this machine's converted cache
        config["base_model_name_or_path"] = DEFAULT_MODEL
    (staging / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _ship(source: Path, dest: Path, notes: str, max_mib: float, write, default_title: str) -> Path:
    with atomic_directory(dest) as staging:
        write(staging)
        for name in MODEL_CARD_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, staging / name)
        if notes:
            card = staging / "README.md"
            card.write_text((card.read_text() if card.exists() else default_title) + "\n" + notes.strip() + "\n")
        size = directory_mib(staging)
        if size > max_mib:
            raise CheckpointError(f"{source} is {size:.1f} MiB in bf16 with its card, over the {max_mib:g} MiB limit for a shipped checkpoint.")
    return dest


def load_default_generator() -> tuple[LoRAGenerator, bool]:
    """The shipped trained generator if present, else a seeded fresh one; the flag says which."""
    if (DEFAULT_CHECKPOINT / GENERATOR_WEIGHTS_FILE).is_file():
        return load_generator(DEFAULT_CHECKPOINT), True
    return build_generator(LoRAGenConfig()), False


def generator_fingerprint(generator: LoRAGenerator) -> str:
    """sha256 over the config and every trainable tensor: identifies what the generator computes."""
    digest = hashlib.sha256(json.dumps(generator.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(generator.trainable_state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _without_untrained_cloud_lora(state: dict[str, torch.Tensor], generator, weights: Path) -> dict[str, torch.Tensor]:
    """Checkpoints written before the cloud LoRA was left out when untrained hold its q/v factors
    with B = 0 (a no-op); a generator that does not train it has no such layers, so drop them."""
    own = set(generator.state_dict())
    stale = [name for name in state if name.startswith("cloud.") and "lora_" in name and name not in own]
    if any("lora_B" in name and state[name].abs().max() > 0 for name in stale):
        raise CheckpointError(f"{weights} holds a trained cloud LoRA, but its config says train_cloud_lora is false.")
    return {name: tensor for name, tensor in state.items() if name not in stale}
