"""On the real embedded SmolLM2-135M-Instruct: generate → merge → decode → unmerge, and the shipped
generator's adapter is the same model merged, functional and through peft."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from loragen_core import GeneratedLoRA, LoRAGenConfig, build_generator, load_causal_lm, load_default_generator
from loragen_core.checkpoint import DEFAULT_CHECKPOINT, GENERATOR_WEIGHTS_FILE
from tools import build_prompt, seen_tools, split_prompt

pytestmark = pytest.mark.real_model

SYSTEM_PROMPT = (
    "GPT4Tools has access to the following tools:\n\n> Detect Face: useful when you want to detect the face "
    "in the picture. The input to this tool should be a string, representing the image_path.\n"
)


def _greedy(model, tokenizer, text: str) -> list[int]:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    return out[0, ids["input_ids"].shape[1] :].tolist()


def test_generate_merge_decode_unmerge_restores_output():
    # A non-zero expert init so the adapter really changes the model (a fresh default adapter is zero).
    generator = build_generator(LoRAGenConfig(expert_b_init_std=1.0))
    adapter = generator.generate(SYSTEM_PROMPT)
    assert len(adapter.lora_a) == 30 * 3

    edge = load_causal_lm()
    request = "Detect the faces in image/abcdefgh.png"
    plain = _greedy(edge.model, edge.tokenizer, request)
    adapter.merge_into(edge.model)
    adapted = _greedy(edge.model, edge.tokenizer, request)
    GeneratedLoRA.unmerge_from(edge.model)
    restored = _greedy(edge.model, edge.tokenizer, request)

    assert len(plain) > 0 and restored == plain
    assert adapted != plain, "a non-zero generated adapter should change the greedy output"


@pytest.mark.skipif(
    not (DEFAULT_CHECKPOINT / GENERATOR_WEIGHTS_FILE).is_file(),
    reason="no trained generator shipped yet (loragen_core/checkpoints/default)",
)
def test_shipped_adapter_is_one_model_merged_functional_and_through_peft(tmp_path):
    """The adapter the shipped generator writes for a real tool set, on the real edge model: merged
    into the weights, applied functionally (the batcher's path) and loaded by `PeftModel` give the same
    logits and the same greedy tokens; unmerging restores the weights bit for bit."""
    generator, trained = load_default_generator()
    assert trained
    tools = [(t["name"], t["description"]) for t in seen_tools()[:5]]
    parts = split_prompt(build_prompt(tools, "Detect the edges of image/abcdefgh.png"))
    adapter = generator.generate(parts.system_prompt)

    edge = load_causal_lm()
    ids = edge.tokenizer.apply_chat_template(
        [{"role": "user", "content": parts.edge_prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    base = _logits(edge.model, ids)
    with adapter.applied_to(edge.model):
        functional = _logits(edge.model, ids)
        functional_tokens = _greedy(edge.model, edge.tokenizer, parts.edge_prompt)
    original = {name: p.detach().clone() for name, p in edge.model.named_parameters()}
    adapter.merge_into(edge.model)
    merged = _logits(edge.model, ids)
    merged_tokens = _greedy(edge.model, edge.tokenizer, parts.edge_prompt)
    GeneratedLoRA.unmerge_from(edge.model)
    assert all(torch.equal(p, original[name]) for name, p in edge.model.named_parameters()), "unmerge is not exact"

    directory = adapter.save_pretrained(tmp_path / "peft", edge.model.config._name_or_path)
    peft_model = PeftModel.from_pretrained(load_causal_lm().model, directory)
    through_peft = _logits(peft_model, ids)
    peft_tokens = _greedy(peft_model, edge.tokenizer, parts.edge_prompt)

    assert (functional - base).abs().max() > 0.1, "the trained adapter should change the logits"
    scale = base.abs().max()
    assert (merged - functional).abs().max() <= 1e-4 * scale
    assert (through_peft - functional).abs().max() <= 1e-4 * scale
    assert merged_tokens == functional_tokens == peft_tokens


def _logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits[0]
