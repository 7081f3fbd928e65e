"""Content-addressed adapter cache: the same (generator, system prompt) never runs the cloud LM twice.

Keys are sha256(generator fingerprint, system prompt). Each entry is one `<key>.safetensors` file
holding the adapter's A and B tensors, with its key, r, lora_alpha and content hash in the metadata;
it is written to a temporary name and renamed into place. Every read checks the key and the hash, so
a truncated or corrupted entry, a directory, or another key's file is deleted and regenerated.

The cache is best effort: when it cannot be written (read-only, not a directory, disk full) a warning
is logged and the adapter is served uncached. It is bounded: after each put, least-recently-used
entries (oldest mtime; a hit touches it) are evicted until all entries total at most `max_bytes`
(default 2 GiB, or $LORAGEN_ADAPTER_CACHE_MAX_MB MiB); the entry just written is never evicted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .adapter import GeneratedLoRA

log = logging.getLogger(__name__)

MAX_BYTES_ENV = "LORAGEN_ADAPTER_CACHE_MAX_MB"
DEFAULT_MAX_BYTES = 2 * 2**30  # thousands of real-model adapters; small next to the model cache


def cache_key(generator_fingerprint: str, system_prompt: str) -> str:
    digest = hashlib.sha256(generator_fingerprint.encode())
    digest.update(b"\x00")
    digest.update(system_prompt.encode())
    return digest.hexdigest()


def default_max_bytes() -> int:
    """The size bound: $LORAGEN_ADAPTER_CACHE_MAX_MB (MiB, may be fractional) or DEFAULT_MAX_BYTES."""
    raw = os.environ.get(MAX_BYTES_ENV)
    if raw is None:
        return DEFAULT_MAX_BYTES
    try:
        mib = float(raw)
    except ValueError:
        mib = -1.0
    if not mib >= 0:  # also refuses nan
        raise ValueError(f"{MAX_BYTES_ENV} must be a size in MiB (a number >= 0), not {raw!r}.")
    return int(mib * 2**20)


def _remove(path: Path) -> None:
    """Delete a damaged entry, whatever it is; a failure (read-only cache) only means it stays."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as error:
        log.warning("Could not remove damaged adapter cache entry %s (%s).", path, error)


class AdapterCache:
    def __init__(self, directory: str | Path, max_bytes: int | None = None):
        self.directory = Path(directory)
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes

    def path_for(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> GeneratedLoRA | None:
        path = self.path_for(key)
        if not os.path.lexists(path):  # lexists: a dangling symlink is a damaged entry, not a miss
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            # An entry copied or renamed from another key would otherwise pass the hash check.
            if metadata.get("key") != key:
                raise ValueError(f"stored for key {metadata.get('key')!r}, not this one")
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
            _remove(path)
            return None
        with contextlib.suppress(OSError):  # the LRU clock; a read-only cache just never reorders
            os.utime(path)
        return adapter

    def put(self, key: str, adapter: GeneratedLoRA) -> Path | None:
        """Store `adapter` under `key`; returns its path, or None (and warns) if it cannot be written."""
        tensors = {}
        for name in adapter.lora_a:
            tensors[f"{name}.A"] = adapter.lora_a[name].detach().contiguous().cpu()
            tensors[f"{name}.B"] = adapter.lora_b[name].detach().contiguous().cpu()
        metadata = {
            "key": key, "r": str(adapter.r), "lora_alpha": str(adapter.lora_alpha), "content_hash": adapter.content_hash(),
        }
        path = self.path_for(key)
        temporary: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{key}-", suffix=".tmp", dir=self.directory)
            os.close(fd)
            save_file(tensors, temporary, metadata=metadata)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except (OSError, SafetensorError) as error:  # a cache that cannot be written must not lose the adapter
            log.warning("Adapter cache %s is not writable (%s); the adapter is not cached.", self.directory, error)
            return None
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    Path(temporary).unlink(missing_ok=True)
        self._evict(keep=path)
        return path

    def _evict(self, keep: Path) -> None:
        """Delete the least recently used entries until the total is within max_bytes (never `keep`)."""
        entries = []
        for entry in self.directory.glob("*.safetensors"):
            with contextlib.suppress(OSError):  # another process may delete entries concurrently
                stat = entry.lstat()
                entries.append((stat.st_mtime_ns, stat.st_size, entry))
        total = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries):
            if total <= self.max_bytes:
                break
            if entry != keep:
                _remove(entry)
                total -= size
