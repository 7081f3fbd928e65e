"""Content-addressed adapter cache: the same (generator, system prompt) never runs the cloud LM twice.

Keys are sha256(generator fingerprint, system prompt). Each entry is one safetensors file written to a
temporary name and renamed into place; it carries the adapter's content hash, which is checked on
every read, so a truncated or corrupted entry is deleted and regenerated rather than trusted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .adapter import GeneratedLoRA

log = logging.getLogger(__name__)


def cache_key(generator_fingerprint: str, system_prompt: str) -> str:
    digest = hashlib.sha256(generator_fingerprint.encode())
    digest.update(b"\x00")
    digest.update(system_prompt.encode())
    return digest.hexdigest()


class AdapterCache:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path_for(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> GeneratedLoRA | None:
        path = self.path_for(key)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(path)
            names = sorted({k.rsplit(".", 1)[0] for k in tensors})
            adapter = GeneratedLoRA(
                {n: tensors[f"{n}.A"] for n in names},
                {n: tensors[f"{n}.B"] for n in names},
                r=int(metadata["r"]),
                lora_alpha=float(metadata["lora_alpha"]),
            )
            if adapter.content_hash() != metadata["content_hash"]:
                raise ValueError("content hash mismatch")
        except Exception as error:  # any damage means: do not trust, regenerate
            log.warning("Adapter cache entry %s is corrupted (%s); it will be regenerated.", path, error)
            path.unlink(missing_ok=True)
            return None
        return adapter

    def put(self, key: str, adapter: GeneratedLoRA) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for name in adapter.lora_a:
            tensors[f"{name}.A"] = adapter.lora_a[name].detach().contiguous().cpu()
            tensors[f"{name}.B"] = adapter.lora_b[name].detach().contiguous().cpu()
        metadata = {"r": str(adapter.r), "lora_alpha": str(adapter.lora_alpha), "content_hash": adapter.content_hash()}
        fd, temporary = tempfile.mkstemp(prefix=f".{key}-", suffix=".tmp", dir=self.directory)
        os.close(fd)
        try:
            save_file(tensors, temporary, metadata=metadata)
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.path_for(key))
        finally:
            Path(temporary).unlink(missing_ok=True)
        return self.path_for(key)
