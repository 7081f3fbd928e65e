"""Hostile and malformed JSON given to the GPT4Tools evaluator: one clear error, never a traceback.

Data files (every subcommand) and predictions files (`score`) must be lists of objects with a unique
string or integer id and string fields; anything else is refused at load, naming the file, the first
bad item's index and the field, before any model is loaded.
"""

from __future__ import annotations

import json

import pytest

import eval_gpt4tools.runner
from eval_gpt4tools.__main__ import main
from eval_gpt4tools.data import DatasetError, load_test_items
from eval_gpt4tools.scorer import PredictionsError, load_predictions

GOLD = "Thought: Do I need to use a tool? No\nAI: x"
DEEP = "[" * 100_000 + "]" * 100_000  # json's parser recurses once per level: RecursionError unless caught


def item(id=0, **fields) -> dict:
    return {"id": id, "instruction": "Human: hi", "input": "", "output": GOLD, **fields}


def write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    "items, expected",
    [
        ([item(), item(id={"a": 1})], ["item 1", "'id' is an object", "strings or integers"]),
        ([item(id=[1])], ["item 0", "'id' is a list"]),
        ([item(id=True)], ["item 0", "'id' is a boolean"]),
        ([item(id=1.5)], ["item 0", "'id' is a number"]),
        ([item(id=None)], ["item 0", "'id' is null"]),
        ([item(), item(id=1, instruction=42)], ["item 1 (id 1)", "'instruction' is a number, not a string"]),
        ([item(output=["a"])], ["item 0 (id 0)", "'output' is a list"]),
        ([item(id="x", output=None)], ["item 0 (id 'x')", "'output' is null"]),
        ([item(input=7)], ["item 0", "'input' is a number"]),
        ([item(), "text"], ["item 1 is a string"]),
        ([{"id": 0, "output": GOLD}], ["item 0 has no 'instruction' field"]),
        ({"id": 0}, ["must be a JSON list", "not an object"]),
    ],
)
def test_bad_items_are_refused_by_index_and_field(tmp_path, items, expected):
    path = write(tmp_path / "data.json", items)
    with pytest.raises(DatasetError) as refused:
        load_test_items(path)
    for text in expected + [str(path)]:
        assert text in str(refused.value)


def test_duplicate_ids_are_refused_with_both_indices(tmp_path):
    path = write(tmp_path / "data.json", [item(id="a"), item(id=1), item(id="a")])
    with pytest.raises(DatasetError, match=r"id 'a' occurs more than once, at items 0 and 2"):
        load_test_items(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        (DEEP, "too deeply"),
        ('[{"id": ' + "1" * 5000 + "}]", "not valid JSON"),  # int() refuses > 4300 digits with a plain ValueError
        (b"\xff\xfe[]", "not UTF-8"),
    ],
)
def test_unparseable_files_name_the_file(tmp_path, text, expected):
    path = tmp_path / "data.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DatasetError, match=expected) as refused:
        load_test_items(path)
    assert str(path) in str(refused.value)
    with pytest.raises(PredictionsError, match=expected):
        load_predictions(path, [item()])


def test_string_integer_and_mixed_ids_still_load(tmp_path):
    items = [item(id=0), item(id="q-1"), {"id": 2, "instruction": "", "output": GOLD}]  # `input` is optional
    assert load_test_items(write(tmp_path / "data.json", items)) == items
    predictions = [{"id": 0, "output": ""}, {"id": "q-1", "output": ""}, {"id": 2, "output": ""}]
    assert load_predictions(write(tmp_path / "p.json", predictions), items) == {0: "", "q-1": "", 2: ""}


@pytest.mark.parametrize(
    "predictions, expected",
    [
        ([{"id": {"a": 1}, "output": ""}], "item 0: 'id' is an object"),
        ([{"id": 0, "output": ""}, {"id": 1, "output": 3}], r"item 1 \(id 1\): 'output' is a number"),
        ([{"id": 0, "output": ""}, {"id": 1, "output": ""}, {"id": 0, "output": ""}], "id 0 occurs more than once, at items 0 and 2"),
        ([{"id": 9, "output": ""}], r"lacks predictions for 2 ids, e.g. \[0, 'a'\]"),  # mixed ids still sort
    ],
)
def test_bad_predictions_are_refused(tmp_path, predictions, expected):
    gold = [item(id=0), item(id="a")]
    with pytest.raises(PredictionsError, match=expected):
        load_predictions(write(tmp_path / "p.json", predictions), gold)


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if `run` gets as far as loading a model: bad data must be refused before."""
    loaded = lambda *args, **kwargs: pytest.fail("a model was loaded")  # noqa: E731
    for name in ("load_causal_lm", "load_default_generator", "load_generator"):
        monkeypatch.setattr(eval_gpt4tools.runner, name, loaded)


def cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "Traceback" not in captured.err
    return captured.err


def test_score_cli_refuses_hostile_files(tmp_path, capsys):
    gold = write(tmp_path / "gt.json", [item(id=0), item(id=1)])
    preds = write(tmp_path / "p.json", [{"id": 0, "output": GOLD}, {"id": [1], "output": GOLD}])
    assert "item 1: 'id' is a list" in cli_error(capsys, ["score", "--data", str(gold), "--predictions", str(preds)])
    deep = write(tmp_path / "deep.json", DEEP)
    assert "too deeply" in cli_error(capsys, ["score", "--data", str(deep), "--predictions", str(preds)])
    assert "too deeply" in cli_error(capsys, ["score", "--data", str(gold), "--predictions", str(deep)])
    bad_gold = write(tmp_path / "bad.json", [item(id=0), item(id=1, output=None)])
    assert "item 1 (id 1): 'output' is null" in cli_error(capsys, ["score", "--data", str(bad_gold), "--predictions", str(preds)])


@pytest.mark.parametrize(
    "data, expected",
    [
        ([item(id=0), item(id=1), item(id=0)], "id 0 occurs more than once, at items 0 and 2"),
        ([item(id={"k": 0})], "item 0: 'id' is an object"),
        ([item(id=0, instruction=None)], "'instruction' is null"),
        (DEEP, "too deeply"),
    ],
)
def test_run_cli_refuses_bad_data_before_loading_a_model(tmp_path, capsys, no_model, data, expected):
    path = write(tmp_path / "data.json", data)
    out = tmp_path / "run"
    assert expected in cli_error(capsys, ["run", "--mode", "icl", "--data", str(path), "--limit", "1", "--out", str(out)])
    assert not out.exists(), "nothing is written for a refused data file"


def test_compare_refuses_a_hostile_predictions_file(tmp_path, capsys):
    from eval_gpt4tools.__main__ import main

    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"id": 1, "instruction": "x", "input": "", "output": "Thought: Do I need to use a tool? No\nAI: a\n"}]))
    for name, content in (("good", [{"id": 1, "output": "AI: a"}]), ("bad", [{"id": [1], "output": "AI: a"}])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictions.json").write_text(json.dumps(content))
    code = main(["compare", "--data", str(data), "--row", f"a={tmp_path / 'good'}", "--row", f"b={tmp_path / 'bad'}"])
    assert code == 2 and "error:" in capsys.readouterr().err
