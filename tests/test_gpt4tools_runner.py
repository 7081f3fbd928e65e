"""The runner on the real default model: outputs, resumption, loragen bookkeeping."""

from __future__ import annotations

import json

import pytest

from eval_gpt4tools.data import DEFAULT_TEST_FILE
from eval_gpt4tools.runner import PREDICTIONS_LOG, RunConfig, RunConfigError, run

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(not DEFAULT_TEST_FILE.is_file(), reason=f"GPT4Tools test set not found at {DEFAULT_TEST_FILE} (../shared is absent)"),
]
BUDGET = 12  # new tokens: enough to see the format, short enough for CI


def test_icl_run_writes_outputs_and_resumes(tmp_path):
    out = tmp_path / "icl"
    first = run(RunConfig(mode="icl", out=out, limit=2, max_new_tokens=BUDGET))
    assert first.metrics["n_items"] == 2 and first.metrics["compression"] == pytest.approx(1.0)
    for name in ("predictions.json", "metrics.json", "table.md", "chart.png", PREDICTIONS_LOG):
        assert (out / name).is_file(), name
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Interrupt: keep one finished item and a line cut off mid-write, then rerun with a larger limit.
    log = (out / PREDICTIONS_LOG).read_text().splitlines()
    kept = json.loads(log[0])
    (out / PREDICTIONS_LOG).write_text(log[0] + "\n" + log[1][:20])
    resumed = run(RunConfig(mode="icl", out=out, limit=3, max_new_tokens=BUDGET))
    records = [json.loads(line) for line in (out / PREDICTIONS_LOG).read_text().splitlines()]
    assert len(records) == 3 and records[0] == kept  # the finished item was not run again
    assert resumed.metrics["n_items"] == 3
    assert [v["records_before"] for v in resumed.metrics["code_versions"]] == [0]  # the same code: one version
    assert [p["id"] for p in json.loads((out / "predictions.json").read_text())] == [r["id"] for r in records]

    with pytest.raises(RunConfigError, match="different configuration"):
        run(RunConfig(mode="icl", out=out, limit=3, max_new_tokens=BUDGET + 1))


def test_loragen_run_uses_the_edge_prompt_and_records_the_adapter(tmp_path, loragen_home):
    summary = run(RunConfig(mode="loragen", out=tmp_path / "lg", limit=1, max_new_tokens=BUDGET))
    metrics = summary.metrics
    assert metrics["compression"] > 4.0
    assert metrics["mean_edge_prompt_tokens"] < metrics["mean_full_prompt_tokens"]
    assert metrics["median_adapter_generation_s"] > 0
    record = json.loads((tmp_path / "lg" / PREDICTIONS_LOG).read_text())
    assert record["adapter_cache_hit"] is False


def test_mode_arguments_are_checked(tmp_path):
    with pytest.raises(RunConfigError, match="needs --adapter"):
        RunConfig(mode="lora", out=tmp_path)
    with pytest.raises(RunConfigError, match="Unknown mode"):
        RunConfig(mode="zero-shot", out=tmp_path)


def test_batched_loragen_run_writes_what_one_at_a_time_writes(tmp_path, loragen_home):
    """Three items with three different system prompts: each batch row carries its own adapter."""
    alone = run(RunConfig(mode="loragen", out=tmp_path / "b1", limit=3, max_new_tokens=BUDGET))
    batched = run(RunConfig(mode="loragen", out=tmp_path / "b2", limit=3, max_new_tokens=BUDGET, batch_size=2))
    read = lambda name: [json.loads(line) for line in (tmp_path / name / PREDICTIONS_LOG).read_text().splitlines()]
    assert [(r["id"], r["output"], r["new_tokens"]) for r in read("b2")] == [(r["id"], r["output"], r["new_tokens"]) for r in read("b1")]
    assert [r["batch_size"] for r in read("b2")] == [2, 2, 1]
    assert all(r["adapter_cache_hit"] for r in read("b2")), "the batch-1 run cached these adapters"
    assert batched.metrics["SR_t"] == alone.metrics["SR_t"] and batched.metrics["batch_size"] == 2
    assert batched.metrics["median_latency_s"] is None, "a batched run measures throughput, not latency"
    assert alone.metrics["median_latency_s"] > 0
    with pytest.raises(RunConfigError, match="different configuration"):
        run(RunConfig(mode="loragen", out=tmp_path / "b2", limit=3, max_new_tokens=BUDGET, batch_size=4))
    with pytest.raises(RunConfigError, match="at least 1"):
        RunConfig(mode="icl", out=tmp_path, batch_size=0)


def test_int8_run_decodes_on_the_int8_copy_one_item_at_a_time(tmp_path, loragen_home):
    exact = run(RunConfig(mode="loragen", out=tmp_path / "fp32", limit=2, max_new_tokens=BUDGET))
    int8 = run(RunConfig(mode="loragen", out=tmp_path / "int8", limit=2, max_new_tokens=BUDGET, edge_weights="int8"))
    assert int8.metrics["n_items"] == 2 and int8.metrics["mean_edge_prompt_tokens"] == exact.metrics["mean_edge_prompt_tokens"]
    assert json.loads((tmp_path / "int8" / "run_config.json").read_text())["edge_weights"] == "int8"
    with pytest.raises(RunConfigError, match="different configuration"):  # an fp32 run cannot resume an int8 one
        run(RunConfig(mode="loragen", out=tmp_path / "int8", limit=2, max_new_tokens=BUDGET))
    with pytest.raises(RunConfigError, match="one item at a time"):
        RunConfig(mode="loragen", out=tmp_path, edge_weights="int8", batch_size=4)
    with pytest.raises(RunConfigError, match="int8-mlp decodes one item at a time"):
        RunConfig(mode="loragen", out=tmp_path, edge_weights="int8-mlp", batch_size=4)
    with pytest.raises(RunConfigError, match="--edge-weights must be one of fp32, int8, int8-mlp"):
        RunConfig(mode="loragen", out=tmp_path, edge_weights="int4")


def test_the_main_job_compares_the_trained_full_prompt_lora_with_the_served_mode(tmp_path):
    from eval_gpt4tools.__main__ import main_job_configs

    rows = main_job_configs(tmp_path, None, 30, with_icl=False, full_prompt_lora=tmp_path / "lora")
    assert [(r.mode, r.prompt) for r in rows] == [("lora", "full"), ("loragen", "full")]
    assert rows[0].adapter == tmp_path / "lora"
    # Both decode as the agent serves them, on the same items.
    assert all(r.constrained and r.constrain_images and r.constrain_arguments and r.tool_prior and r.limit == 30 for r in rows)
    assert [r.mode for r in main_job_configs(tmp_path, None, 30, True, tmp_path / "lora")] == ["lora", "loragen", "icl"]
    assert [r.mode for r in main_job_configs(tmp_path, None, 30, False, None)] == ["loragen", "icl"]


def test_run_flags_add_to_the_served_rule_or_to_nothing():
    from argparse import Namespace

    from eval_gpt4tools.__main__ import DECODING_FLAGS, decoding_flags
    from eval_gpt4tools.runner import SERVED_DECODING

    none = Namespace(**{flag: False for flag in DECODING_FLAGS})
    assert decoding_flags(none, served=True) == {flag: SERVED_DECODING.get(flag, False) for flag in DECODING_FLAGS}
    assert not any(decoding_flags(none, served=False).values())
    extra = Namespace(**{**vars(none), "need_prior": True})
    assert decoding_flags(extra, served=True)["need_prior"] and decoding_flags(extra, served=True)["tool_prior"]
    # The served rule lets the prior pick the tool; a rule built from flags multiplies, unless told.
    from eval_gpt4tools.__main__ import prior_weight
    assert prior_weight(Namespace(tool_prior_weight=None), served=True) == SERVED_DECODING["tool_prior_weight"] == float("inf")
    assert prior_weight(Namespace(tool_prior_weight=None), served=False) == 1.0
    assert prior_weight(Namespace(tool_prior_weight=2.0), served=True) == 2.0
    assert prior_weight(Namespace(need_prior_weight=None), False, "need_prior_weight") == 1.0
    assert prior_weight(Namespace(need_prior_weight=None), True, "need_prior_weight") == SERVED_DECODING["need_prior_weight"]
    assert prior_weight(Namespace(need_prior_weight=5.0), True, "need_prior_weight") == 5.0
