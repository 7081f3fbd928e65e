"""Table 2 from harness-scored runs: one row per mode, the eight tasks' acc, AVE, HAR, what the model
reads, time per item; and the paired tests behind the issue's targets.

    python -m eval_commonsense harness-table base=runs/commonsense-harness/base icl=runs/commonsense-harness/icl ...

Targets (paired, exact McNemar on the items both rows scored):
    loragen vs lora   on the seen tasks' items pooled (HAR is not an item-level score; the pooled
                      test says whether one is right on more of the same items)
    loragen vs icl    on each unseen task

Carry-over (--carry-over EARLIER_TABLE.json): the cells of an earlier table whose run directories are
gone (a machine reset). A row named there and not given is copied whole; a given run that lacks some
of the earlier row's tasks takes those cells from it, when the two cover disjoint tasks (the means
then combine exactly) or the run's tasks are a subset of the earlier row's and agree with it. Copied
cells are marked † and have no items to pair; the earlier paired tests not recomputed are kept.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from loragen_core.atomic import write_text_atomic
from loragen_core.paired import PairedResult, compare_pair, markdown_pairs
from loragen_core.resumable_run import read_records

from .harness_run import TASKS_LOG
from .tasks import SEEN_TASKS, SHORT, TASK_NAMES, UNSEEN_TASKS

HARNESS_TABLE_STEM = "commonsense_harness_table2"


def load_run(directory: Path) -> dict:
    """A finished run's summary and every task's item-level acc."""
    summary_path = Path(directory) / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{directory} has no summary.json: run `python -m eval_commonsense harness --out {directory}` first.")
    summary = json.loads(summary_path.read_text())
    records = read_records(Path(directory) / TASKS_LOG)
    return {**summary, "rights": {name: records[name]["rights"] for name in summary["tasks"]}}


def table_row(method: str, run: dict) -> dict:
    tasks = run["tasks"]
    accs = {name: tasks[name]["acc"] for name in TASK_NAMES if name in tasks}
    return {
        "method": method,
        **{name: accs.get(name) for name in TASK_NAMES},
        **_aggregates(accs),
        "acc_norm": {name: tasks[name]["acc_norm"] for name in TASK_NAMES if name in tasks},
        "mean_context_tokens": statistics.fmean(tasks[n]["mean_context_tokens"] for n in tasks),
        "seconds_per_item": sum(tasks[n]["seconds"] for n in tasks) / sum(tasks[n]["n"] for n in tasks),
        "n_per_task": {name: tasks[name]["n"] for name in tasks},
        "num_fewshot": sorted({tasks[n]["num_fewshot"] for n in tasks}),
    }


def average(accuracies) -> float:
    """AVE: the arithmetic mean of per-task accuracies."""
    return statistics.fmean(accuracies)


def harmonic_mean(accuracies) -> float:
    """HAR: the harmonic mean of per-task accuracies (0 if any task is 0): it punishes a weak task
    more than AVE does."""
    return float(statistics.harmonic_mean(accuracies))


class CarryOverError(ValueError):
    """A run and the earlier table row it should complete do not fit together."""


def merge_with_earlier(row: dict, earlier: dict) -> dict:
    """`row` (from a run) completed by the earlier table's row for the same method (module docstring)."""
    own = {t for t in TASK_NAMES if row.get(t) is not None}
    theirs = {t for t in TASK_NAMES if earlier.get(t) is not None}
    overlap = own & theirs
    disagree = [t for t in overlap if abs(row[t] - earlier[t]) > 1e-9]
    if disagree:
        raise CarryOverError(f"{row['method']}: the run and the earlier table disagree on {', '.join(disagree)} "
                             f"({', '.join(f'{100 * row[t]:.1f} vs {100 * earlier[t]:.1f}' for t in disagree)}); "
                             "their configurations differ: rerun every task instead of carrying cells over.")
    if own <= theirs:
        return {**earlier, "carried": sorted(theirs - own)}
    if overlap:
        raise CarryOverError(f"{row['method']}: the run covers {', '.join(sorted(own))} and the earlier row "
                             f"{', '.join(sorted(theirs))}; carry-over needs disjoint tasks or the run's a subset.")
    missing = sorted(theirs)
    merged = {**row, **{t: earlier[t] for t in missing}, "carried": missing,
              "acc_norm": {**row["acc_norm"], **{t: earlier["acc_norm"].get(t) for t in missing}},
              "n_per_task": {**row["n_per_task"], **{t: earlier["n_per_task"][t] for t in missing}},
              "num_fewshot": sorted(set(row["num_fewshot"]) | set(earlier["num_fewshot"]))}
    # both means are over tasks (context tokens) or items (seconds): weight each side by what it averaged
    n_own, n_theirs = len(own), len(theirs)
    merged["mean_context_tokens"] = (row["mean_context_tokens"] * n_own + earlier["mean_context_tokens"] * n_theirs) / (n_own + n_theirs)
    items_own = sum(row["n_per_task"].values())
    items_theirs = sum(earlier["n_per_task"][t] for t in missing)
    merged["seconds_per_item"] = (row["seconds_per_item"] * items_own + earlier["seconds_per_item"] * items_theirs) / (items_own + items_theirs)
    return {**merged, **_aggregates({t: merged[t] for t in TASK_NAMES if merged.get(t) is not None})}


def _aggregates(accs: dict) -> dict:
    complete = len(accs) == len(TASK_NAMES)
    return {
        "AVE": average(list(accs.values())) if complete else None,
        "HAR": harmonic_mean(list(accs.values())) if complete else None,
        "seen_HAR": harmonic_mean([accs[t] for t in SEEN_TASKS]) if all(t in accs for t in SEEN_TASKS) else None,
        "unseen_AVE": average([accs[t] for t in UNSEEN_TASKS]) if all(t in accs for t in UNSEEN_TASKS) else None,
    }


def paired_targets(runs: dict[str, dict]) -> list:
    """The issue's comparisons, where both rows are present."""
    results = []

    def pooled(run: dict, tasks) -> dict:
        return {item: right >= 1.0 for task in tasks for item, right in run["rights"].get(task, {}).items()}

    if "loragen" in runs and "lora" in runs:
        results.append(compare_pair("loragen", pooled(runs["loragen"], SEEN_TASKS), "lora", pooled(runs["lora"], SEEN_TASKS),
                                    "acc, seen tasks pooled"))
    if "loragen" in runs and "icl" in runs:
        for task in UNSEEN_TASKS:
            if task in runs["loragen"]["rights"] and task in runs["icl"]["rights"]:
                results.append(compare_pair("loragen", pooled(runs["loragen"], (task,)), "icl", pooled(runs["icl"], (task,)),
                                            f"acc, {task}"))
    return results


def context_ratio(run: dict, icl: dict) -> float | None:
    """Mean context tokens of `run` over icl's, on the tasks both scored (the issue's sequence-length bar)."""
    common = [t for t in run["tasks"] if t in icl["tasks"]]
    if not common:
        return None
    return statistics.fmean(run["tasks"][t]["mean_context_tokens"] for t in common) / statistics.fmean(
        icl["tasks"][t]["mean_context_tokens"] for t in common)


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown(rows: list[dict], pairs: list, machine: dict | None) -> str:
    header = ["method", *(SHORT[t] for t in TASK_NAMES), "AVE", "HAR", "seen HAR", "context tokens", "% of icl's", "s / item", "n per task"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        counts = "/".join(str(c) for c in sorted(set(row["n_per_task"].values())))
        lines.append("| " + " | ".join([row["method"], *(_percent(row[t]) + ("†" if t in row.get("carried", ()) else "") for t in TASK_NAMES), _percent(row["AVE"]),
                                        _percent(row["HAR"]), _percent(row["seen_HAR"]), f"{row['mean_context_tokens']:.0f}",
                                        _percent(row.get("context_vs_icl")),
                                        f"{row['seconds_per_item']:.3f}", counts]) + " |")
    text = "\n".join(lines) + (
        f"\n\nacc (%) as lm-evaluation-harness scores it (its formats and continuations). * unseen tasks "
        f"({', '.join(UNSEEN_TASKS)}). context tokens: mean tokens before the first option, shots included; "
        "% of icl's: that mean over icl's, on the tasks both scored. "
        "s / item: the harness's wall time per scored item (log-likelihood of every option).\n"
    )
    if any(row["acc_norm"] for row in rows):
        text += "\nacc_norm (%) where the task defines it:\n\n| method | " + " | ".join(
            SHORT[t] for t in TASK_NAMES) + " |\n|" + "---|" * (len(TASK_NAMES) + 1) + "\n"
        for row in rows:
            text += f"| {row['method']} | " + " | ".join(_percent(row["acc_norm"].get(t)) for t in TASK_NAMES) + " |\n"
    if pairs:
        text += "\nPaired tests (exact McNemar):\n\n" + markdown_pairs(pairs)
    if machine:
        text += (f"\nMachine: {machine.get('cpu')}, {machine.get('cores')} cores; torch {machine.get('torch')}; "
                 f"load average at start {machine.get('load_average_at_start')}.\n")
    return text


def _context_vs_icl(row: dict, rows: dict, runs: dict) -> float | None:
    icl = rows.get("icl")
    if icl is None:
        return None
    if row["AVE"] is not None and icl["AVE"] is not None:  # both over all eight tasks
        return row["mean_context_tokens"] / icl["mean_context_tokens"]
    if row["method"] in runs and "icl" in runs and not row.get("carried") and not icl.get("carried"):
        return context_ratio(runs[row["method"]], runs["icl"])
    return None


def write_harness_table(named_runs: list[tuple[str, Path]], results_dir: Path, carry_over: Path | None = None) -> tuple[list[dict], str]:
    runs = {name: load_run(directory) for name, directory in named_runs}
    rows = {name: table_row(name, run) for name, run in runs.items()}
    pairs = paired_targets(runs)
    machine = next(iter(runs.values()))["machine"] if runs else None
    carried_pairs = []
    if carry_over is not None:
        if not Path(carry_over).is_file():
            raise FileNotFoundError(f"--carry-over {carry_over}: no such table (a commonsense_harness_table2.json).")
        earlier = json.loads(Path(carry_over).read_text())
        for old in earlier["rows"]:
            name = old["method"]
            rows[name] = merge_with_earlier(rows[name], old) if name in rows else {**old, "carried": list(TASK_NAMES)}
        done = {(p.a, p.b, p.metric) for p in pairs}
        carried_pairs = [p for p in earlier.get("paired", []) if (p["a"], p["b"], p["metric"]) not in done]
        machine = machine or earlier.get("machine")
    order = [old["method"] for old in earlier["rows"]] if carry_over is not None else []
    ordered = [rows[n] for n in order + [n for n in rows if n not in order]]
    for row in ordered:
        row["context_vs_icl"] = _context_vs_icl(row, rows, runs)
    all_pairs = pairs + [PairedResult(**{k: v for k, v in p.items() if k in PairedResult.__dataclass_fields__}) for p in carried_pairs]
    text = markdown(ordered, all_pairs, machine)
    if carry_over is not None:
        text += (f"\n† carried over from {carry_over}: an earlier run with the same configuration whose item-level "
                 "records were lost with its machine (no paired test uses these cells)."
                 + (" Paired tests carried over from it: " + ", ".join("{a} vs {b} ({metric})".format(**p) for p in carried_pairs) + "."
                    if carried_pairs else "") + "\n")
    payload = {"rows": ordered, "paired": [p.to_dict() for p in pairs] + [{**p, "carried": True} for p in carried_pairs],
               "runs": {n: str(d) for n, d in named_runs}, "carry_over": str(carry_over) if carry_over else None, "machine": machine}
    write_text_atomic(results_dir / f"{HARNESS_TABLE_STEM}.json", json.dumps(payload, indent=2) + "\n")
    write_text_atomic(results_dir / f"{HARNESS_TABLE_STEM}.md", text)
    return ordered, text
