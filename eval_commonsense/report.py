"""Table 2: one row per method — eight task accuracies, AVE, HAR, prompt length, latency — as JSON,
Markdown and a bar chart."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from .tasks import TASKS, UNSEEN_TASKS  # noqa: E402

TASK_NAMES = tuple(t.name for t in TASKS)
SHORT = {"ARC-Challenge": "ARC-c", "ARC-Easy": "ARC-e", "OpenBookQA": "OBQA", "BoolQ": "BoolQ", "SocialIQA": "SIQA",
         "HellaSwag": "HellaS*", "WinoGrande": "WinoG*", "PIQA": "PIQA*"}
ROW_KEYS = ("AVE", "HAR", "unseen_AVE", "seq_ratio", "mean_edge_prompt_tokens", "median_latency_s",
            "median_adapter_generation_s", "n_per_task", "acc_norm", "edge_model", "shots", "adapter", "generator", "trained_generator")
TABLE2_STEM = "commonsense_table2"


def table_row(metrics: dict) -> dict:
    """One JSON row: method, the eight task accuracies (null if not run), then the summary keys."""
    row = {"method": metrics["method"], **{task: metrics.get(task) for task in TASK_NAMES}}
    row.update({key: metrics.get(key) for key in ROW_KEYS if key in metrics})
    return row


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(summaries) -> str:
    header = ["method", *(SHORT[t] for t in TASK_NAMES), "AVE", "HAR", "edge prompt tokens", "seq ratio",
              "median latency (ms)", "n per task"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        m = s.metrics
        counts = sorted(set(m["n_per_task"].values()))
        cells = [s.method, *(_percent(m.get(t)) for t in TASK_NAMES), _percent(m["AVE"]), _percent(m["HAR"]),
                 f"{m['mean_edge_prompt_tokens']:.0f}", f"{100 * m['seq_ratio']:.0f}%",
                 f"{1000 * m['median_latency_s']:.0f}", "/".join(str(c) for c in counts)]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nAccuracy (%) by option log-likelihood (acc). * unseen tasks ({', '.join(UNSEEN_TASKS)}): never trained on. "
            "seq ratio: mean chat-formatted edge-prompt tokens relative to icl's prompt on the same items.\n")
    return "\n".join(lines) + "\n" + note


def bar_chart(summaries, path: Path) -> Path:
    columns = [*TASK_NAMES, "AVE", "HAR"]
    figure, (scores, latency) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [4, 1]})
    width = 0.8 / max(len(summaries), 1)
    for index, s in enumerate(summaries):
        values = [100 * (s.metrics.get(c) or 0.0) for c in columns]
        scores.bar([k + index * width for k in range(len(columns))], values, width, label=s.method)
        latency.bar(index, 1000 * s.metrics["median_latency_s"], label=s.method)
        latency.annotate(f"{100 * s.metrics['seq_ratio']:.0f}% len", (index, 1000 * s.metrics["median_latency_s"]),
                         ha="center", va="bottom", fontsize=8)
    scores.set_xticks([k + width * (len(summaries) - 1) / 2 for k in range(len(columns))],
                      [SHORT.get(c, c) for c in columns], fontsize=8)
    scores.set_ylabel("accuracy (%)")
    scores.set_ylim(0, 118)  # headroom for the legend above 100%
    scores.set_yticks(range(0, 101, 20))
    scores.set_title("Commonsense tasks (* unseen)")
    scores.legend(fontsize=8, loc="upper left", ncol=len(summaries))
    latency.set_xticks(range(len(summaries)), [s.method for s in summaries], rotation=30, fontsize=8)
    latency.set_ylabel("median latency per item (ms)")
    latency.set_title("edge latency")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_reports(summaries, directory: Path) -> None:
    """A run directory's table.md and chart.png."""
    (directory / "table.md").write_text(markdown_table(summaries))
    bar_chart(summaries, directory / "chart.png")


def write_table2(summaries, directory: Path) -> list[Path]:
    """results/commonsense_table2.{json,md,png}: the rows side by side."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{TABLE2_STEM}.{ext}" for ext in ("json", "md", "png")]
    paths[0].write_text(json.dumps([table_row(s.metrics) for s in summaries], indent=2) + "\n")
    paths[1].write_text(markdown_table(summaries))
    bar_chart(summaries, paths[2])
    return paths
