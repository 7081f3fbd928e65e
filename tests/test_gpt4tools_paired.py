"""`python -m eval_gpt4tools compare`: paired, item-by-item comparison of runs with the exact McNemar test."""

from __future__ import annotations

import json

import pytest

from eval_gpt4tools.__main__ import main
from loragen_core.paired import mcnemar_exact_p

TOOL_GOLD = ("Thought: Do I need to use a tool? Yes\nAction: Segment the Image\nAction Input: image/a.png\n"
             "Observation: done\nThought: Do I need to use a tool? No\nAI: done\n")
NO_TOOL_GOLD = "Thought: Do I need to use a tool? No\nAI: Paris.\n"
WRONG = "Thought: Do I need to use a tool? Yes\nAction: Some Other Tool\nAction Input: image/b.png\n"


def write_gold(tmp_path, n: int):
    items = [{"id": i, "instruction": "irrelevant here", "output": TOOL_GOLD if i % 2 else NO_TOOL_GOLD} for i in range(n)]
    path = tmp_path / "test.json"
    path.write_text(json.dumps(items))
    return path, items


def write_run(directory, items, right_ids):
    directory.mkdir(parents=True)
    predictions = [{"id": item["id"], "output": item["output"] if item["id"] in right_ids else WRONG} for item in items]
    (directory / "predictions.json").write_text(json.dumps(predictions))
    return directory


def test_exact_mcnemar_p_values():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)  # all five discordant items one way
    assert mcnemar_exact_p(3, 6) == mcnemar_exact_p(6, 3) == pytest.approx(2 * (1 + 9 + 36 + 84) / 512)
    assert mcnemar_exact_p(5, 5) == 1.0


def test_exact_mcnemar_matches_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    for only_a, only_b in [(3, 6), (8, 30), (24, 5), (172, 177), (0, 12), (1, 1)]:
        reference = stats.binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue
        assert mcnemar_exact_p(only_a, only_b) == pytest.approx(reference, rel=1e-9)


def test_compare_counts_discordant_items_on_the_common_ones(tmp_path, capsys):
    gold_path, items = write_gold(tmp_path, 20)
    a = write_run(tmp_path / "a", items, right_ids={0, 1, 2, 3})
    b = write_run(tmp_path / "b", items[:10], right_ids={2, 3, 4, 5, 6, 7, 8, 9})  # a 10-item run
    out = tmp_path / "results" / "paired"
    assert main(["compare", "--data", str(gold_path), "--row", f"a={a}", "--row", f"b={b}", "--out", str(out)]) == 0
    [result] = json.loads(out.with_suffix(".json").read_text())
    assert (result["n_items"], result["both"], result["only_a"], result["only_b"], result["neither"]) == (10, 2, 2, 6, 0)
    assert result["p_value"] == pytest.approx(mcnemar_exact_p(2, 6))
    assert "| a | b | SR | 10 | 2 | 2 | 6 | 0 |" in capsys.readouterr().out
    assert not list(out.parent.glob("*.tmp"))


def test_compare_on_action_counts_the_action_alone(tmp_path):
    gold_path, items = write_gold(tmp_path, 4)
    right_action_wrong_args = TOOL_GOLD.replace("image/a.png", "no image path at all")
    a = tmp_path / "a"
    a.mkdir()
    (a / "predictions.json").write_text(json.dumps([{"id": i["id"], "output": right_action_wrong_args if i["id"] % 2 else i["output"]} for i in items]))
    b = write_run(tmp_path / "b", items, right_ids=set())
    out = tmp_path / "p"
    main(["compare", "--data", str(gold_path), "--row", f"a={a}", "--row", f"b={b}", "--metric", "SR_act", "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text())[0]["only_a"] == 4
    main(["compare", "--data", str(gold_path), "--row", f"a={a}", "--row", f"b={b}", "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text())[0]["only_a"] == 2  # the no-tool items only


def test_bad_rows_are_clear_errors(tmp_path, capsys):
    gold_path, items = write_gold(tmp_path, 4)
    a = write_run(tmp_path / "a", items, right_ids={0})
    assert main(["compare", "--data", str(gold_path), "--row", f"a={a}"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["compare", "--data", str(gold_path), "--row", f"a={a}", "--row", f"b={tmp_path / 'missing'}"]) == 2
    assert "has no predictions.json" in capsys.readouterr().err
    other_gold = tmp_path / "other.json"
    other_gold.write_text(json.dumps([{"id": 99, "instruction": "x", "output": NO_TOOL_GOLD}]))
    assert main(["compare", "--data", str(other_gold), "--row", f"a={a}", "--row", f"b={a}"]) == 2
    assert "not in the ground truth" in capsys.readouterr().err
