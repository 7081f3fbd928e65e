"""Grammar fast-forward (`EdgeModel(decoder="fast-forward")`, loragen_core/fast_forward.py): the
tokens the grammar forces are written without a decode step each, and the text is what step-by-step
greedy decoding writes: on the tiny random model and on the real default model; the budget, stop
strings and streaming still hold; rows without a grammar decode as before."""

from __future__ import annotations

import pytest
import torch

from eval_gpt4tools.runner import RunConfig, RunConfigError
from loragen_core import load_causal_lm
from loragen_core.edge_runtime import EdgeModel
from tools.gpt4tools_grammar import trace_grammar

EDGE, FACE, SEGMENT = "Edge Detection On Image", "Detect Face", "Segment the Image"
PROMPTS = ["Detect the edges of image/abc.png", "Find the face in cache/xyzxyzxy.png please, now.", "Hi"]
GRAMMAR = trace_grammar([EDGE, FACE, SEGMENT], image_tools=[EDGE, SEGMENT], image_paths=["image/abc.png"])


def _forward_counter(model: torch.nn.Module) -> list[int]:
    """Counts the model's forward calls (each one a decode step or a prefill)."""
    calls = [0]
    model.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.fixture(scope="module")
def two_edges(tiny_dirs):
    return (EdgeModel(load_causal_lm(str(tiny_dirs["edge"]))),
            EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), decoder="fast-forward"))


@pytest.mark.parametrize("prompt", PROMPTS)
def test_fast_forward_writes_what_step_by_step_decoding_writes_in_fewer_steps(two_edges, prompt):
    stepwise, fast = two_edges
    calls = _forward_counter(fast.model)
    expected = stepwise.complete(prompt, max_new_tokens=48, grammar=GRAMMAR)
    got = fast.complete(prompt, max_new_tokens=48, grammar=GRAMMAR)
    assert got.text == expected.text and got.new_tokens == expected.new_tokens
    assert got.text.startswith("Thought: Do I need to use a tool? ")
    # "Thought: Do I need to use a tool?" alone is several forced tokens: they share one forward
    assert calls[0] < got.new_tokens, (calls[0], got.new_tokens)


def test_budget_stop_strings_and_streaming_hold_under_fast_forward(two_edges):
    stepwise, fast = two_edges
    short = fast.complete(PROMPTS[0], max_new_tokens=5, grammar=GRAMMAR)
    assert short.new_tokens == 5 and short.text == stepwise.complete(PROMPTS[0], max_new_tokens=5, grammar=GRAMMAR).text
    pieces: list[str] = []
    stopped = fast.complete(PROMPTS[0], max_new_tokens=48, grammar=GRAMMAR, stop=["tool?"], on_text=pieces.append)
    expected = stepwise.complete(PROMPTS[0], max_new_tokens=48, grammar=GRAMMAR, stop=["tool?"])
    assert stopped.text == expected.text == "Thought: Do I need to use a "  # ended inside a forced stretch
    assert stopped.new_tokens == expected.new_tokens < 48 and "".join(pieces) == stopped.text


def test_without_a_grammar_fast_forward_is_the_dynamic_decoder(two_edges):
    stepwise, fast = two_edges
    assert fast.complete(PROMPTS[2], max_new_tokens=12).text == stepwise.complete(PROMPTS[2], max_new_tokens=12).text


def test_the_evaluator_refuses_fast_forward_in_batches(tmp_path):
    with pytest.raises(RunConfigError, match="--edge-decoder fast-forward is a batch-1 path"):
        RunConfig(mode="loragen", out=tmp_path, edge_decoder="fast-forward", batch_size=16)


def test_fast_forward_on_the_real_default_model_writes_the_same_trace():
    from loragen_core.model_loading import load_causal_lm as load_default

    loaded = load_default()
    stepwise, fast = EdgeModel(loaded), EdgeModel(load_default(), decoder="fast-forward")
    calls = _forward_counter(fast.model)
    for prompt in PROMPTS[:2]:
        before = calls[0]
        expected = stepwise.complete(prompt, max_new_tokens=40, grammar=GRAMMAR)
        got = fast.complete(prompt, max_new_tokens=40, grammar=GRAMMAR)
        assert got.text == expected.text
        assert calls[0] - before < got.new_tokens
