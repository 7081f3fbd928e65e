"""Paired comparison of finished runs, item by item.

    python -m eval_gpt4tools compare --row lora_without_tools=runs/gpt4tools/lora-edge-652b \\
        --row loragen=runs/gpt4tools/loragen-652b --out results/gpt4tools_paired

Two rows' success rates on the same 652 items can differ by a handful of items by chance. Scored on
the same items, the evidence is in the discordant ones: those one row gets right and the other does
not. The exact McNemar test asks whether that split is further from 50/50 than chance allows (a
two-sided binomial test on the discordant items), which is far more sensitive than comparing two
rates as if they came from independent samples.

An item counts as right when its per-item score for the metric is 1.0 (for SR: thought, action and
arguments all right; for SR_act: every action right). Rows are compared on the items both runs
scored, so a 100-item run and a 652-item run compare on their 100 common items.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .scorer import PredictionsError, score_item

# Metric name as in the tables → the ItemScore field that is 1.0 when the item is fully right.
METRIC_FIELDS = {"SR": "success", "SR_act": "action", "SR_t": "thought"}


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: binomial(n = only_a + only_b, 1/2) at least as uneven as seen."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedResult:
    a: str
    b: str
    metric: str
    n_items: int
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def item_rights(run_dir: Path, gold_by_id: dict, metric: str = "SR") -> dict:
    """id → whether the run got that item fully right on `metric`, for every item the run scored."""
    path = Path(run_dir) / "predictions.json"
    if not path.is_file():
        raise PredictionsError(f"{run_dir} has no predictions.json: finish the run first (`python -m eval_gpt4tools run ... --out {run_dir}`).")
    from .data import check_items, read_json  # data imports the scorer, which this module imports

    field = METRIC_FIELDS[metric]
    entries = read_json(path, PredictionsError)
    check_items(entries, path, PredictionsError, ("output",))
    rights = {}
    for entry in entries:
        if entry["id"] not in gold_by_id:
            raise PredictionsError(f"{path}: id {entry['id']!r} is not in the ground truth; was the run made on another test file?")
        rights[entry["id"]] = getattr(score_item(gold_by_id[entry["id"]]["output"], entry["output"]), field) >= 1.0
    return rights


def compare_pair(a: str, rights_a: dict, b: str, rights_b: dict, metric: str = "SR") -> PairedResult:
    common = rights_a.keys() & rights_b.keys()
    if not common:
        raise PredictionsError(f"{a} and {b} share no scored items: compare runs made on the same test items.")
    pairs = [(rights_a[i], rights_b[i]) for i in common]
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    both = sum(x and y for x, y in pairs)
    return PairedResult(a, b, metric, len(common), both, only_a, only_b, len(common) - both - only_a - only_b,
                        mcnemar_exact_p(only_a, only_b))


def compare_runs(rows: list[tuple[str, Path]], gold_items: list[dict], metric: str = "SR") -> list[PairedResult]:
    """Every pair of rows, in the order given."""
    if len(rows) < 2:
        raise PredictionsError("compare needs at least two --row NAME=RUN_DIR.")
    gold_by_id = {item["id"]: item for item in gold_items}
    rights = {name: item_rights(directory, gold_by_id, metric) for name, directory in rows}
    return [compare_pair(a, rights[a], b, rights[b], metric) for (a, _), (b, _) in itertools.combinations(rows, 2)]


def markdown_pairs(results: list[PairedResult]) -> str:
    lines = ["| A | B | metric | items | both right | only A | only B | neither | McNemar p |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.a} | {r.b} | {r.metric} | {r.n_items} | {r.both} | {r.only_a} | {r.only_b} | {r.neither} | {r.p_value:.3g} |")
    return "\n".join(lines) + "\n"


def write_pairs(results: list[PairedResult], out: Path) -> None:
    """`out`.json and `out`.md, each written whole (temporary file, then rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps([r.to_dict() for r in results], indent=2) + "\n"), (".md", markdown_pairs(results))):
        temporary = out.with_suffix(suffix + ".tmp")
        temporary.write_text(text)
        temporary.replace(out.with_suffix(suffix))
