"""Write a directory all at once: build it under a temporary name, then rename it into place.

An interruption leaves either the old directory or the new one, never a half-written one; the
temporary directory is removed on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary directory
    try:
        yield staging
        if target.exists():
            # Move the old copy aside first so that no mix of old and new is ever visible.
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=target.parent))
            os.replace(target, trash / target.name)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a file all at once: a temporary file beside it, then a rename (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_json_and_markdown(out: str | Path, result: dict, markdown: str) -> None:
    """A benchmark's OUT.json (`result`) and OUT.md (`markdown`), each written atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_text_atomic(out.with_suffix(".md"), markdown)


def write_jsonl(rows: list[dict], directory: str | Path, name: str = "train.jsonl") -> Path:
    """`directory/name`, one JSON object per line, written whole; returns its path."""
    path = Path(directory) / name
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def read_fingerprinted(path: Path | None, fingerprint: str) -> dict | None:
    """A cache file written by `write_fingerprinted`: its payload, or None when the file is absent,
    damaged or was written for another fingerprint (a lost cache is recomputed, never trusted)."""
    import torch

    if path is None or not Path(path).exists():
        return None
    try:
        saved = torch.load(path, weights_only=True)
    except Exception:  # a damaged file is only a lost cache
        return None
    return saved["payload"] if isinstance(saved, dict) and saved.get("fingerprint") == fingerprint and "payload" in saved else None


def write_fingerprinted(path: Path | None, fingerprint: str, payload) -> None:
    """Save `payload` (tensors in plain containers) with `fingerprint`, all at once (temporary + rename)."""
    import torch

    if path is None:
        return
    path = Path(path)
    temporary = path.with_suffix(".tmp")
    torch.save({"fingerprint": fingerprint, "payload": payload}, temporary)
    os.replace(temporary, path)
