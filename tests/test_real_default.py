"""On the real embedded SmolLM2-135M-Instruct: generate → merge → decode → unmerge."""

from __future__ import annotations

import pytest
import torch

from loragen_core import GeneratedLoRA, LoRAGenConfig, build_generator, load_causal_lm

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
