"""The scorer against the authors' reference rows, its rules on hand-made cases, and its CLI."""

from __future__ import annotations

import json

import pytest

from eval_gpt4tools.__main__ import main
from eval_gpt4tools.data import DEFAULT_TEST_FILE, load_test_items
from eval_gpt4tools.scorer import _bleu1, score, score_item

needs_test_set = pytest.mark.skipif(
    not DEFAULT_TEST_FILE.is_file(), reason=f"GPT4Tools test set not found at {DEFAULT_TEST_FILE} (../shared is absent)"
)
NO_SORRY = "Thought: Do I need to use a tool? No\nAI: sorry"
GOLD = "Thought: Do I need to use a tool? Yes\nAction: Crop the Given Object\nAction Input: example.png, soccer ball\nObservation:\nx\nThought: Do I need to use a tool? No\nAI: x\n\n"


@needs_test_set
@pytest.mark.parametrize(
    "transform, expected",
    [
        (lambda out: out, (1.0, 1.0, 0.995399, 0.995399, 0.998466)),
        (lambda out: NO_SORRY, (0.076687, 0.076687, 0.076687, 0.076687, 0.076687)),
        (lambda out: out.replace("example.png", "image/abcdefgh.jpg"), (1.0, 1.0, 0.184049, 0.184049, 0.728016)),
    ],
)
def test_reference_rows(transform, expected):
    items = load_test_items()
    result = score(items, {i["id"]: transform(i["output"]) for i in items})
    assert result.n == 652
    got = (result.SR_t, result.SR_act, result.SR_args, result.SR, result.IoU)
    assert got == pytest.approx(expected, abs=1e-6)


def test_rules_on_hand_made_cases():
    assert score_item(GOLD, GOLD).success == 1.0
    wrong_tool = score_item(GOLD, GOLD.replace("Crop the Given Object", "Detect Face"))
    assert (wrong_tool.action, wrong_tool.success) == (0.0, 0.0)
    other_path = score_item(GOLD, GOLD.replace("example.png", "cache/abc.png"))  # paths are not compared
    assert other_path.success == 1.0
    no_path = score_item(GOLD, GOLD.replace("example.png", "the image"))
    assert no_path.args == 0.0
    extra_action = score_item(GOLD, GOLD.replace("Observation:", "Action: Detect Face\nAction Input: a.png\nObservation:"))
    assert extra_action.action == 0.5 and extra_action.success == 0.0
    negative_gold = "Thought: Do I need to use a tool? No\nAI: Paris.\n"
    assert score_item(negative_gold, NO_SORRY).success == 1.0
    assert score_item(negative_gold, "Thought: Do I need to use a tool? No\nParis").success == 0.0  # no AI: line
    assert score_item(negative_gold, "Thought: Do I need to use a tool? Yes\nAI: x").success == 0.0


def test_bleu1_is_pycocoevalcap():
    assert _bleu1("soccer ball", "soccer ball") == pytest.approx(1.0)
    assert _bleu1("the soccer ball", "soccer ball") == pytest.approx(0.6065306597, rel=1e-6)  # brevity penalty e^(1-3/2)
    assert _bleu1("", "") == 0.0


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_score_cli_json_and_errors(tmp_path, capsys):
    gold = _write(tmp_path / "gt.json", [{"id": 0, "instruction": "", "input": "", "output": GOLD}, {"id": 1, "instruction": "", "input": "", "output": "Thought: Do I need to use a tool? No\nAI: x"}])
    preds = _write(tmp_path / "p.json", [{"id": 0, "output": GOLD}, {"id": 1, "output": NO_SORRY}])
    assert main(["score", "--data", str(gold), "--predictions", str(preds), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert main(["--data", str(gold), "score", "--predictions", str(preds), "--json"]) == 0  # --data before the subcommand
    assert json.loads(capsys.readouterr().out) == printed
    # pycocoevalcap's smoothing constants keep a perfect BLEU-1 a hair below 1.
    assert printed == pytest.approx({"SR_t": 1.0, "SR_act": 1.0, "SR_args": 1.0, "SR": 1.0, "IoU": 1.0, "n": 2}, abs=1e-8)

    cases = {
        "lacks predictions": [{"id": 0, "output": GOLD}],
        "not in the ground truth": [{"id": 0, "output": GOLD}, {"id": 1, "output": ""}, {"id": 9, "output": ""}],
        "JSON list": {"id": 0},
        "more than once": [{"id": 0, "output": GOLD}, {"id": 0, "output": GOLD}, {"id": 1, "output": ""}],
    }
    for message, data in cases.items():
        assert main(["score", "--data", str(gold), "--predictions", str(_write(tmp_path / "bad.json", data))]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("[{")
    assert main(["score", "--data", str(gold), "--predictions", str(tmp_path / "broken.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["score", "--data", str(gold), "--predictions", str(tmp_path / "absent.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_main_job_without_test_set_says_where_to_get_it(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing.json"), "--out", str(tmp_path / "runs")]) == 2
    assert "AILab-CVC/GPT4Tools" in capsys.readouterr().err
