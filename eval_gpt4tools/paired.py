"""Paired comparison of finished runs, item by item.

    python -m eval_gpt4tools compare --row lora_without_tools=runs/gpt4tools/lora-edge-652b \\
        --row loragen=runs/gpt4tools/loragen-652b --out results/gpt4tools_paired

The exact McNemar test itself is loragen_core.paired's, shared with eval_commonsense.

An item counts as right when its per-item score for the metric is 1.0 (for SR: thought, action and
arguments all right; for SR_act: every action right). Rows are compared on the items both runs
scored, so a 100-item run and a 652-item run compare on their 100 common items.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from loragen_core.paired import PairedResult, compare_pair

from .scorer import PredictionsError, score_item

# Metric name as in the tables → the ItemScore field that is 1.0 when the item is fully right.
METRIC_FIELDS = {"SR": "success", "SR_act": "action", "SR_t": "thought"}


def run_predictions(run_dir: Path, known_ids) -> dict:
    """id → predicted output, for every item a finished run scored (a subset of the test file is fine);
    `known_ids`: the test file's ids (any container)."""
    path = Path(run_dir) / "predictions.json"
    if not path.is_file():
        raise PredictionsError(f"{run_dir} has no predictions.json: finish the run first (`python -m eval_gpt4tools run ... --out {run_dir}`).")
    from .data import check_items, read_json  # data imports the scorer, which this module imports

    entries = read_json(path, PredictionsError)
    check_items(entries, path, PredictionsError, ("output",))
    for entry in entries:
        if entry["id"] not in known_ids:
            raise PredictionsError(f"{path}: id {entry['id']!r} is not in the ground truth; was the run made on another test file?")
    return {entry["id"]: entry["output"] for entry in entries}


def item_rights(run_dir: Path, gold_by_id: dict, metric: str = "SR") -> dict:
    """id → whether the run got that item fully right on `metric`, for every item the run scored."""
    field = METRIC_FIELDS[metric]
    return {i: getattr(score_item(gold_by_id[i]["output"], output), field) >= 1.0
            for i, output in run_predictions(run_dir, gold_by_id).items()}


def compare_runs(rows: list[tuple[str, Path]], gold_items: list[dict], metric: str = "SR") -> list[PairedResult]:
    """Every pair of rows, in the order given."""
    if len(rows) < 2:
        raise PredictionsError("compare needs at least two --row NAME=RUN_DIR.")
    gold_by_id = {item["id"]: item for item in gold_items}
    rights = {name: item_rights(directory, gold_by_id, metric) for name, directory in rows}
    return [compare_pair(a, rights[a], b, rights[b], metric) for (a, _), (b, _) in itertools.combinations(rows, 2)]
