"""The int8 weight-only decode path (`EdgeModel(weights="w8a16")`, loragen_core/int8_weight_only.py):
a copy that leaves the fp32 model bit-exact, whose Linear layers compute what their int8 weights and
scales say (parity with a plain bf16 matmul), stays close to fp32, carries adapters as hooks that
`reset` removes, and, unlike dynamic int8, decodes a batch row by row as each row alone."""

from __future__ import annotations

import torch
from torch import nn

from loragen_core import load_causal_lm
from loragen_core.edge_runtime import EdgeModel
from loragen_core.int8_weight_only import Int8WeightOnlyLinear, decoding_positions, int8_weight_only_copy, quantize_per_channel
from tests.test_int8_edge import BUDGET, PROMPTS, _cosine, _logits


def test_per_channel_quantisation_round_trips_within_half_a_step():
    weight = torch.randn(7, 33) * torch.logspace(-3, 1, 7)[:, None]  # rows of very different sizes
    quantized, scales = quantize_per_channel(weight)
    assert quantized.dtype == torch.int8 and int(quantized.abs().max()) == 127
    assert torch.all((quantized.float() * scales[:, None] - weight).abs() <= scales[:, None] / 2 + 1e-7)


def test_the_int8_linear_equals_a_bf16_matmul_of_its_dequantised_weight():
    linear = nn.Linear(64, 24, bias=True)
    layer = Int8WeightOnlyLinear(linear)
    x = torch.randn(2, 5, 64)
    reference = (x.bfloat16().float() @ (layer.weight_int8.float() * layer.scales.float()[:, None]).T
                 + layer.bias.float())
    out = layer(x)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 5, 24)
    assert torch.allclose(out.float(), reference, atol=0.05, rtol=0.02)
    assert _cosine(out.float().flatten(), linear(x).flatten().detach()) > 0.999


def test_prompts_multiply_with_the_shared_fp32_weight_and_decode_steps_with_int8():
    linear = nn.Linear(64, 24, bias=True)
    layer = Int8WeightOnlyLinear(linear, prefill_weight=linear.weight)
    assert layer.prefill_weight.data_ptr() == linear.weight.data_ptr(), "shared, not copied"
    assert "prefill_weight" not in dict(layer.named_buffers()) and not list(layer.parameters())
    prompt, step = torch.randn(2, 5, 64), torch.randn(2, 1, 64)
    exact = nn.functional.linear(prompt, linear.weight, linear.bias.bfloat16().float()).bfloat16()
    assert torch.equal(layer(prompt), exact)
    assert torch.equal(layer(step), Int8WeightOnlyLinear(linear)(step))  # one position per row: the int8 kernel


def test_positions_decoding_wrote_take_the_int8_path_even_several_at_once():
    """Grammar fast-forward computes several written positions in one forward: inside
    `decoding_positions` they multiply with the int8 weight, as one-position steps do, not with the
    fp32 prompt weight."""
    linear = nn.Linear(64, 24, bias=True)
    layer = Int8WeightOnlyLinear(linear, prefill_weight=linear.weight)
    holder = nn.Sequential(layer)
    written = torch.randn(1, 3, 64)
    one_at_a_time = torch.cat([layer(written[:, i : i + 1]) for i in range(3)], dim=1)
    assert not torch.allclose(layer(written), one_at_a_time, atol=1e-3)  # a prompt: the fp32 weight
    with decoding_positions(holder):
        assert layer.decoding and not layer.is_prompt(written)
        assert torch.allclose(layer(written).float(), one_at_a_time.float(), atol=1e-2, rtol=1e-2)
    assert not layer.decoding and layer.is_prompt(written)


def test_fast_forward_on_w8a16_reads_the_attached_adapter_from_the_int8_weights(tiny_dirs, three_adapters):
    from tools.gpt4tools_grammar import trace_grammar

    grammar = trace_grammar(["Detect Face", "Segment the Image"], image_tools=["Segment the Image"], image_paths=["image/abc.png"])
    stepwise = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16")
    fast = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16", decoder="fast-forward")
    for edge in (stepwise, fast):
        edge.specialize(three_adapters.row(0))
    layer = next(m for m in fast.decode_model.modules() if isinstance(m, Int8WeightOnlyLinear))
    calls = []  # (positions, taken as a prompt) per forward of one int8 layer
    layer.register_forward_pre_hook(lambda module, args: calls.append((args[0].shape[1], module.is_prompt(args[0]))))
    expected = stepwise.complete(PROMPTS[0], max_new_tokens=40, grammar=grammar)
    got = fast.complete(PROMPTS[0], max_new_tokens=40, grammar=grammar)
    assert got.text.startswith("Thought: Do I need to use a tool? ")
    assert got.text == expected.text
    assert [prompt for _, prompt in calls].count(True) == 1, "only the prompt's prefill goes through the fp32 weights"
    assert any(positions > 1 and not prompt for positions, prompt in calls), "forced runs share a forward on the int8 path"


def test_the_copy_leaves_the_fp32_model_exact_and_stays_close_to_it(tiny_dirs):
    loaded = load_causal_lm(str(tiny_dirs["edge"]))
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    copy = int8_weight_only_copy(loaded.model)
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in loaded.model.state_dict().items())
    assert not any(isinstance(m, nn.Linear) for m in copy.modules()), "every Linear is quantised"
    assert {p.dtype for p in copy.parameters()} == {torch.bfloat16}
    edge = EdgeModel(loaded)
    for text in PROMPTS:
        exact, approx = _logits(loaded.model, edge, text), _logits(copy, edge, text)
        assert not torch.equal(exact, approx)
        assert _cosine(exact, approx) > 0.99


def test_specialize_attaches_the_adapter_and_reset_removes_it(tiny_dirs, three_adapters):
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16")
    fp32 = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])))
    plain = _logits(edge.decode_model, edge, PROMPTS[0])
    edge.specialize(three_adapters.row(0))
    attached = _logits(edge.decode_model, edge, PROMPTS[0])
    assert not torch.equal(attached, plain)
    fp32.specialize(three_adapters.row(0))
    assert _cosine(_logits(fp32.model, fp32, PROMPTS[0]), attached) > 0.99  # int8 weights + hooks ≈ fp32 merged
    edge.specialize(three_adapters.row(1))
    edge.specialize(three_adapters.row(0))  # replacing, not stacking
    assert torch.equal(_logits(edge.decode_model, edge, PROMPTS[0]), attached)
    edge.reset()
    assert torch.equal(_logits(edge.decode_model, edge, PROMPTS[0]), plain)


def test_an_attached_adapter_is_requantised_into_the_int8_weights_and_reset_restores_them(tiny_dirs, three_adapters):
    """Decode steps (one position) read the adapter from the int8 weights: what a copy quantised from
    the merged fp32 model computes; reset quantises the plain fp32 weights again, bit for bit."""
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16")
    int8 = {n: m.weight_int8.clone() for n, m in edge.decode_model.named_modules() if isinstance(m, Int8WeightOnlyLinear)}
    adapter = three_adapters.row(0)
    edge.specialize(adapter)
    changed = {n for n, m in edge.decode_model.named_modules() if n in int8 and not torch.equal(m.weight_int8, int8[n])}
    assert changed and changed <= set(adapter.lora_a), "only the adapter's targets change"
    merged = load_causal_lm(str(tiny_dirs["edge"]))
    adapter.merge_into(merged.model)
    reference = int8_weight_only_copy(merged.model)
    step = torch.tensor([[5]])  # one position: the int8 path, no prefill through fp32
    with torch.inference_mode():
        assert torch.allclose(edge.decode_model(step).logits, reference(step).logits, atol=0.05, rtol=0.02)
    edge.reset()
    assert all(torch.equal(m.weight_int8, int8[n]) for n, m in edge.decode_model.named_modules() if n in int8)


def test_an_adapter_on_other_modules_restores_the_previous_targets(tiny_dirs, three_adapters):
    from loragen_core.adapter import GeneratedLoRA

    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16")
    int8 = {n: m.weight_int8.clone() for n, m in edge.decode_model.named_modules() if isinstance(m, Int8WeightOnlyLinear)}
    whole = three_adapters.row(0)
    names = sorted(whole.lora_a)
    first, second = names[: len(names) // 2], names[len(names) // 2 :]

    def part(keep):
        return GeneratedLoRA({n: whole.lora_a[n] for n in keep}, {n: whole.lora_b[n] for n in keep}, whole.r, whole.lora_alpha)

    edge.specialize(part(first))
    edge.specialize(part(second))
    modules = dict(edge.decode_model.named_modules())
    assert all(torch.equal(modules[n].weight_int8, int8[n]) for n in first), "the first adapter's targets are restored"
    assert any(not torch.equal(modules[n].weight_int8, int8[n]) for n in second)


def test_rows_of_a_batch_decode_as_each_alone(tiny_dirs, three_adapters):
    """Weight-only quantisation has no per-call activation scale, so (unlike dynamic int8) a batch
    with one adapter per row writes what each row writes alone with its adapter attached."""
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16")
    alone = []
    for i, text in enumerate(PROMPTS):
        edge.specialize(three_adapters.row(i))
        completion = edge.complete(text, max_new_tokens=BUDGET)
        alone.append((completion.text, completion.new_tokens))
    edge.reset()
    batched = edge.complete_batch(PROMPTS, adapter=three_adapters, max_new_tokens=BUDGET)
    assert [(c.text, c.new_tokens) for c in batched] == alone
