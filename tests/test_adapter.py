"""Parity: merged == functional == peft-loaded; unmerge is exact; PEFT round trip."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from loragen_core import GeneratedLoRA, LoRAGenConfig, build_generator, load_causal_lm
from loragen_core.adapter import AdapterFormatError


@pytest.fixture(scope="module")
def adapter(tiny_dirs) -> GeneratedLoRA:
    config = LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, r=4,
        lora_alpha=8, router_hidden=16, cloud_lora_r=4, expert_b_init_std=0.5, seed=7,
    )
    return build_generator(config).generate("GPT4Tools has access to the following tools: Detect Face.")


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_equals_functional_equals_peft(adapter, tiny_dirs, tmp_path):
    edge = load_causal_lm(str(tiny_dirs["edge"])).model
    ids = torch.randint(0, edge.config.vocab_size, (2, 10))
    base = _logits(edge, ids)
    with adapter.applied_to(edge):
        functional = _logits(edge, ids)
    assert (functional - base).abs().max() > 1e-3, "the adapter should change the logits"

    original = {n: p.detach().clone() for n, p in edge.named_parameters()}
    adapter.merge_into(edge)
    merged = _logits(edge, ids)
    GeneratedLoRA.unmerge_from(edge)
    for name, parameter in edge.named_parameters():
        assert torch.equal(parameter, original[name]), f"{name} not restored bit for bit"
    assert torch.equal(_logits(edge, ids), base)

    directory = adapter.save_pretrained(tmp_path / "peft_adapter", tiny_dirs["edge"])
    peft_model = PeftModel.from_pretrained(load_causal_lm(str(tiny_dirs["edge"])).model, directory)
    peft_logits = _logits(peft_model, ids)

    assert (merged - functional).abs().max() <= 1e-4
    assert (peft_logits - functional).abs().max() <= 1e-4


def test_peft_directory_round_trip(adapter, tiny_dirs, tmp_path):
    directory = adapter.save_pretrained(tmp_path / "a", tiny_dirs["edge"])
    loaded = GeneratedLoRA.from_pretrained(directory)
    assert loaded.content_hash() == adapter.content_hash()
    assert loaded.r == adapter.r and loaded.lora_alpha == adapter.lora_alpha
    assert sorted(p.name for p in directory.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging directory left behind"


def test_merging_a_second_adapter_replaces_the_first(adapter, tiny_dirs):
    edge = load_causal_lm(str(tiny_dirs["edge"])).model
    ids = torch.randint(0, edge.config.vocab_size, (1, 8))
    adapter.merge_into(edge)
    once = _logits(edge, ids)
    adapter.merge_into(edge)  # merging again must not stack deltas
    assert torch.equal(_logits(edge, ids), once)
    GeneratedLoRA.unmerge_from(edge)


def test_unreadable_adapter_directory_is_a_clear_error(tmp_path):
    with pytest.raises(AdapterFormatError, match="needs adapter_config.json"):
        GeneratedLoRA.from_pretrained(tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4, "lora_alpha": 8}')
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(AdapterFormatError, match="unreadable"):
        GeneratedLoRA.from_pretrained(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (LORAGEN_DEVICE=cuda); CI has none")
def test_merge_on_cuda_matches_the_cpu_merge_and_restores_exactly(adapter, tiny_dirs):
    # The adapter stays on the CPU, the weights on the GPU: merging moves A and B to the weight, and the
    # pristine copy is a GPU clone (the memory-mapped file is host memory).
    cpu = load_causal_lm(str(tiny_dirs["edge"]), device="cpu").model
    gpu = load_causal_lm(str(tiny_dirs["edge"]), device="cuda").model
    ids = torch.randint(0, cpu.config.vocab_size, (2, 10))
    base = _logits(gpu, ids.cuda())
    adapter.merge_into(cpu)
    adapter.merge_into(gpu)
    assert (_logits(gpu, ids.cuda()).cpu() - _logits(cpu, ids)).abs().max() <= 1e-3
    GeneratedLoRA.unmerge_from(gpu)
    assert torch.equal(_logits(gpu, ids.cuda()), base)
