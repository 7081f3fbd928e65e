"""Paired comparison of finished commonsense runs, item by item (exact McNemar test).

    python -m eval_commonsense compare runs/commonsense/lora runs/commonsense/loragen --tasks unseen

Each run's records.jsonl holds every item's option log-likelihoods; an item is right when the
highest-scoring option is the gold one (`acc`, as in the table). Rows compare on the items both runs
scored, optionally only on the seen or unseen tasks. The test itself is loragen_core.paired's.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from loragen_core.paired import PairedResult, compare_pair

from .scoring import predict
from .tasks import SEEN_TASKS, TASKS_BY_NAME, UNSEEN_TASKS

TASK_GROUPS = {"all": tuple(TASKS_BY_NAME), "seen": SEEN_TASKS, "unseen": UNSEEN_TASKS}


def item_rights(run_dir: Path, tasks: tuple[str, ...]) -> dict:
    """id → whether the run's top option is the gold one, for the run's items in `tasks`."""
    path = Path(run_dir) / "records.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no records.jsonl: run `python -m eval_commonsense run --out {run_dir}` first.")
    rights = {}
    for line_number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{line_number} is not a JSON record; the file is damaged (rerun the run to rebuild it).") from None
        if record["task"] in tasks:
            rights[record["id"]] = predict(record["logliks"]) == record["gold"]
    return rights


def compare_runs(run_dirs: list[Path], group: str = "all") -> list[PairedResult]:
    """Every pair of runs, named by their method (metrics.json) or directory name."""
    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two run directories.")
    names = [_name(d) for d in run_dirs]
    rights = [item_rights(d, TASK_GROUPS[group]) for d in run_dirs]
    metric = f"acc ({group} tasks)"
    results = []
    for (name_a, rights_a), (name_b, rights_b) in itertools.combinations(zip(names, rights), 2):
        results.append(compare_pair(name_a, rights_a, name_b, rights_b, metric))
    return results


def _name(run_dir: Path) -> str:
    metrics = Path(run_dir) / "metrics.json"
    return json.loads(metrics.read_text()).get("method", run_dir.name) if metrics.is_file() else Path(run_dir).name
