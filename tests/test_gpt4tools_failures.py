"""The failure classes of `python -m eval_gpt4tools.failures`, on hand-written traces and a run directory."""

from __future__ import annotations

import json

import pytest

from eval_gpt4tools.failures import breakdown, failure_class
from eval_gpt4tools.scorer import PredictionsError


def trace(*calls: tuple[str, str], answer: str = "done") -> str:
    steps = "".join(f"Thought: Do I need to use a tool? Yes\nAction: {name}\nAction Input: {arg}\nObservation: x\n" for name, arg in calls)
    return steps + f"Thought: Do I need to use a tool? No\nAI: {answer}\n"


EDGE, FACE, SEG = ("Edge Detection On Image", "image/a.png"), ("Detect Face", "image/a.png"), ("Segment the Image", "image/a.png")


@pytest.mark.parametrize(("gold", "predicted", "kind"), [
    (trace(EDGE), trace(EDGE), "right"),
    (trace(), trace(EDGE), "tool when none needed"),
    (trace(EDGE), trace(), "no tool when needed"),
    (trace(EDGE), trace(FACE), "wrong tool"),
    (trace(EDGE), trace(EDGE, SEG), "extra step"),
    (trace(EDGE, SEG), trace(EDGE), "missing step"),
    (trace(EDGE, SEG), trace(EDGE, FACE), "wrong later step"),
    (trace(("Detect Face", "image/a.png")), trace(("Detect Face", "image/a.png, a face")), "arguments"),
    (trace(), "Thought: Do I need to use a tool? No\nno answer line", "final answer"),
])
def test_each_class(gold, predicted, kind):
    assert failure_class(gold, predicted) == kind


def test_a_run_directory_is_counted_and_confusions_listed(tmp_path):
    gold = [{"id": 0, "output": trace(EDGE)}, {"id": 1, "output": trace(EDGE)}, {"id": 2, "output": trace()}]
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.json").write_text(json.dumps([{"id": 0, "output": trace(FACE)}, {"id": 1, "output": trace(EDGE)}]))
    classes, confusions = breakdown(run, gold)
    assert classes == {"wrong tool": 1, "right": 1}
    assert confusions == {("Edge Detection On Image", "Detect Face"): 1}
    (run / "predictions.json").write_text(json.dumps([{"id": 7, "output": trace()}]))
    with pytest.raises(PredictionsError, match="not in the ground truth"):
        breakdown(run, gold)
