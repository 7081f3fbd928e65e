"""Gather finished runs into one results table: JSON (one row per method), Markdown and a chart.

    python -m eval_gpt4tools table --row icl=runs/gpt4tools/icl --row loragen=runs/gpt4tools/loragen \\
        --out results/gpt4tools_table3

Each RUN_DIR is a finished `run` directory (its metrics.json); the row's `method` is the given name.
Rows scored on different item counts are allowed but flagged: compare like with like.

A batched run (`run --batch-size B`) measures throughput, not latency; `--latency NAME=RUN_DIR` takes
that row's median and p90 latency from a batch-1 run of the same method (on a subset, say
`--limit 100`), and the row records where they came from.
"""

from __future__ import annotations

import json
from pathlib import Path

from .report import bar_chart, markdown_table
from .runner import RunSummary

ROW_KEYS = ("method", "SR_t", "SR_act", "SR_args", "SR", "IoU", "compression", "median_latency_s", "n_items")


class TableError(ValueError):
    """A --row argument is malformed or names a directory without a finished run."""


def parse_row(spec: str) -> tuple[str, Path]:
    name, separator, directory = spec.partition("=")
    if not separator or not name or not directory:
        raise TableError(f"--row takes NAME=RUN_DIR, got {spec!r}.")
    return name, Path(directory)


def load_summary(name: str, directory: Path) -> RunSummary:
    path = directory / "metrics.json"
    if not path.is_file():
        raise TableError(f"{directory} has no metrics.json: finish the run first (`python -m eval_gpt4tools run ... --out {directory}`).")
    return RunSummary(method=name, metrics=json.loads(path.read_text()), out=directory)


def with_latency_from(summary: RunSummary, latency_run: RunSummary) -> RunSummary:
    """`summary` with its latencies taken from a batch-1 run of the same method."""
    if latency_run.metrics.get("batch_size", 1) != 1:
        raise TableError(f"--latency {summary.method}={latency_run.out}: that run is batched too; use a batch-1 run.")
    metrics = dict(summary.metrics)
    metrics["median_latency_s"] = latency_run.metrics["median_latency_s"]
    metrics["p90_latency_s"] = latency_run.metrics["p90_latency_s"]
    metrics["latency_from"] = f"{latency_run.out} (batch 1, {latency_run.metrics['n_items']} items)"
    return RunSummary(method=summary.method, metrics=metrics, out=summary.out)


def write_table(rows: list[tuple[str, Path]], out: Path, latency: list[tuple[str, Path]] = ()) -> list[dict]:
    summaries = [load_summary(name, directory) for name, directory in rows]
    latency_runs = {name: load_summary(name, directory) for name, directory in latency}
    unknown = set(latency_runs) - {s.method for s in summaries}
    if unknown:
        raise TableError(f"--latency names no --row: {', '.join(sorted(unknown))}.")
    summaries = [with_latency_from(s, latency_runs[s.method]) if s.method in latency_runs else s for s in summaries]
    records = [{**{k: s.metrics.get(k) for k in ROW_KEYS if k != "method"}, "method": s.method,
                "mean_edge_prompt_tokens": s.metrics.get("mean_edge_prompt_tokens"),
                "p90_latency_s": s.metrics.get("p90_latency_s"), "run_dir": str(s.out),
                "batch_size": s.metrics.get("batch_size", 1), "latency_from": s.metrics.get("latency_from", str(s.out))}
               for s in summaries]
    records = [{k: r[k] for k in ROW_KEYS} | {k: v for k, v in r.items() if k not in ROW_KEYS} for r in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = sorted({r["n_items"] for r in records})
    note = "" if len(counts) == 1 else f"\nRows differ in item count ({counts}): compare rows with the same n only.\n"
    temporary = out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(records, indent=2) + "\n")
    temporary.replace(out.with_suffix(".json"))
    out.with_suffix(".md").write_text(markdown_table(summaries) + note)
    bar_chart(summaries, out.with_suffix(".png"))
    return records
