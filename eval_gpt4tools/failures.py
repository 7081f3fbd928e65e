"""Where does a run lose items? Each item SR counts wrong falls in one class, and wrong first tools are
listed as (gold → predicted) pairs.

    python -m eval_gpt4tools.failures RUN_DIR [RUN_DIR ...] [--data FILE] [--top 12]

Classes, in the order they are tested: a tool where none was needed; no tool where one was needed;
the first action wrong (wrong tool); the right actions then more (extra step) or fewer (missing
step); a later action wrong; otherwise the actions are right and the thoughts or arguments are not
(arguments). A no-tool item that called no tool and still failed: final answer (its form). RUN_DIR holds a finished run's predictions.json; only its items are counted.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from .data import load_test_items
from .paired import run_predictions
from .scorer import ACTION, _findall, score_item

CLASSES = ("right", "tool when none needed", "no tool when needed", "wrong tool", "extra step", "missing step",
           "wrong later step", "arguments", "final answer")


def failure_class(gold_output: str, prediction: str) -> str:
    if score_item(gold_output, prediction).success == 1.0:
        return "right"
    gold, predicted = _findall(ACTION, gold_output), _findall(ACTION, prediction.strip())
    if not gold:
        return "tool when none needed" if predicted else "final answer"  # a no-tool item answered in the wrong form
    if not predicted:
        return "no tool when needed"
    if predicted[0] != gold[0]:
        return "wrong tool"
    if predicted[: len(gold)] == gold and len(predicted) > len(gold):
        return "extra step"
    if gold[: len(predicted)] == predicted and len(predicted) < len(gold):
        return "missing step"
    return "wrong later step" if predicted != gold else "arguments"


def breakdown(run_dir: Path, gold_items: list[dict]) -> tuple[Counter, Counter]:
    """(items per class, wrong first tools as (gold, predicted) pairs) of one run."""
    gold = {item["id"]: item["output"] for item in gold_items}
    classes, confusions = Counter(), Counter()
    for item_id, output in run_predictions(run_dir, gold).items():
        kind = failure_class(gold[item_id], output)
        classes[kind] += 1
        if kind == "wrong tool":
            confusions[(_findall(ACTION, gold[item_id])[0], _findall(ACTION, output.strip())[0])] += 1
    return classes, confusions


def main(argv: list[str] | None = None) -> int:
    from loragen_core.errors import user_errors

    parser = argparse.ArgumentParser(prog="python -m eval_gpt4tools.failures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="Finished run directories.")
    parser.add_argument("--data", type=Path, default=None, help="GPT4Tools test JSON (default: ../shared/data/gpt4tools/).")
    parser.add_argument("--top", type=int, default=12, help="Wrong-tool pairs to list per run (default 12).")
    args = parser.parse_args(argv)
    with user_errors():
        gold_items = load_test_items(args.data)
        results = {run_dir: breakdown(run_dir, gold_items) for run_dir in args.runs}  # every run read before any output
        print("| run | items | " + " | ".join(CLASSES) + " |")
        print("|---|---|" + "---|" * len(CLASSES))
        for run_dir, (classes, _) in results.items():
            print(f"| {run_dir.name} | {sum(classes.values())} | " + " | ".join(str(classes[c]) for c in CLASSES) + " |")
        for run_dir, (_, confusions) in results.items():
            print(f"\n{run_dir.name}: wrong first tool (gold -> predicted), most frequent first")
            for (wanted, called), count in confusions.most_common(args.top):
                print(f"  {count:3d}  {wanted} -> {called}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
