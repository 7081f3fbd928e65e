"""The resumable run directory both benchmarks use: an identity file and an append-only record log.

An interrupted run is continued by rerunning the same command with the same --out: the records already
in `log_name` are kept (a line cut off by the interruption is dropped and that item simply runs again),
and a rerun with a different configuration is refused instead of mixing two runs in one table.

The configuration does not cover the code: a run resumed after a change to the project's source
would mix two versions in one table without a sign. So each invocation also records a fingerprint of
the source (CODE_VERSIONS_FILE: the fingerprint, the git commit when there is one, and how many
records were done before it started); a resume under other code goes on, says so on stderr, and the
runners copy the list into their metrics, where more than one entry means a mixed run. Training runs
(loragen_core/train.py) keep the same list, counting steps, and their model card shows it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .atomic import write_text_atomic

IDENTITY_FILE = "run_config.json"
CODE_VERSIONS_FILE = "code_versions.json"
# The project's packages whose source decides a run's outputs (data files included: tool definitions, templates).
SOURCE_PACKAGES = ("loragen_core", "tools", "agent", "eval_gpt4tools", "eval_commonsense", "ui")
SOURCE_SUFFIXES = (".py", ".json")
log = logging.getLogger(__name__)


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
    write_text_atomic(identity_path, json.dumps(identity, indent=2))
    log_path = out / log_name
    done = read_records(log_path)
    record_code_version(out, len(done))
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


@cache
def code_fingerprint() -> str:
    """A hash of the project's source files (SOURCE_PACKAGES, .py and .json), read once per process."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).parent
        for path in sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _git_commit() -> str | None:
    """HEAD of the checkout the code runs from, with "+changes" when files differ from it; None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def code_versions(out: Path) -> list[dict]:
    """The code versions that wrote the run in `out`, oldest first ([] for a run from before they were kept)."""
    path = out / CODE_VERSIONS_FILE
    try:
        versions = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is damaged ({exc}); delete it to start its record again.") from None
    return versions if isinstance(versions, list) else []


def record_code_version(out: Path, records_done: int) -> None:
    """Append this process's code version to `out`'s list unless it is the last one; warn when
    `records_done` records (items, tasks, training steps) were written by other code."""
    versions = code_versions(out)
    fingerprint = code_fingerprint()
    if versions and versions[-1].get("code") == fingerprint:
        return
    if records_done:
        before = (versions[-1].get("git") or versions[-1].get("code")) if versions else "not recorded"
        log.warning("%s: %d records were written by other code (%s); this invocation goes on with code %s, and the "
                    "run's record (metrics, summary or model card) lists both versions. Use another --out to measure this code alone.",
                    out, records_done, before, fingerprint)
    versions.append({"code": fingerprint, "git": _git_commit(), "records_before": records_done})
    write_text_atomic(out / CODE_VERSIONS_FILE, json.dumps(versions, indent=2) + "\n")
