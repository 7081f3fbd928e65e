"""The serving benchmark on tiny models: prefix-cache parity, the results' shape, exact fast merging."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from eval_gpt4tools.bench import BenchConfig, run_bench
from eval_gpt4tools.bench_report import MODES
from loragen_core.prefix_cache import PrefixCacheStore, complete_batch_from_prefixes, split_chat_prompt
from eval_gpt4tools.timed_generation import Decoder
from loragen_core import LoRAGenConfig, build_generator, load_causal_lm
from loragen_core.lora_math import _open_weight_file, merge_lora, pristine_weights, unmerge_lora, weight_files
from tools import PromptFormatError, build_prompt, image_turn, split_prompt
from tools.gpt4tools_prompt import full_prompt

TOOLS = [
    ("Detect Face", "useful when you want to find faces in an image. The input to this tool should be a string."),
    ("Segment the Image", "useful when you want to segment all the parts of an image."),
]
BUDGET = 8


def _items(n: int) -> list[dict]:
    requests = ["Find the faces in the photo.", "Segment everything you see.", "What is in the picture?", "Describe it."]
    items = []
    for index in range(n):
        tools = TOOLS if index % 2 == 0 else TOOLS[::-1]  # two distinct system prompts
        history = image_turn(f"image/abcdefg{index}.png", "a dog on a couch") if index % 2 else ""
        items.append({
            "id": index,
            "instruction": build_prompt(tools, requests[index % len(requests)], chat_history=history),
            "output": f"Thought: Do I need to use a tool? Yes\nAction: {tools[0][0]}\nAction Input: image/x.png\n",
        })
    return items


def test_the_prefix_ends_where_the_user_part_begins(edge):
    instruction = _items(1)[0]["instruction"]
    split = split_chat_prompt(edge.tokenizer, instruction)
    assert torch.equal(split.input_ids, edge.chat_input_ids(instruction))
    prefix_text = edge.tokenizer.decode(split.input_ids[0, : split.prefix_length])
    head = split_prompt(instruction).head
    # Whatever the chat format puts first (an empty system block by default), the cut is inside the user turn.
    before_user, user_marker, user_part = prefix_text.partition("<|im_start|>user\n")
    assert user_marker and "GPT4Tools" not in before_user and head.startswith(user_part)
    assert len(head) - len(user_part) <= 4  # cut at most one token early
    assert split.prefix_length < split.input_ids.shape[1]


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_prefix_cache_decodes_exactly_the_tokens_of_plain_icl(edge, kind):
    store = PrefixCacheStore(edge.model)
    decoder = Decoder(edge.model, edge.tokenizer, kind, cache_length=2048 if kind == "static" else None)
    for item in _items(4):
        instruction = item["instruction"]
        reference = edge.complete(instruction, max_new_tokens=BUDGET)
        plain = decoder.generate(edge.chat_input_ids(instruction), 0.0, BUDGET, decoder.fresh_cache())
        split = split_chat_prompt(edge.tokenizer, instruction)
        prefix = store.prefill(split)
        cached = decoder.generate(split.input_ids, 0.0, BUDGET, store.continuation(prefix, into=decoder.static_cache))
        assert plain.text == reference.text and plain.new_tokens == reference.new_tokens
        assert cached.token_ids == plain.token_ids
        assert prefix.get_seq_length() == split.prefix_length, "the stored prefix cache must not grow"
    assert len(store.caches) == 2, "one cache per distinct system prompt"


@pytest.mark.parametrize("kv_cache", ["dynamic", "static"])
def test_a_batch_continued_from_different_prefixes_writes_what_each_prompt_writes_alone(edge, kv_cache):
    # Four prompts, two system prompts of different lengths, user parts of different lengths: both
    # padded blocks of the batch layout are exercised; the static cache holds the prefixes in place.
    instructions = [item["instruction"] for item in _items(4)]
    store = PrefixCacheStore(edge.model)
    prefix_lengths = [store.prefill(split_chat_prompt(edge.tokenizer, text)).get_seq_length() for text in instructions]
    batched = complete_batch_from_prefixes(edge, store, instructions, BUDGET, kv_cache=kv_cache)
    for instruction, row in zip(instructions, batched):
        alone = edge.complete(instruction, max_new_tokens=BUDGET)
        assert (row.text, row.new_tokens, row.prompt_tokens) == (alone.text, alone.new_tokens, alone.prompt_tokens)
    assert len(store.caches) == 2
    after = [store.prefill(split_chat_prompt(edge.tokenizer, text)).get_seq_length() for text in instructions]
    assert after == prefix_lengths, "the stored prefixes must not grow"


def test_a_static_batch_cache_writes_what_the_dynamic_one_writes(edge):
    prompts = [split_prompt(item["instruction"]).edge_prompt for item in _items(4)]
    caches_seen = []
    hook = edge.model.register_forward_pre_hook(lambda module, args, kwargs: caches_seen.append(type(kwargs.get("cache")).__name__),
                                                with_kwargs=True)
    try:
        dynamic = edge.complete_batch(prompts, max_new_tokens=BUDGET, exact_length=True)
        static = edge.complete_batch(prompts, max_new_tokens=BUDGET, exact_length=True, kv_cache="static")
    finally:
        hook.remove()
    assert caches_seen == ["DynamicCache"] * BUDGET + ["StaticCache"] * BUDGET  # one forward per new token
    assert [(c.text, c.new_tokens) for c in static] == [(c.text, c.new_tokens) for c in dynamic]
    with pytest.raises(ValueError, match="kv_cache must be one of"):
        edge.complete_batch(prompts, max_new_tokens=BUDGET, kv_cache="paged")


def test_the_full_prompt_is_rebuilt_from_its_system_and_edge_parts():
    trace = "Thought: Do I need to use a tool? Yes\nAction: Detect Face\nAction Input: image/a.png\nObservation: done\n"
    for item in _items(4):
        parts = split_prompt(item["instruction"] + trace)
        assert full_prompt(parts.system_prompt, parts.edge_prompt) == item["instruction"] + trace
        parts = split_prompt(item["instruction"])
        assert full_prompt(parts.system_prompt, parts.edge_prompt) == item["instruction"]
    with pytest.raises(PromptFormatError, match="closing"):
        full_prompt("no closing line", "New input: hi")


def _tiny_generator(tiny_dirs):
    return build_generator(LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, r=4, lora_alpha=8,
        router_hidden=16, cloud_lora_r=4, expert_b_init_std=0.5, seed=3,
    ))


def test_bench_writes_every_mode_with_the_required_keys(tiny_dirs, tmp_path, loragen_home):
    data = tmp_path / "items.json"
    data.write_text(json.dumps(_items(5)))
    generator = _tiny_generator(tiny_dirs)
    config = BenchConfig(
        out=tmp_path / "results", data=data, limit=2, max_new_tokens=BUDGET, decoders=("dynamic", "static"), threads=(1,),
        tune_items=1, finetune_data=None, equal_length=None,  # the free-length extra (--free-length)
    )
    results = run_bench(config, generator=generator)

    for name in ("bench.json", "bench.md", "bench.png"):
        assert (config.out / name).is_file(), name
    assert json.loads((config.out / "bench.json").read_text())["n_items"] == 2
    assert results["modes"].keys() == set(MODES)
    for mode in MODES:
        row = results["modes"][mode]
        for key in ("median_ttft_s", "median_latency_s", "p90_latency_s", "mean_prompt_tokens", "peak_rss_mb"):
            assert isinstance(row[key], float) and row[key] > 0, (mode, key)
        assert row["median_ttft_s"] <= row["median_latency_s"]
    modes = results["modes"]
    assert modes["loragen"]["mean_prompt_tokens"] < modes["icl"]["mean_prompt_tokens"]
    assert modes["icl_prefix_cache"]["mean_prompt_tokens"] == modes["icl"]["mean_prompt_tokens"]
    assert results["parity"]["icl_prefix_cache_same_tokens_as_icl"] == "2/2"
    assert set(results["ratios"]) == {"icl", "icl_prefix_cache", "icl_w8a16", "icl_prefix_cache_w8a16"}
    assert results["ratios"]["icl"]["icl"]["ttft"] == 1.0 == results["ratios"]["icl_w8a16"]["icl_w8a16"]["latency"]
    assert [r["order"][0] for r in results["items"]] == ["icl", "icl_prefix_cache"], "modes rotate item by item"
    memory = results["memory_per_task_bytes"]
    assert memory["icl_prefix_cache"] > 0 and memory["loragen"] > 0
    specs = [item["specialization"] for item in results["items"] if not item["specialization"]["repeat"]]
    assert memory["loragen_merged_extra"] == pytest.approx(sum(s["merge_anon_bytes"] for s in specs) / len(specs))  # measured
    assert all(s["restore_s"] > 0 and s["remerge_s"] > 0 for s in specs)
    spec = results["specialization"]
    assert spec["adapter_generation_s"]["median"] > 0 and spec["merge_s"]["median"] > 0
    assert results["specialize_new_tool_set"]["lora_finetune"] == {"skipped": "no --finetune-data"}
    decoding = results["decoding"]
    # The baseline (dynamic cache, torch's default threads) first, then every decoder at the asked 1 thread.
    default = decoding["before"]["threads"]
    expected = [("dynamic", default)] + [(kind, 1) for kind in ("dynamic", "static") if (kind, 1) != ("dynamic", default)]
    assert [(v["decoder"], v["threads"]) for v in decoding["variants"]] == expected
    assert decoding["chosen"]["same_tokens_as_baseline"] and decoding["profile_before"]
    assert "| icl_prefix_cache |" in (config.out / "bench.md").read_text()
    # the int8 copy: measured weight bytes (one per Linear weight at least), the adapter attached per item
    edge_linear_weights = sum(m.weight.numel() for m in load_causal_lm(str(tiny_dirs["edge"])).model.modules()
                              if isinstance(m, torch.nn.Linear))
    assert memory["int8_weight_bytes"] >= edge_linear_weights and spec["int8_attach_s"]["median"] > 0
    assert results["parity"]["loragen_int8_same_tokens_as_loragen"].endswith("/2")
    assert "| loragen_int8 |" in (config.out / "bench.md").read_text()
    mlp_linear_weights = sum(m.weight.numel() for name, m in load_causal_lm(str(tiny_dirs["edge"])).model.named_modules()
                             if isinstance(m, torch.nn.Linear) and ".mlp." in name)
    assert mlp_linear_weights <= memory["int8_mlp_weight_bytes"] < memory["int8_weight_bytes"]
    assert results["parity"]["loragen_int8_mlp_same_tokens_as_loragen"].endswith("/2")
    # the w8a16 copy: its own bf16 prefix KV (half the fp32 bytes), fewer bytes than the fp32 model, the adapter per request
    assert memory["icl_prefix_cache_w8a16"] == pytest.approx(memory["icl_prefix_cache"] / 2)
    fp32_bytes = sum(p.numel() * 4 for p in load_causal_lm(str(tiny_dirs["edge"])).model.parameters())
    assert 0 < memory["w8a16_model_bytes"] < fp32_bytes / 2 + edge_linear_weights and spec["w8a16_attach_s"]["median"] > 0
    assert results["parity"]["loragen_w8a16_same_tokens_as_loragen"].endswith("/2")
    assert modes["loragen_w8a16"]["mean_prompt_tokens"] == modes["loragen"]["mean_prompt_tokens"]
    assert "| loragen_w8a16 |" in (config.out / "bench.md").read_text()


def test_equal_length_makes_every_mode_write_exactly_that_many_tokens(tiny_dirs, tmp_path, loragen_home):
    data = tmp_path / "items.json"
    data.write_text(json.dumps(_items(4)))
    config = BenchConfig(out=tmp_path / "results", data=data, limit=2, max_new_tokens=3, equal_length=7,
                         decoders=("dynamic",), threads=(1,), tune_items=1, finetune_data=None)
    results = run_bench(config, generator=_tiny_generator(tiny_dirs))
    written = {(m, served["new_tokens"]) for item in results["items"] for m, served in item["modes"].items()}
    assert written == {(mode, 7) for mode in MODES}  # the budget of 3 does not cut it; EOS does not end it
    assert "every mode writes exactly 7 tokens" in (config.out / "bench.md").read_text()
    with pytest.raises(ValueError, match="--equal-length"):
        BenchConfig(equal_length=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merge_is_in_place_exact_and_replaces_the_previous_adapter(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5)).to(dtype)
    name = "0"
    original = model[0].weight.detach().clone()
    storage = model[0].weight.data_ptr()
    a1, b1, a2, b2 = (torch.randn(2, 6), torch.randn(5, 2), torch.randn(2, 6), torch.randn(5, 2))
    merge_lora(model, {name: a1.to(dtype)}, {name: b1.to(dtype)}, scale=0.5)
    merge_lora(model, {name: a2.to(dtype)}, {name: b2.to(dtype)}, scale=0.5)  # replaces, never stacks
    expected = original.float() + 0.5 * b2.to(dtype).float() @ a2.to(dtype).float()
    tolerance = 1e-6 if dtype == torch.float32 else 2e-2
    assert (model[0].weight.float() - expected).abs().max() <= tolerance
    assert model[0].weight.data_ptr() == storage, "merged in place: compiled graphs keep seeing the same tensor"
    unmerge_lora(model)
    assert torch.equal(model[0].weight, original)


def test_originals_are_views_of_the_weight_file_kept_through_any_order_of_merges_and_restores(tiny_dirs):
    model = load_causal_lm(str(tiny_dirs["edge"])).model
    modules = dict(model.named_modules())
    names = [n for n in modules if n.endswith(("mlp.up_proj", "mlp.down_proj"))]
    originals = {n: modules[n].weight.detach().clone() for n in names}
    torch.manual_seed(0)
    adapters = [
        ({n: torch.randn(1, 2, modules[n].in_features) for n in names}, {n: torch.randn(modules[n].out_features, 2) for n in names}),
        ({n: torch.randn(1, 2, modules[n].in_features) for n in names[:1]}, {n: torch.randn(modules[n].out_features, 2) for n in names[:1]}),
    ]

    def merge(which: int) -> None:
        a, b = adapters[which]
        merge_lora(model, {n: t[0] for n, t in a.items()}, b, scale=0.5)
        for n in names:
            expected = originals[n] + 0.5 * b[n] @ a[n][0] if n in a else originals[n]
            assert torch.allclose(modules[n].weight, expected, atol=1e-5), (which, n)

    def restore() -> None:
        unmerge_lora(model)
        assert all(torch.equal(modules[n].weight, originals[n]) for n in names)

    merge(0)
    kept = dict(pristine_weights(model))
    weight_file = next(iter(weight_files(model.name_or_path)))
    mapped = _open_weight_file(weight_file)  # the handle merging read: one mapping of the file
    assert all(kept[n].data_ptr() == mapped.get_tensor(n + ".weight").data_ptr() for n in names), "no anonymous copy"
    for step in (restore, restore, lambda: merge(1), lambda: merge(0), restore, lambda: merge(1), restore, lambda: merge(0)):
        step()
        assert all(pristine_weights(model)[n] is kept[n] for n in names), "the originals are never copied again"


def test_a_weight_the_file_does_not_hold_exactly_is_cloned():
    model = nn.Sequential(nn.Linear(4, 3))  # not loaded from a file
    merge_lora(model, {"0": torch.randn(2, 4)}, {"0": torch.randn(3, 2)}, scale=1.0)
    assert pristine_weights(model)["0"].data_ptr() != model[0].weight.data_ptr()


def test_bench_command_passes_its_options(tmp_path, monkeypatch):
    import eval_gpt4tools.bench as bench
    from eval_gpt4tools.__main__ import main

    seen = {}

    def fake_run(config):
        seen["config"] = config
        (config.out / "bench.md").parent.mkdir(parents=True, exist_ok=True)
        (config.out / "bench.md").write_text("table\n")

    monkeypatch.setattr(bench, "run_bench", fake_run)
    monkeypatch.chdir(tmp_path)  # the default --out is relative: results/
    data = tmp_path / "items.json"
    data.write_text(json.dumps(_items(2)))
    args = ["bench", "--data", str(data), "--limit", "3", "--out", str(tmp_path / "r"), "--decoders", "dynamic,static",
            "--threads", "1,2", "--finetune-data", "none"]
    assert main(args) == 0
    config = seen["config"]
    assert (config.limit, config.out, config.decoders, config.threads, config.finetune_data) == (
        3, tmp_path / "r", ("dynamic", "static"), (1, 2), None)
    assert main(["bench", "--data", str(data)]) == 0
    assert seen["config"].out == BenchConfig().out and seen["config"].finetune_data == BenchConfig().finetune_data
    assert seen["config"].equal_length == 40  # the like-for-like comparison is the default
    assert main(["bench", "--data", str(data), "--free-length"]) == 0
    assert seen["config"].equal_length is None
    assert main(["bench", "--data", str(data), "--equal-length", "12"]) == 0
    assert seen["config"].equal_length == 12
