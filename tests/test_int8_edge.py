"""The int8 decode path (`EdgeModel(weights="int8")`, loragen_core/int8.py): a copy that leaves the
fp32 model bit-exact, shares its unquantised tensors, stays close to it, and carries adapters as
hooks that `reset` removes; a batch of one equals `complete`, a larger batch does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loragen_core import GeneratedLoRA, LoRAGenConfig, build_generator, load_causal_lm
from loragen_core.edge_runtime import EdgeModel
from loragen_core.int8 import int8_copy, int8_nbytes

PROMPTS = ["Detect the edges of image/abc.png", "Hi", "Generate a picture of a cat on a red chair, please."]
BUDGET = 10


@pytest.fixture(scope="module")
def adapters(three_adapters) -> GeneratedLoRA:
    return three_adapters


def _logits(model: nn.Module, edge: EdgeModel, text: str) -> torch.Tensor:
    with torch.inference_mode():
        return model(edge.chat_input_ids(text)).logits[0, -1].float()  # bf16 copies compare in fp32


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(nn.functional.cosine_similarity(a, b, dim=0))


def test_int8_copy_leaves_the_fp32_model_exact_and_stays_close_to_it(tiny_dirs):
    loaded = load_causal_lm(str(tiny_dirs["edge"]))
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    quantized = int8_copy(loaded.model)
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())
    linears = [m for m in loaded.model.modules() if isinstance(m, nn.Linear)]
    assert linears and not any(isinstance(m, nn.Linear) for m in quantized.modules()), "every Linear is quantised"
    assert quantized.get_input_embeddings().weight is loaded.model.get_input_embeddings().weight  # shared, not copied
    assert int8_nbytes(quantized) >= sum(m.weight.numel() for m in linears)  # one byte per weight, plus biases
    edge = EdgeModel(loaded)
    for text in PROMPTS:
        exact, approx = _logits(loaded.model, edge, text), _logits(quantized, edge, text)
        assert not torch.equal(exact, approx)
        assert _cosine(exact, approx) > 0.99


def test_int8_mlp_scope_quantises_only_the_mlps_and_lies_between_fp32_and_int8(tiny_dirs, adapters):
    loaded = load_causal_lm(str(tiny_dirs["edge"]))
    mlp_only = int8_copy(loaded.model, "mlp")
    quantised = {name for name, m in mlp_only.named_modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)}
    kept = {name for name, m in mlp_only.named_modules() if isinstance(m, nn.Linear)}
    assert quantised and all(".mlp." in name for name in quantised)
    assert any("self_attn" in name for name in kept) and "lm_head" in kept
    assert mlp_only.get_submodule("lm_head").weight is loaded.model.get_submodule("lm_head").weight  # fp32, shared
    assert int8_nbytes(mlp_only) < int8_nbytes(int8_copy(loaded.model))
    with pytest.raises(ValueError, match="Unknown int8 scope"):
        int8_copy(loaded.model, "attention")
    # the adapter (on q/v, kept in fp32 here) attaches and detaches through the same hooks
    edge = EdgeModel(loaded, weights="int8-mlp")
    plain = _logits(edge.decode_model, edge, PROMPTS[0])
    edge.specialize(adapters.row(0))
    attached = _logits(edge.decode_model, edge, PROMPTS[0])
    fp32 = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])))
    fp32.specialize(adapters.row(0))
    assert not torch.equal(attached, plain) and _cosine(_logits(fp32.model, fp32, PROMPTS[0]), attached) > 0.99
    edge.reset()
    assert torch.equal(_logits(edge.decode_model, edge, PROMPTS[0]), plain)


def test_int8_specialize_attaches_the_adapter_and_reset_removes_it(tiny_dirs, adapters):
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="int8")
    fp32 = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])))
    weights_before = {k: v.clone() for k, v in edge.model.state_dict().items()}
    plain = _logits(edge.decode_model, edge, PROMPTS[0])
    edge.specialize(adapters.row(0))
    attached = _logits(edge.decode_model, edge, PROMPTS[0])
    with adapters.row(0).applied_to(edge.decode_model):
        edge.reset()  # the hooks go; the ones applied here stay
        assert torch.equal(_logits(edge.decode_model, edge, PROMPTS[0]), attached)
    assert torch.equal(_logits(edge.decode_model, edge, PROMPTS[0]), plain)
    assert not torch.equal(attached, plain)
    fp32.specialize(adapters.row(0))
    assert _cosine(_logits(fp32.model, fp32, PROMPTS[0]), attached) > 0.99  # int8 + hooks ≈ fp32 merged
    edge.specialize(adapters.row(1))
    edge.specialize(adapters.row(0))  # replacing, not stacking
    assert torch.equal(_logits(edge.decode_model, edge, PROMPTS[0]), attached)
    assert all(torch.equal(weights_before[k], v) for k, v in edge.model.state_dict().items()), "fp32 weights never change"
    with pytest.raises(ValueError, match="one of fp32, int8, int8-mlp, w8a16"):
        EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="int4")


def test_int8_rows_of_a_batch_are_not_independent_but_one_row_equals_complete(tiny_dirs, adapters):
    """Dynamic quantisation scales the activations per call, over every row: batching changes a
    row's numbers (so the evaluator decodes int8 one item at a time). One row, the adapter given
    functionally, equals `complete` with it attached."""
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="int8")
    alone = []
    for i, text in enumerate(PROMPTS):
        edge.specialize(adapters.row(i))
        completion = edge.complete(text, max_new_tokens=BUDGET)
        alone.append((completion.text, completion.new_tokens))
    edge.reset()
    single = [edge.complete_batch([text], adapter=adapters.row(i), max_new_tokens=BUDGET)[0] for i, text in enumerate(PROMPTS)]
    assert [(c.text, c.new_tokens) for c in single] == alone
    batched = edge.complete_batch(PROMPTS, adapter=adapters, max_new_tokens=BUDGET)
    assert [(c.text, c.new_tokens) for c in batched] != alone


def test_a_runtime_from_a_checkpoint_can_decode_int8(tiny_dirs, tmp_path):
    from agent import LoRAGenRuntime
    from loragen_core import save_generator

    config = LoRAGenConfig(cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, r=4,
                           lora_alpha=8, router_hidden=16, cloud_lora_r=4, seed=3)
    checkpoint = save_generator(build_generator(config).eval(), tmp_path / "ckpt")
    runtime = LoRAGenRuntime.from_checkpoint(checkpoint, edge_weights="int8", use_disk_cache=False)
    assert runtime.edge.weights == "int8" and runtime.edge.decode_model is not runtime.edge.model
    assert LoRAGenRuntime.from_checkpoint(checkpoint, use_disk_cache=False).edge.weights == "fp32"
