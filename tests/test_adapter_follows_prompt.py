"""The generated adapter carries its system prompt: trained on two system prompts that each offer a
different tool, with one and the same edge prompt, the generator's adapter for each prompt makes the
edge model name that prompt's tool. Since the edge model reads the same text either way, only the
adapter (and so the generator's reading of the prompt) can decide; a generator that ignored its input
would make both adapters name the same tool."""

from __future__ import annotations

import json

import pytest
import torch

from agent.parsing import parse_turn
from loragen_core import load_causal_lm, load_generator
from loragen_core.edge_runtime import EdgeModel
from loragen_core.train import train
from loragen_core.train_config import TrainConfig
from tests.tiny_models import save_tiny_llama
from tools.gpt4tools_grammar import trace_grammar

EDGE, FACE = "Edge Detection On Image", "Detect Face"
PROMPTS = {EDGE: "GPT4Tools has access to the following tools:\n> Edge Detection On Image: finds the edges.",
           FACE: "GPT4Tools has access to the following tools:\n> Detect Face: finds the faces."}
REQUEST = "New input: please use your tool on image/abc.png"


def _write_rows(path, answers: dict[str, str], copies: int = 8):
    """`answers`: system prompt → the tool its rows call."""
    rows = []
    for i in range(copies):
        for system, tool in answers.items():
            output = f"Thought: Do I need to use a tool? Yes\nAction: {tool}\nAction Input: image/abc.png\nObservation:\n"
            rows.append({"system_prompt": system, "edge_prompt": REQUEST, "instruction": system + "\n" + REQUEST,
                         "output": output, "kind": "tool", "id": f"{tool}-{i}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _named_tool(edge: EdgeModel, generator, system_prompt: str, grammar: str) -> str:
    with torch.inference_mode():
        adapter = generator([system_prompt]).adapter.detach()
    edge.specialize(adapter)
    try:
        turn = parse_turn(edge.complete(REQUEST, max_new_tokens=30, grammar=grammar).text)
    finally:
        edge.reset()
    return turn.action if turn.kind == "tool" else f"<{turn.kind}>"


@pytest.fixture(scope="module")
def steerable_edge(tmp_path_factory):
    # A random edge model whose outputs an FFN adapter can move (see save_tiny_llama).
    return save_tiny_llama(tmp_path_factory.mktemp("steerable") / "edge", initializer_range=0.3)


@pytest.mark.parametrize("swapped", [False, True], ids=["as-written", "labels-swapped"])
def test_each_prompts_adapter_names_its_tool(tiny_dirs, steerable_edge, tmp_path, swapped):
    # as-written: each prompt's rows call the tool it defines; labels-swapped: each calls the other one.
    # Both mappings must be learnt, so what decides is what the generator reads, not a bias of a prompt.
    answers = {PROMPTS[EDGE]: FACE, PROMPTS[FACE]: EDGE} if swapped else {PROMPTS[EDGE]: EDGE, PROMPTS[FACE]: FACE}
    config = TrainConfig(
        data=[str(_write_rows(tmp_path / "train.jsonl", answers))], out=str(tmp_path / "run"), steps=40, batch_size=4,
        lr=2e-2, warmup_steps=2, save_every=40, edge_model=str(steerable_edge), cloud_model=str(tiny_dirs["cloud"]),
        r=4, n_experts=4,
    )
    generator = load_generator(train(config)).eval()
    edge = EdgeModel(load_causal_lm(str(steerable_edge)))
    grammar = trace_grammar([EDGE, FACE])  # both names allowed: the choice is the adapter's alone
    for system_prompt, tool in answers.items():
        assert _named_tool(edge, generator, system_prompt, grammar) == tool
