"""The resumable run directory both benchmarks use: an identity file and an append-only record log.

An interrupted run is continued by rerunning the same command with the same --out: the records already
in `log_name` are kept (a line cut off by the interruption is dropped and that item simply runs again),
and a rerun with a different configuration is refused instead of mixing two runs in one table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

IDENTITY_FILE = "run_config.json"


@dataclass
class RunSummary:
    """One finished run: its method label, its metrics.json content, and where it lives."""

    method: str
    metrics: dict = field(default_factory=dict)
    out: Path | None = None


def open_resumable_run(out: Path, identity: dict, log_name: str, error: type[Exception]) -> tuple[Path, dict]:
    """Check or record the run's identity; returns the log path and the finished records by id."""
    out.mkdir(parents=True, exist_ok=True)
    identity_path = out / IDENTITY_FILE
    if identity_path.exists() and json.loads(identity_path.read_text()) != identity:
        raise error(f"{out} holds a run with a different configuration ({identity_path}); use another --out.")
    identity_path.write_text(json.dumps(identity, indent=2))
    log_path = out / log_name
    done = read_records(log_path)
    # Rewrite the log without any damaged line before appending to it; via a temporary file, so an
    # interruption here cannot lose the items already done.
    rewritten = log_path.with_suffix(".jsonl.tmp")
    rewritten.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
    rewritten.replace(log_path)
    return log_path, done


def read_records(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                done[record["id"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut off by an interruption: that item simply runs again
    return done
