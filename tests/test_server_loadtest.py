"""The load benchmark (`python -m agent.server.loadtest`): its requests are well-formed GPT4Tools
conversations, and on the tiny models both servers answer every request, the batched one with the
replies each request gets alone."""

from __future__ import annotations

import json

import pytest

from agent.server.batching import BatchingRuntime
from agent.server.live import live_server
from agent.server.loadtest import FULL_PROMPT, LoadConfig, distinct_tool_sets, markdown, openai_request, run_level, run_load
from tests.test_agent import EDGE, FACE
from tests.test_server import DESCRIBE, tiny_runtime  # noqa: F401 (a fixture)
from tools.gpt4tools_prompt import build_prompt, image_turn
from tools.registry import default_registry

TOOL_SETS = ([EDGE, FACE], [EDGE, DESCRIBE], [FACE, DESCRIBE], [EDGE, FACE, DESCRIBE])


def item(names: list[str], i: int) -> dict:
    history = image_turn(f"image/p{i}.png", "A dog runs in a park.")
    prompt = build_prompt(default_registry().subset(names).descriptions(), f"Detect the edges of image/p{i}.png.", history)
    return {"id": i, "instruction": prompt, "input": "", "output": "unused"}


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps([item(names, i) for i, names in enumerate(TOOL_SETS + TOOL_SETS)]))
    return path


def test_a_test_item_becomes_an_openai_request_with_its_tools_and_conversation():
    body = openai_request(item([EDGE, FACE], 3), max_tokens=20)
    assert [t["function"]["name"] for t in body["tools"]] == [EDGE, FACE]
    assert body["tools"][0]["function"]["description"] == default_registry().get(EDGE).description
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"].startswith("Provide an image named image/p3.png. Description: A dog runs")
    assert body["messages"][2]["content"] == "Detect the edges of image/p3.png."
    with pytest.raises(ValueError, match="not an image turn"):
        openai_request({"id": 9, "instruction": build_prompt([(EDGE, "x")], "hi")}, 20)


def test_only_items_with_different_tool_sets_are_chosen():
    items = [item(names, i) for i, names in enumerate(TOOL_SETS + TOOL_SETS)]
    assert [x["id"] for x in distinct_tool_sets(items, 4)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="only 4 items"):
        distinct_tool_sets(items, 5)


def test_run_level_returns_every_reply_in_request_order(tiny_runtime, data_file, monkeypatch):  # noqa: F811
    monkeypatch.setattr(tiny_runtime, "max_prompt_tokens", 400)  # the tiny tokenizer makes ~262 tokens of these
    bodies = [openai_request(x, 8) for x in json.loads(data_file.read_text())[:4]]
    with live_server(BatchingRuntime(tiny_runtime, window_seconds=0.2, max_batch=4)) as url:
        wall, replies = run_level(url, bodies, clients=2, per_client=2)
    assert [r.index for r in replies] == [0, 1, 2, 3] and wall > 0
    assert all(r.prompt_tokens > 0 and 0 < r.completion_tokens <= 8 for r in replies)


def test_every_server_answers_and_batched_replies_equal_the_serialized_ones(tiny_runtime, data_file, monkeypatch):  # noqa: F811
    monkeypatch.setattr(tiny_runtime, "max_prompt_tokens", 2048)  # the full prompts, for the competitor
    config = LoadConfig(data=data_file, clients=(1, 4), requests_per_client=1, max_tokens=12, batch_window_ms=300, max_batch=4)
    result = run_load(config, base=tiny_runtime, write=False)
    levels = {(level["server"], level["clients"]): level for level in result["levels"]}
    assert set(levels) == {(server, c) for server in ("serialized", "batched", FULL_PROMPT) for c in (1, 4)}
    assert levels["batched", 4]["equal_to_serialized"] == 4
    assert max(levels["batched", 4]["batch_sizes"]) > 1  # rows really shared a decode
    assert levels["serialized", 4]["merges"] > 0 and levels["batched", 4]["merges"] == 0
    assert result["mean_full_prompt_tokens"] > levels["serialized", 4]["mean_prompt_tokens"]
    # The competitor read the full prompts (its usage says so; a malformed tiny-model reply's retry
    # adds a format hint) and kept one KV prefix per tenant.
    assert levels[FULL_PROMPT, 4]["mean_prompt_tokens"] >= result["mean_full_prompt_tokens"]
    assert max(levels[FULL_PROMPT, 4]["batch_sizes"]) > 1
    assert result["memory_per_tenant_bytes"][f"{FULL_PROMPT}_kv"] > 0 and result["memory_per_tenant_bytes"]["adapter"] > 0
    assert "| batched | 4 | 4 |" in markdown(result)


def test_batch_throughput_compares_both_sides_at_equal_length(tiny_runtime, data_file):  # noqa: F811
    from eval_gpt4tools.batch_throughput import ThroughputConfig, markdown as throughput_markdown, run_throughput

    result = run_throughput(ThroughputConfig(data=data_file, batches=(1, 4), new_tokens=5, repeats=1), runtime=tiny_runtime, write=False)
    assert [level["batch"] for level in result["levels"]] == [1, 4]
    for level in result["levels"]:
        loragen, full = level["loragen"], level["full_prompt_prefix_cached"]
        assert full["mean_prompt_tokens"] > loragen["mean_prompt_tokens"]  # the tool definitions are in its context
        assert full["kv_bytes_per_request"] > loragen["kv_bytes_per_request"] > 0
        assert level["loragen_over_prefix_cached"] == round(loragen["tokens_per_s"] / full["tokens_per_s"], 2)
        for side in (loragen, full):  # the decode phase excludes the prefill, so it runs faster than end to end
            assert 0 < side["prefill_seconds"] < min(side["seconds"])
            assert side["decode_tokens_per_s"] > side["tokens_per_s"] * (5 - 1) / 5
        assert level["decode_loragen_over_prefix_cached"] == round(loragen["decode_tokens_per_s"] / full["decode_tokens_per_s"], 2)
        # both read the weights; per row, the full prompt reads more KV and LoRA-Gen its own adapter as well
        assert min(loragen["bytes_per_decode_step"], full["bytes_per_decode_step"]) > result["weight_bytes"] > 0
        assert level["decode_ratio_predicted_by_bytes"] == round(full["bytes_per_decode_step"] / loragen["bytes_per_decode_step"], 2)
        # the shared work: the same rows from a one-token prompt, no adapter; its rate over the full prompt's is the ceiling
        shared = level["weights_only"]
        assert shared["mean_prompt_tokens"] == 1 and shared["kv_bytes_per_request"] < loragen["kv_bytes_per_request"]
        assert shared["decode_tokens_per_s"] > 0 and len(shared["seconds"]) == 1
        assert level["decode_ratio_ceiling"] == round(shared["decode_tokens_per_s"] / full["decode_tokens_per_s"], 2)
    assert result["prefix_kv_bytes_mean"] > 0 and "| 4 |" in throughput_markdown(result)


def test_batch_throughput_with_a_static_cache_runs_both_sides_on_it(tiny_runtime, data_file):  # noqa: F811
    from eval_gpt4tools.batch_throughput import ThroughputConfig, markdown as throughput_markdown, run_throughput

    result = run_throughput(ThroughputConfig(data=data_file, batches=(2,), new_tokens=3, repeats=1, kv_cache="static"),
                            runtime=tiny_runtime, write=False)
    assert result["config"]["kv_cache"] == "static" and "--kv-cache static" in throughput_markdown(result)
    assert all(result["levels"][0][side]["decode_tokens_per_s"] > 0 for side in ("loragen", "full_prompt_prefix_cached"))
    with pytest.raises(ValueError, match="--kv-cache must be one of"):
        ThroughputConfig(kv_cache="paged")


def test_bytes_per_decode_step_counts_the_weights_once_and_each_rows_kv_and_adapter():
    from eval_gpt4tools.batch_throughput import bytes_per_decode_step

    assert bytes_per_decode_step(1000, batch=2, kv_bytes_per_token=10, mean_context_tokens=5, adapter_bytes=7) == 1000 + 2 * (50 + 7)
    assert bytes_per_decode_step(1000, batch=2, kv_bytes_per_token=10, mean_context_tokens=5) == 1100


def test_batch_throughput_on_w8a16_runs_both_sides_on_the_copy_with_bf16_kv(tiny_runtime, tiny_dirs, data_file):  # noqa: F811
    from agent import LoRAGenRuntime
    from eval_gpt4tools.batch_throughput import ThroughputConfig, run_throughput
    from loragen_core import load_causal_lm
    from loragen_core.edge_runtime import EdgeModel

    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16")
    runtime = LoRAGenRuntime(tiny_runtime.generator, edge, use_disk_cache=False, trained=False)
    fp32 = run_throughput(ThroughputConfig(data=data_file, batches=(2,), new_tokens=3, repeats=1), runtime=tiny_runtime, write=False)
    w8a16 = run_throughput(ThroughputConfig(data=data_file, batches=(2,), new_tokens=3, repeats=1, edge_weights="w8a16"),
                           runtime=runtime, write=False)
    assert w8a16["kv_bytes_per_token"] * 2 == fp32["kv_bytes_per_token"]  # bf16 keys and values
    assert w8a16["prefix_kv_bytes_mean"] * 2 == fp32["prefix_kv_bytes_mean"]  # the prefix was prefilled by the copy
    assert w8a16["levels"][0]["loragen"]["tokens_per_s"] > 0
    with pytest.raises(ValueError, match="fp32 or w8a16"):
        ThroughputConfig(edge_weights="int8")
