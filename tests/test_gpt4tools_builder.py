"""The training-data builder: parseable targets, no test-set leakage, no unseen tools, determinism."""

from __future__ import annotations

import json
import re

import pytest
from datasets import load_dataset

from eval_gpt4tools.__main__ import main
from eval_gpt4tools.builder import build_samples, like_phrases
from eval_gpt4tools.data import DEFAULT_TEST_FILE, gold_tool, load_test_items
from eval_gpt4tools.negative_answers import answer_with_model
from eval_gpt4tools.scorer import score_item
from tools import seen_tools, split_prompt
from tools.gpt4tools_prompt import IMAGE_PATH

N, SEED = 400, 11
_answers: dict[str, str] = {}


def real_model_answers(questions: list[str]) -> list[str]:
    """The real default model's answers, computed once per question for the whole module."""
    missing = [q for q in questions if q not in _answers]
    if missing:
        _answers.update(zip(missing, answer_with_model(missing)))
    return [_answers[q] for q in questions]


@pytest.fixture(scope="module")
def rows():
    return build_samples(N, SEED, real_model_answers)


def test_every_target_parses_and_scores_itself(rows):
    assert {r["kind"] for r in rows} == {"tool", "two_step", "negative", "context"}
    for row in rows:
        result = score_item(row["output"], row["output"])
        assert result.success == 1.0, row
        assert row["output"].startswith("Thought: Do I need to use a tool? ")
        assert split_prompt(row["instruction"]).system_prompt == row["system_prompt"]


def test_two_step_samples_call_the_prerequisite_first(rows):
    prerequisite = {t["name"]: t["prerequisite"] for t in seen_tools()}
    for row in (r for r in rows if r["kind"] == "two_step"):
        actions = re.findall(r"Action: (.*)", row["output"])
        assert actions == [prerequisite[row["gold_tool"]], row["gold_tool"]]
        first_observation = re.search(r"Observation:\n(.*)", row["output"]).group(1)
        second_input = re.findall(r"Action Input: (.*)", row["output"])[1]
        assert second_input.split(",")[0] == first_observation.removeprefix("Result saved as ")


def test_negatives_carry_real_answers(rows):
    negatives = [r for r in rows if r["kind"] == "negative"]
    assert negatives
    answers = {re.search(r"AI: (.*)", r["output"]).group(1) for r in negatives}
    assert len(answers) > 1 and all(len(a.split()) >= 3 for a in answers)


def test_requests_are_varied(rows):
    requests = {re.search(r"New input: (.*)", r["instruction"]).group(1) for r in rows if r["kind"] == "tool"}
    assert len(requests) > 0.8 * sum(r["kind"] == "tool" for r in rows)
    assert like_phrases(next(t for t in seen_tools() if t["name"] == "Edge Detection On Image")["description"])


def test_deterministic_for_a_seed(rows):
    assert build_samples(N, SEED, real_model_answers) == rows
    assert build_samples(N, SEED + 1, real_model_answers) != rows


@pytest.mark.skipif(not DEFAULT_TEST_FILE.is_file(), reason=f"GPT4Tools test set not found at {DEFAULT_TEST_FILE} (../shared is absent)")
def test_no_test_set_text_and_no_unseen_tool(rows):
    items = load_test_items()
    unseen = {gold_tool(i) for i in items} - {t["name"] for t in seen_tools()} - {"(no tool)"}
    assert len(unseen) == 8
    built = "\n".join(r["instruction"] + r["output"] for r in rows)
    for tool in unseen:  # as a listed tool or as an action ("Detection" is also part of seen names)
        assert f"> {tool}:" not in built and f"Action: {tool}\n" not in built and f" {tool}," not in built
    for item in items:
        user = split_prompt(item["instruction"]).user
        request = re.search(r"New input: (.*)", user).group(1).strip()
        assert request not in built
        caption = re.search(r"Description: (.*) Understand the image", user)
        if caption:
            assert caption.group(1).strip() not in built


def test_cli_writes_jsonl_that_datasets_loads(tmp_path, capsys):
    assert main(["build-data", "--out", str(tmp_path), "--n", "12", "--seed", "3"]) == 0
    assert "12 samples, 12 distinct system prompts, written" in capsys.readouterr().out
    dataset = load_dataset("json", data_files=str(tmp_path / "train.jsonl"), split="train")
    assert len(dataset) == 12 and {"system_prompt", "edge_prompt", "output", "kind"} <= set(dataset.column_names)
    assert not list(tmp_path.glob("*.tmp"))
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert first["id"] == "seed3-0"
    # The single-step rows, in the test set's layout: `run --data OUT/eval_items.json` reads them.
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    items = load_test_items(tmp_path / "eval_items.json")
    assert [i["id"] for i in items] == [r["id"] for r in rows if r["kind"] in ("tool", "negative")]


def test_a_tool_set_pool_bounds_the_distinct_system_prompts():
    rows = build_samples(300, 0, lambda questions: ["Fine."] * len(questions), tool_sets=20)
    prompts = {r["system_prompt"] for r in rows}
    # Requests whose required tools fit no pooled list get a fresh, unpooled one; far fewer than 300 remain.
    assert len(prompts) <= 40
    unpooled = build_samples(300, 0, lambda questions: ["Fine."] * len(questions))
    assert len({r["system_prompt"] for r in unpooled}) > 200
    for row in rows:  # every sample still lists its gold tool
        if row["gold_tool"]:
            assert f"> {row['gold_tool']}:" in row["system_prompt"]


def test_tool_names_line_rows_are_what_loragen_names_reads():
    from eval_gpt4tools.runner import RunConfig, edge_text

    fine = lambda questions: ["Fine."] * len(questions)  # noqa: E731
    plain, named = build_samples(60, 0, fine, tool_sets=5), build_samples(60, 0, fine, tool_sets=5, tool_names_line=True)
    config = RunConfig(mode="loragen-names", out=None)
    for a, b in zip(plain, named):
        assert {k: v for k, v in a.items() if k != "edge_prompt"} == {k: v for k, v in b.items() if k != "edge_prompt"}
        assert b["edge_prompt"] == edge_text(config, b["instruction"])[0]
        names_line, rest = b["edge_prompt"].split("\n", 1)
        assert rest == a["edge_prompt"]
        listed = names_line.removeprefix("Tools: ").split(", ")
        assert len(listed) >= 2 and all(f"> {name}:" in b["system_prompt"] for name in listed)


# ---- synthetic tools and natural conversations (issue 14 items 2 and 3) ---------------------------

def _fine(questions):
    return ["Fine."] * len(questions)


# What makes each unseen test tool itself; a synthetic name with any of these words would leak it.
TEST_TOOL_WORDS = {"face", "faces", "ocr", "3d", "asset", "quality", "crop", "super-resolution", "resolution"}


def _test_tool_definitions() -> dict[str, str]:
    if not DEFAULT_TEST_FILE.exists():
        pytest.skip(f"{DEFAULT_TEST_FILE} is absent (it ships in ../shared, beside the clone).")
    definitions = {}
    for item in load_test_items(DEFAULT_TEST_FILE):
        definitions.update(split_prompt(item["instruction"]).tool_definitions)
    return definitions


def test_synthetic_tools_are_many_unique_and_none_is_a_test_tool():
    from eval_gpt4tools.synthetic_tools import synthetic_tools

    tools = synthetic_tools()
    assert len(tools) >= 300
    names = [t["name"] for t in tools]
    assert len(set(names)) == len(names)
    seen = {t["name"]: t["description"] for t in seen_tools()}
    assert not set(names) & set(seen)
    test = _test_tool_definitions()
    unseen = {name: description for name, description in test.items() if name not in seen}
    assert len(unseen) == 8
    for tool in tools:
        assert tool["name"] not in test and tool["description"] not in test.values(), tool["name"]
        words = set(tool["name"].lower().split())
        assert not words & TEST_TOOL_WORDS, tool["name"]
        assert "text detection" not in tool["name"].lower() and tool["name"] != "Detection"
        assert "like:" in tool["description"] and "The input to this tool should be" in tool["description"]


def test_synthetic_rows_mix_seen_and_synthetic_tools_over_a_thousand_tool_sets():
    rows = build_samples(4000, 0, _fine, tool_sets=1200, synthetic=True, natural_share=0.5)
    assert len({r["system_prompt"] for r in rows}) >= 1000
    seen = {t["name"] for t in seen_tools()}
    golds = {r["gold_tool"] for r in rows if r["gold_tool"]}
    assert len(golds - seen) >= 250 and len(golds & seen) >= 20
    test_names = set(_test_tool_definitions()) - seen
    for row in rows:
        listed = split_prompt(row["instruction"]).tool_names
        assert not set(listed) & test_names
        if row["gold_tool"]:
            assert row["gold_tool"] in listed
        assert score_item(row["output"], row["output"]).success == 1.0


def test_unseen_gold_rows_are_laid_out_like_the_unseen_tool_test_set():
    # A development set for served rules: the gold tool is one the shipped generator never saw and the
    # distractors are the seen tools the edge model learnt to name, as in the test set.
    rows = build_samples(300, 5, _fine, synthetic=True, unseen_gold=True)
    seen = {t["name"] for t in seen_tools()}
    tool_rows = [r for r in rows if r["kind"] == "tool"]
    assert len(tool_rows) > 100
    for row in tool_rows:
        listed = split_prompt(row["instruction"]).tool_names
        assert row["gold_tool"] not in seen and row["gold_tool"] in listed
        assert set(listed) - {row["gold_tool"]} <= seen and len(listed) >= 2
        assert score_item(row["output"], row["output"]).success == 1.0
    with pytest.raises(ValueError, match="give synthetic=True"):
        build_samples(10, 5, _fine, unseen_gold=True)


def test_natural_conversations_put_the_image_in_the_request_or_in_earlier_turns():
    plain = build_samples(300, 0, _fine, tool_sets=50, synthetic=True)
    natural = build_samples(300, 0, _fine, tool_sets=50, synthetic=True, natural_share=1.0)
    assert all("AI: Received." in r["edge_prompt"] for r in plain if r["kind"] == "tool" and "Provide an image" in r["edge_prompt"])
    assert not any("AI: Received." in r["edge_prompt"] for r in natural)
    image_rows = [r for r in natural if r["kind"] == "tool" and "Action Input:" in r["output"]]
    inline = [r for r in image_rows if not r["edge_prompt"].split("New input: ")[0].strip()]
    turns = [r for r in image_rows if r["edge_prompt"].split("New input: ")[0].strip()]
    assert len(inline) >= 30 and len(turns) >= 30
    checked = 0
    for row in image_rows:
        # The gold call's image argument is a path the conversation really contains.
        argument = row["output"].split("Action Input: ", 1)[1].split("\n", 1)[0].split(",")[0]
        if IMAGE_PATH.fullmatch(argument):
            assert argument in row["edge_prompt"], row
            checked += 1
    assert checked >= 30


def test_without_the_new_flags_the_original_recipe_is_unchanged():
    import hashlib

    # The digest of these rows before synthetic tools and natural conversations existed (commit 1c9ea9c):
    # the shipped generator's data stays reproducible from its model card's command.
    rows = build_samples(300, 0, _fine, tool_sets=20)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    assert digest == "6bd6fe49348479286c3457e851afb60c63080eef612e0fa4cc87608285d46dd2"


def test_realistic_observations_replace_every_placeholder_and_nothing_else():
    plain = build_samples(300, 4, _fine, tool_sets=40, synthetic=True)
    real = build_samples(300, 4, _fine, tool_sets=40, synthetic=True, realistic_observations=True)
    placeholder = re.compile(r"\[output_from_\w+\]")
    assert any(placeholder.search(r["output"] + r["instruction"]) for r in plain), "the plain recipe keeps GPT4Tools' placeholders"
    assert not any(placeholder.search(r["output"] + r["instruction"]) for r in real)
    # The observations draw from their own stream: requests, tool lists and calls are the plain recipe's.
    for a, b in zip(plain, real):
        assert (a["id"], a["kind"], a["gold_tool"], a["system_prompt"]) == (b["id"], b["kind"], b["gold_tool"], b["system_prompt"])
        calls = lambda text: re.findall(r"Action: .*\nAction Input: .*", text)  # noqa: E731
        assert calls(a["instruction"] + a["output"]) == calls(b["instruction"] + b["output"])
    captions = [r for r in real if r["gold_tool"] == "Get Photo Description" and r["kind"] == "tool"]
    assert captions, "the sample must hold a captioning call"
    for row in captions:  # the caption tool answers with the caption of the image the conversation introduced
        observed = re.search(r"Observation:\s*(.*)\n", row["output"]).group(1)
        assert observed and observed.split()[0] in ("A", "An") and "AI: " + observed in row["output"]
