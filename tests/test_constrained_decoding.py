"""Grammar-constrained decoding: a random tiny model, which otherwise writes gibberish, writes a valid
GPT4Tools trace naming only its own tools; batched rows with different grammars and adapters decode
as each does alone; the grammar itself accepts exactly the traces it should."""

from __future__ import annotations

import llguidance
import pytest
import torch

from agent.parsing import parse_turn
from loragen_core import LoRAGenConfig, build_generator
from loragen_core.constrained import GrammarError
from tests.grammar_checks import grammar_accepts
from tools.gpt4tools_grammar import trace_grammar

EDGE, FACE, SEGMENT = "Edge Detection On Image", "Detect Face", "Segment the Image"
PROMPTS = ["Detect the edges of image/abc.png", "Hi", "Find the face in cache/xyzxyzxy.png please, now."]
TOOL_SETS = [[EDGE, FACE], [SEGMENT], [FACE, SEGMENT]]
BUDGET = 40


@pytest.mark.parametrize("tools", TOOL_SETS)
def test_a_random_model_under_the_grammar_names_only_its_tools(edge, tools):
    free = edge.complete(PROMPTS[0], max_new_tokens=BUDGET)
    constrained = edge.complete(PROMPTS[0], max_new_tokens=BUDGET, grammar=trace_grammar(tools))
    assert not free.text.startswith("Thought:"), "the random model should not follow the format by itself"
    assert constrained.text.startswith("Thought: Do I need to use a tool? ")
    turn = parse_turn(constrained.text)
    if turn.kind == "tool":
        assert turn.action in tools
    else:
        assert turn.kind == "answer" or constrained.new_tokens == BUDGET, constrained.text


def test_the_grammar_accepts_real_traces_and_refuses_invented_tools(edge):
    grammar = trace_grammar([EDGE, FACE])
    call = f"Thought: Do I need to use a tool? Yes\nAction: {FACE}\nAction Input: image/abc.png\nObservation:\n"
    answer = "Thought: Do I need to use a tool? No\nAI: Two faces.\n"
    assert grammar_accepts(edge, grammar, call + "Result saved as image/x.png\n" + answer)
    assert grammar_accepts(edge, grammar, answer)
    assert not grammar_accepts(edge, grammar, call.replace(FACE, "Predict Face Detection On Image"))
    assert not grammar_accepts(edge, grammar, call.replace(FACE, SEGMENT))
    assert not grammar_accepts(edge, grammar, "Thought: Do I need to use a tool? Maybe\n")


def test_image_paths_restrict_the_input_of_image_tools(edge):
    grammar = trace_grammar([EDGE, FACE], image_tools=[EDGE], image_paths=["image/abc.png"])
    start = "Thought: Do I need to use a tool? Yes\nAction: "
    assert grammar_accepts(edge, grammar, start + f"{EDGE}\nAction Input: image/abc.png\nObservation:\n")
    assert not grammar_accepts(edge, grammar, start + f"{EDGE}\nAction Input: image/zzz.png\nObservation:\n")
    assert grammar_accepts(edge, grammar, start + f"{FACE}\nAction Input: anything at all\nObservation:\n")
    no_image = trace_grammar([EDGE], image_tools=[EDGE], image_paths=[])
    assert not grammar_accepts(edge, no_image, start + EDGE)
    assert grammar_accepts(edge, no_image, "Thought: Do I need to use a tool? No\nAI: Please upload an image.\n")


def test_batch_rows_with_different_grammars_and_adapters_equal_each_alone(edge, tiny_dirs):
    config = LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, r=4,
        lora_alpha=8, router_hidden=16, cloud_lora_r=4, expert_b_init_std=2.0, seed=3,
    )
    generator = build_generator(config).eval()
    with torch.inference_mode():
        adapters = generator([", ".join(tools) for tools in TOOL_SETS]).adapter.detach()
    grammars = [trace_grammar(tools) for tools in TOOL_SETS[:2]] + [None]  # the last row decodes freely
    batched = edge.complete_batch(PROMPTS, adapter=adapters, max_new_tokens=BUDGET, grammars=grammars)
    alone = []
    for i, prompt in enumerate(PROMPTS):
        edge.specialize(adapters.row(i))
        alone.append(edge.complete(prompt, max_new_tokens=BUDGET, grammar=grammars[i]))
    edge.reset()
    assert [(c.text, c.new_tokens) for c in batched] == [(c.text, c.new_tokens) for c in alone]
    assert batched[0].text.startswith("Thought:") and batched[1].text.startswith("Thought:")
    assert not batched[2].text.startswith("Thought:")


def test_grammars_must_match_the_prompts_and_be_valid(edge):
    with pytest.raises(ValueError, match="3 prompts but 1 grammars"):
        edge.complete_batch(PROMPTS, grammars=[None])
    with pytest.raises(GrammarError):
        edge.grammars.compile("start: undefined_rule\n")


def test_a_compiled_grammar_is_reused(edge):
    grammar = trace_grammar([EDGE])
    assert edge.grammars.compile(grammar) is edge.grammars.compile(grammar)
    assert isinstance(edge.grammars.matcher(edge.grammars.compile(grammar)), llguidance.LLMatcher)


def test_the_evaluator_builds_the_agents_grammar_from_an_item(tmp_path):
    from eval_gpt4tools.runner import RunConfig, RunConfigError, item_grammar
    from tools import build_prompt, image_turn
    from tools.registry import default_registry

    tools = default_registry().subset([EDGE, "Crop the Given Object"]).descriptions()
    instruction = build_prompt(tools, "Edges, please.", image_turn("image/abcdefgh.png", "A cat."))
    names_only = item_grammar(RunConfig(mode="loragen", out=tmp_path, constrained=True), instruction)
    agent_like = item_grammar(RunConfig(mode="loragen", out=tmp_path, constrained=True, constrain_images=True), instruction)
    assert names_only == trace_grammar([EDGE, "Crop the Given Object"])
    assert agent_like == trace_grammar([EDGE, "Crop the Given Object"], [EDGE], ["image/abcdefgh.png"])
    assert item_grammar(RunConfig(mode="loragen", out=tmp_path), instruction) is None
    with pytest.raises(RunConfigError, match="refines --constrained"):
        RunConfig(mode="loragen", out=tmp_path, constrain_images=True)
