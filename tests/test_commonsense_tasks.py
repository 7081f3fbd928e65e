"""The task loaders on the real shared data (counts, parsing), the prompts, and the training-data builder."""

from __future__ import annotations

import json

import pytest

from eval_commonsense.build_data import build_rows
from eval_commonsense.tasks import (
    DEFAULT_DATA_DIR, HELD_OUT_SHOTS, SEEN_TASKS, TASKS, UNSEEN_TASKS, CommonsenseDataError, eval_items, get_task,
    load_items, parse_row, shot_pool, subset,
)
from eval_gpt4tools.builder import build_samples
from loragen_core.atomic import write_jsonl
from loragen_core.train_data import load_rows

needs_data = pytest.mark.skipif(
    not DEFAULT_DATA_DIR.is_dir(), reason=f"commonsense data not found at {DEFAULT_DATA_DIR} (../shared is absent)"
)
# Sizes from ../shared/data/commonsense/README.md: (test, train, options per item)
SIZES = {
    "ARC-Challenge": (1172, 1119, {3, 4, 5}), "ARC-Easy": (2376, 2251, {3, 4, 5}), "OpenBookQA": (500, 4957, {4}),
    "BoolQ": (3270, 9427, {2}), "SocialIQA": (1954, 33410, {3}), "HellaSwag": (10042, None, {4}),
    "WinoGrande": (1267, None, {2}), "PIQA": (1838, None, {2}),
}


@pytest.fixture(scope="module")
def test_items():
    return {t.name: load_items(t, "test") for t in TASKS}


@needs_data
def test_every_file_parses_with_the_documented_counts(test_items):
    assert SEEN_TASKS == ("ARC-Challenge", "ARC-Easy", "OpenBookQA", "BoolQ", "SocialIQA")
    assert UNSEEN_TASKS == ("HellaSwag", "WinoGrande", "PIQA")
    for task in TASKS:
        n_test, n_train, widths = SIZES[task.name]
        items = test_items[task.name]
        assert len(items) == n_test, task.name
        assert {len(i.options) for i in items} == widths, task.name
        assert all(0 <= i.gold < len(i.options) and i.question and all(i.options) for i in items)
        if n_train:
            assert len(load_items(task, "train")) == n_train, task.name
            assert len(eval_items(task)) == n_test
        else:
            with pytest.raises(CommonsenseDataError, match="unseen"):
                load_items(task, "train")
            assert len(eval_items(task)) == n_test - HELD_OUT_SHOTS
            assert {i.id for i in shot_pool(task)}.isdisjoint(i.id for i in eval_items(task))


@needs_data
def test_fields_are_parsed_per_task(test_items):
    arc = test_items["ARC-Challenge"][1]
    assert arc.question.startswith("A group of engineers wanted to know how different building designs")
    assert arc.options == ("buildings will be built faster", "buildings will be made safer",
                           "building designs will look nicer", "building materials will be cheaper")
    assert arc.answer == "buildings will be made safer"  # gold answer2
    boolq = test_items["BoolQ"][0]
    assert (boolq.question, boolq.options, boolq.answer) == ("does ethanol take more energy make that produces?", ("true", "false"), "false")
    hella = test_items["HellaSwag"][0]
    assert hella.question == "Roof shingle removal: A man is sitting on a roof. he"
    assert hella.answer == "starts pulling up roofing on a roof."
    wino = test_items["WinoGrande"][1]
    assert wino.question.endswith("so _ always got the harder cases.") and wino.options == ("Sarah", "Maria") and wino.gold == 0
    piqa = test_items["PIQA"][1]  # options keep their text, trailing spaces trimmed
    assert piqa.question == "dresser" and piqa.options == ("replace drawer with bobby pin", "finish, woodgrain with  bobby pin")
    assert piqa.gold == 1
    siqa = test_items["SocialIQA"][0]
    assert siqa.options == ("make a new plan", "Go home and see Riley", "Find somewhere to go") and siqa.gold == 2


def test_a_row_off_its_template_is_refused():
    arc = get_task("ARC-Easy")
    good = {"instruction": "Please choose the correct answer to the question: Why?\n\nAnswer1: a Answer2: b\n\nAnswer format: answer1/answer2",
            "answer": "answer2"}
    assert parse_row(arc, good, "test", 0).answer == "b"
    with pytest.raises(CommonsenseDataError, match="template"):
        parse_row(arc, {**good, "instruction": "Choose: " + good["instruction"]}, "test", 3)
    with pytest.raises(CommonsenseDataError, match="none of"):
        parse_row(arc, {**good, "answer": "answer3"}, "test", 3)
    with pytest.raises(CommonsenseDataError, match="cannot split"):
        parse_row(arc, {**good, "instruction": good["instruction"].replace("Answer2", "Answer3")}, "test", 3)


def test_missing_data_names_where_to_get_it(tmp_path):
    with pytest.raises(CommonsenseDataError, match="--data-dir") as error:
        eval_items(get_task("PIQA"), tmp_path)
    assert "shared/data/commonsense" in str(error.value)


def test_subsets_are_deterministic_prefixes():
    items = list(range(100))
    small, large = subset(items, 10), subset(items, 30)
    assert small == subset(items, 10) and small == sorted(small)
    assert set(small) <= set(large) and len(large) == 30
    assert subset(items, None) == items and subset(items, 500) == items


@needs_data
def test_build_data_rows_train_on_the_seen_tasks_only(tmp_path):
    rows = build_rows(rows_per_task=40, shots=3, prompts_per_task=4, seed=1)
    assert rows == build_rows(rows_per_task=40, shots=3, prompts_per_task=4, seed=1)
    assert {r["kind"] for r in rows} == set(SEEN_TASKS) and len(rows) == 200
    assert len({r["system_prompt"] for r in rows}) == 20  # 4 per task
    for row in rows:
        task = get_task(row["kind"])
        assert row["system_prompt"].startswith(task.description)
        assert row["instruction"] == f"{row['system_prompt']}\n\n{row['edge_prompt']}"
        assert row["edge_prompt"] + row["output"] not in row["system_prompt"]  # never its own example
        assert row["id"].startswith(f"{row['kind']}/train/")
    fresh = build_rows(rows_per_task=10, shots=2, prompts_per_task=0, tasks=("BoolQ",))
    assert len({r["system_prompt"] for r in fresh}) == 10

    # the trainer reads it, alone or mixed with GPT4Tools rows, in either order
    ours = write_jsonl(rows, tmp_path / "cs")
    gpt4tools = write_jsonl(build_samples(6, 0, lambda questions: ["Fine."] * len(questions)), tmp_path / "g4t")
    assert len(load_rows([ours])) == 200
    assert len(load_rows([ours, gpt4tools])) == len(load_rows([gpt4tools, ours])) == 206
    # the same fields as a GPT4Tools row, plus the template that makes the trainer read it as plain text
    ours_row, gpt4tools_row = (json.loads(path.read_text().splitlines()[0]) for path in (ours, gpt4tools))
    assert ours_row.keys() - gpt4tools_row.keys() == {"template"} and ours_row["template"] == "text"
    assert gpt4tools_row.keys() <= ours_row.keys()
