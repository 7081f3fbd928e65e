"""The system/edge prompt split, and deterministic stratified subsets."""

from __future__ import annotations

import pytest

from eval_gpt4tools.data import DEFAULT_TEST_FILE, NO_TOOL, gold_tool, load_test_items, stratified_subset
from tools import PromptFormatError, build_prompt, image_turn, seen_tools, split_prompt, system_prompt_for

needs_test_set = pytest.mark.skipif(
    not DEFAULT_TEST_FILE.is_file(), reason=f"GPT4Tools test set not found at {DEFAULT_TEST_FILE} (../shared is absent)"
)


@needs_test_set
def test_every_test_item_splits_and_reassembles():
    items = load_test_items()
    assert len(items) == 652
    for item in items:
        parts = split_prompt(item["instruction"])
        assert parts.reassemble() == item["instruction"]
        assert parts.edge_prompt.lstrip("\n").startswith(("Human:", "New input:")), "the edge prompt is the conversation"
        assert "New input:" in parts.edge_prompt and "TOOLS:" in parts.system_prompt
        assert "Let's think step by step." in parts.system_prompt and "New input:" not in parts.system_prompt


def test_build_and_split_own_prompt():
    tools = [(t["name"], t["description"]) for t in seen_tools()[:3]]
    prompt = build_prompt(tools, "Segment this image.", image_turn("image/abcdefgh.png", "A cat."))
    parts = split_prompt(prompt)
    assert parts.reassemble() == prompt
    assert parts.edge_prompt == "Human: Provide an image named image/abcdefgh.png. Description: A cat. Understand the image using tools.\nAI: Received.\n\nNew input: Segment this image."
    assert parts.system_prompt == system_prompt_for(tools)  # independent of the request
    with pytest.raises(PromptFormatError):
        split_prompt("Just a question without the template.")


@needs_test_set
def test_stratified_subset_is_deterministic_and_balanced():
    items = load_test_items()
    first, again = stratified_subset(items, 50), stratified_subset(items, 50)
    assert [i["id"] for i in first] == [i["id"] for i in again]
    counts = {}
    for item in first:
        counts[gold_tool(item)] = counts.get(gold_tool(item), 0) + 1
    assert len(counts) == 9 and NO_TOOL in counts  # 8 unseen tools + no-tool items
    assert max(counts.values()) - min(counts.values()) <= 1
    assert [i["id"] for i in stratified_subset(items, 20)] == [i["id"] for i in first[:20]]
