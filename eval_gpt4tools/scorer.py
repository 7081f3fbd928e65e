"""The GPT4Tools success-rate scorer, rule for rule as the authors' `eval/evaluate_result.py`.

Per item the prediction (stripped) is parsed with the authors' regexes and compared with the gold
trace: thought, action and argument scores over positions, IoU of the concatenated flag vectors, and
success = thought 1, action 1, arguments ≥ 0.5. Arguments that are not image paths are compared with
`pycocoevalcap`'s `Bleu(n=1)` itself, so BLEU-1 matches the reference implementation by construction.
Reference rows (gpt4tools.md) are reproduced to 1e-6 in tests/test_gpt4tools_scorer.py.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu

THOUGHT = re.compile(r"Thought: Do I need to use a tool\? (.*)")
ACTION = re.compile(r"Action: (.*)")
ACTION_INPUT = re.compile(r"Action Input: (.*)")
FINAL_ANSWER = re.compile(r"AI: (.*)")


class PredictionsError(ValueError):
    """A predictions file is malformed or does not match the ground truth ids."""


@dataclass(frozen=True)
class ItemScore:
    thought: float
    action: float
    args: float
    success: float
    iou: float


@dataclass(frozen=True)
class Scores:
    SR_t: float
    SR_act: float
    SR_args: float
    SR: float
    IoU: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _findall(pattern: re.Pattern, text: str) -> list[str]:
    return [match.strip() for match in pattern.findall(text)]


def _bleu1(reference: str, hypothesis: str) -> float:
    # pycocoevalcap prints its statistics to stdout on every call; keep the CLI's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        score, _ = Bleu(n=1).compute_score({1: [reference]}, {1: [hypothesis]})
    return float(score[0])


def _positional(gold: list[str], pred: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Exact-match flags over max(len) positions, and the gold-presence vector."""
    size = max(len(gold), len(pred))
    flags, present = np.zeros(size), np.zeros(size)
    shared = min(len(gold), len(pred))
    flags[:shared] = [float(g == p) for g, p in zip(gold[:shared], pred[:shared])]
    present[: len(gold)] = 1.0
    return flags, present


def _argument_flags(gold: list[str], pred: list[str]) -> tuple[np.ndarray, np.ndarray]:
    size = max(len(gold), len(pred))
    flags, present = np.zeros(size), np.zeros(size)
    for index, (gold_args, pred_args) in enumerate(zip(gold, pred)):
        gold_parts, pred_parts = gold_args.split(","), pred_args.split(",")
        if len(gold_parts) != len(pred_parts):
            continue
        part_scores = []
        for g, p in zip(gold_parts, pred_parts):
            if ".png" in g and ".png" not in p:
                part_scores = None  # a missing image path fails the whole position
                break
            part_scores.append(1.0 if ".png" in g else _bleu1(g, p))
        flags[index] = 0.0 if part_scores is None else float(np.mean(part_scores))
    present[: len(gold)] = 1.0
    return flags, present


def score_item(gold_output: str, prediction: str) -> ItemScore:
    prediction = prediction.strip()
    pred_thoughts = _findall(THOUGHT, prediction)
    gold_thoughts = _findall(THOUGHT, gold_output)
    if "Action:" in gold_output and "Action Input:" in gold_output:
        gold_actions, gold_args = _findall(ACTION, gold_output), _findall(ACTION_INPUT, gold_output)
        gold_thoughts = gold_thoughts[: len(gold_actions)]
        pred_actions, pred_args = _findall(ACTION, prediction), _findall(ACTION_INPUT, prediction)
        action_flags, action_gold = _positional(gold_actions, pred_actions)
        args_flags, args_gold = _argument_flags(gold_args, pred_args)
        # A trailing "No" after the last action is the natural end of a trace, not an error.
        if len(pred_thoughts) == len(pred_actions) + 1 and pred_thoughts[-1] == "No":
            pred_thoughts = pred_thoughts[:-1]
        thought_flags, thought_gold = _positional(gold_thoughts, pred_thoughts)
        flags = np.concatenate([thought_flags, action_flags, args_flags])
        gold = np.concatenate([thought_gold, action_gold, args_gold])
        thought, action, args = (float(np.mean(f)) for f in (thought_flags, action_flags, args_flags))
        success = float(thought >= 1.0 and action >= 1.0 and args >= 0.5)
    else:
        flags, gold = _positional(gold_thoughts, pred_thoughts)
        thought = float(np.mean(flags))
        if not pred_thoughts or pred_thoughts[0] != "No" or not FINAL_ANSWER.search(prediction):
            thought = 0.0
        success = float(thought >= 1.0)
        action = args = success
    iou = float(np.sum(flags * gold) / max(np.sum(np.maximum(flags, gold)), 1.0))
    return ItemScore(thought=thought, action=action, args=args, success=success, iou=iou)


def score(gold_items: list[dict], predictions: dict) -> Scores:
    """Score every ground-truth item; `predictions` maps id → predicted output text."""
    items = [score_item(item["output"], predictions[item["id"]]) for item in gold_items]
    if not items:
        raise PredictionsError("Nothing to score: the ground truth is empty.")
    mean = lambda field: float(np.mean([getattr(i, field) for i in items]))  # noqa: E731
    return Scores(mean("thought"), mean("action"), mean("args"), mean("success"), mean("iou"), len(items))


def load_predictions(path: Path, gold_items: list[dict]) -> dict:
    """Read `[{"id", "output"}, ...]` and check it covers exactly the ground-truth ids."""
    from .data import check_items, read_json  # here, not at the top: data.py imports this module

    try:
        data = read_json(path, PredictionsError)
    except FileNotFoundError:
        raise PredictionsError(f"Predictions file {path} does not exist.") from None
    check_items(data, path, PredictionsError, ("output",))
    predictions = {entry["id"]: entry["output"] for entry in data}
    gold_ids = {item["id"] for item in gold_items}
    missing, extra = gold_ids - predictions.keys(), predictions.keys() - gold_ids
    # Ids may mix integers and strings, which do not compare: integers first, then strings.
    in_order = lambda ids: sorted(ids, key=lambda i: (isinstance(i, str), i))[:5]  # noqa: E731
    if missing:
        raise PredictionsError(f"{path} lacks predictions for {len(missing)} ids, e.g. {in_order(missing)}.")
    if extra:
        raise PredictionsError(f"{path} has {len(extra)} ids not in the ground truth, e.g. {in_order(extra)}.")
    return predictions
