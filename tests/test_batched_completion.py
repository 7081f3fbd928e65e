"""Batched greedy decoding (`EdgeModel.complete_batch`) gives what decoding each prompt alone gives:
the same text and token count, with no adapter, with one merged adapter, and with a different
generated adapter on every row (applied functionally)."""

from __future__ import annotations

import pytest
import torch

from loragen_core import GeneratedLoRA
from loragen_core.edge_runtime import EdgeModel, RowEnds

PROMPTS = [
    "Detect the edges of image/abc.png",
    "Hi",
    "Generate a picture of a cat sitting on a red chair in the garden, please, with a hat on.",
]
BUDGET = 12


@pytest.fixture(scope="module")
def adapters(three_adapters) -> GeneratedLoRA:
    return three_adapters


def _alone(edge: EdgeModel, texts: list[str]) -> list[tuple[str, int]]:
    return [(c.text, c.new_tokens) for c in (edge.complete(t, max_new_tokens=BUDGET) for t in texts)]


def test_batch_equals_one_at_a_time_without_adapter(edge):
    batched = edge.complete_batch(PROMPTS, max_new_tokens=BUDGET)
    assert [(c.text, c.new_tokens) for c in batched] == _alone(edge, PROMPTS)
    assert [c.prompt_tokens for c in batched] == [edge.count_prompt_tokens(t) for t in PROMPTS]
    assert len({c.prompt_tokens for c in batched}) == 3, "the prompts must differ in length to test the padding"


def test_a_batch_reports_when_its_first_tokens_came_out(edge):
    batched = edge.complete_batch(PROMPTS, max_new_tokens=BUDGET, exact_length=True)
    first = {c.first_token_seconds for c in batched}
    assert len(first) == 1, "one prefill for the whole batch"
    assert 0 < first.pop() < batched[0].seconds  # the decode phase comes after it


def test_per_row_adapters_equal_merging_each_alone(edge, adapters):
    batched = [(c.text, c.new_tokens) for c in edge.complete_batch(PROMPTS, adapter=adapters, max_new_tokens=BUDGET)]
    alone = []
    for i, text in enumerate(PROMPTS):
        edge.specialize(adapters.row(i))
        alone += _alone(edge, [text])
    edge.reset()
    assert batched == alone
    assert batched != _alone(edge, PROMPTS), "the adapters should change what the model writes"


def test_a_shared_adapter_applies_to_every_row(edge, adapters):
    shared = adapters.row(1)
    batched = [(c.text, c.new_tokens) for c in edge.complete_batch(PROMPTS, adapter=shared, max_new_tokens=BUDGET)]
    edge.specialize(shared)
    try:
        assert batched == _alone(edge, PROMPTS)
    finally:
        edge.reset()


def test_adapter_batch_must_match_the_prompts(edge, adapters):
    with pytest.raises(ValueError, match="3 prompts"):
        edge.complete_batch(PROMPTS[:2] + PROMPTS[:1], adapter=GeneratedLoRA(
            {n: torch.cat([a, a]) for n, a in adapters.row(0).lora_a.items()},
            {n: torch.cat([b, b]) for n, b in adapters.row(0).lora_b.items()}, adapters.r, adapters.lora_alpha))
    assert edge.complete_batch([]) == []


def test_rows_end_at_their_own_final_answer_line(edge):
    tokenizer = edge.tokenizer
    prompt = tokenizer("user asks", return_tensors="pt")["input_ids"][0]
    finished = tokenizer("Thought: Do I need to use a tool? No\nAI: done\n", return_tensors="pt")["input_ids"][0]
    open_line = tokenizer("Thought: Do I need to use a tool? No\nAI: not yet", return_tensors="pt")["input_ids"][0]
    width = max(len(finished), len(open_line))
    pad = tokenizer.pad_token_id
    rows = torch.full((2, len(prompt) + width), pad)
    rows[:, : len(prompt)] = prompt
    rows[0, len(prompt) : len(prompt) + len(finished)] = finished
    rows[1, len(prompt) : len(prompt) + len(open_line)] = open_line
    rows[1, len(prompt) + len(open_line) :] = tokenizer("x", return_tensors="pt")["input_ids"][0][0]
    ends = RowEnds(tokenizer, len(prompt), eos_token_id=-1)
    assert ends(rows, None).tolist() == [True, False]
    assert ends.ended_at == [width, None]
    plain_chat = RowEnds(tokenizer, len(prompt), eos_token_id=-1, answer_line_ends=False)
    assert plain_chat(rows, None).tolist() == [False, False]  # in plain chat a line "AI: ..." is just text
