"""Side-by-side results: a Markdown table and a PNG bar chart of the success rates."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

SCORE_KEYS = ("SR_t", "SR_act", "SR_args", "SR", "IoU")


def markdown_table(summaries) -> str:
    header = "| method | SR_t | SR_act | SR_args | SR | IoU | edge prompt tokens | compression | median latency (s) | p90 latency (s) | n |"
    lines = [header, "|" + "---|" * 11]
    for s in summaries:
        m = s.metrics
        scores = " | ".join(f"{100 * m[k]:.1f}" for k in SCORE_KEYS)
        lines.append(
            f"| {s.method} | {scores} | {m['mean_edge_prompt_tokens']:.0f} | {m['compression']:.1f}x | "
            f"{_seconds(m.get('median_latency_s'))} | {_seconds(m.get('p90_latency_s'))} | {m['n_items']} |"
        )
    return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"  # batched runs measure throughput, not latency


def bar_chart(summaries, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(9.5, 4))
    width = 0.8 / max(len(summaries), 1)
    for index, s in enumerate(summaries):
        positions = [k + index * width for k in range(len(SCORE_KEYS))]
        axis.bar(positions, [100 * s.metrics[k] for k in SCORE_KEYS], width, label=s.method)
    axis.set_xticks([k + width * (len(summaries) - 1) / 2 for k in range(len(SCORE_KEYS))], SCORE_KEYS)
    axis.set_ylabel("score (%)")
    axis.set_ylim(0, 100)
    axis.set_title(f"GPT4Tools unseen tools ({summaries[0].metrics['n_items']} items)")
    # Beside the axes, not over them: with five rows an in-axes legend hides the tallest bars.
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_reports(summaries, directory: Path) -> None:
    (directory / "table.md").write_text(markdown_table(summaries))
    bar_chart(summaries, directory / "chart.png")
