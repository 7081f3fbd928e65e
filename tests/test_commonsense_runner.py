"""The runner, the table and build-data → trainer on tiny models, over a small synthetic copy of the
eight task files (same templates as the LLM-Adapters files, so no shared data is needed)."""

from __future__ import annotations

import json

import pytest
import torch

from eval_commonsense.__main__ import main
from eval_commonsense.runner import RECORDS_LOG, RunConfig, RunConfigError, run
from eval_commonsense.tasks import HELD_OUT_SHOTS, TASKS
from loragen_core import LoRAGenConfig, build_generator, load_generator, save_generator
from loragen_core.train import train
from loragen_core.train_config import TrainConfig

WORDS = ["dog", "couch", "image", "face", "fox", "tool", "scene", "edge", "brown", "lazy"]


def fake_instruction(task, question: str, options: list[str]) -> str:
    if task.option_label is None:
        return f"{task.prefix}{question}?\n\nAnswer format: true/false"
    listed = " ".join(f"{task.option_label}{i}: {o}" for i, o in enumerate(options, start=1))
    formats = "/".join(f"{task.option_label.lower()}{i}" for i in range(1, len(options) + 1))
    return f"{task.prefix}{question}\n\n{listed}\n\nAnswer format: {formats}"


def write_fake_data(root, n_seen_test: int = 4, n_train: int = 24):
    for t_index, task in enumerate(TASKS):
        splits = {"test": n_seen_test if task.seen else HELD_OUT_SHOTS + 4}
        if task.seen:
            splits["train"] = n_train
        for split, n in splits.items():
            rows = []
            for i in range(n):
                words = [WORDS[(i + t_index + j) % len(WORDS)] for j in range(3)]
                options = ["true", "false"] if task.option_label is None else [f"the {w}" for w in words]
                gold = (i + t_index) % len(options)
                label = options[gold] if task.option_label is None else f"{task.option_label.lower()}{gold + 1}"
                rows.append({"instruction": fake_instruction(task, f"Which {words[0]} is near the {words[1]} {i}", options),
                             "input": "", "output": f"the correct answer is {label}", "answer": label})
            path = root / task.directory / (task.test_file if split == "test" else task.train_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=4))
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_fake_data(tmp_path_factory.mktemp("commonsense"))


@pytest.fixture(scope="module")
def generator_dir(tiny_dirs, tmp_path_factory):
    """A tiny generator whose adapters are not no-ops (B initialised non-zero), saved as a checkpoint."""
    config = LoRAGenConfig(cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), r=4, n_experts=4,
                           expert_b_init_std=0.05)
    return save_generator(build_generator(config), tmp_path_factory.mktemp("gen") / "generator")


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / RECORDS_LOG).read_text().splitlines()]


def test_icl_run_scores_two_items_per_task_and_resumes(tiny_dirs, data_dir, tmp_path):
    out = tmp_path / "icl"
    config = dict(mode="icl", out=out, data_dir=data_dir, edge_model=str(tiny_dirs["edge"]), shots=3)
    first = run(RunConfig(limit_per_task=2, **config))
    m = first.metrics
    assert m["n_per_task"] == {t.name: 2 for t in TASKS}
    assert all(0.0 <= m[t.name] <= 1.0 for t in TASKS) and m["seq_ratio"] == pytest.approx(1.0)
    assert m["AVE"] == pytest.approx(sum(m[t.name] for t in TASKS) / 8)
    for name in ("metrics.json", "table.md", "chart.png", "run_config.json"):
        assert (out / name).is_file(), name
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = records(out)
    assert len(log) == 16 and all(r["prompt_tokens"] == r["icl_prompt_tokens"] for r in log)
    assert {r["id"].rsplit("/", 1)[0] for r in log} == {f"{t.name}/test" for t in TASKS}

    # Interrupt: keep three finished items and a line cut off mid-write, then rerun with a larger limit.
    lines = (out / RECORDS_LOG).read_text().splitlines()
    (out / RECORDS_LOG).write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    resumed = run(RunConfig(limit_per_task=3, **config))
    again = records(out)
    assert again[:3] == log[:3]  # finished items were not run again
    assert len(again) == 24 and resumed.metrics["n_per_task"]["PIQA"] == 3
    with pytest.raises(RunConfigError, match="different configuration"):
        run(RunConfig(limit_per_task=3, **{**config, "shots": 2}))


def test_loragen_generates_one_adapter_per_task_and_shortens_the_prompt(tiny_dirs, generator_dir, data_dir, tmp_path, loragen_home):
    out = tmp_path / "loragen"
    summary = run(RunConfig(mode="loragen", out=out, data_dir=data_dir, limit_per_task=2, shots=3, generator=generator_dir))
    log = records(out)
    firsts = [r for r in log if r["adapter_cache_hit"] is not None]
    assert len(firsts) == 8 and not any(r["adapter_cache_hit"] for r in firsts)  # one generation per task
    assert len({r["adapter_hash"] for r in log}) == 8  # a different system prompt, a different adapter
    assert all(r["prompt_tokens"] < r["icl_prompt_tokens"] for r in log)
    m = summary.metrics
    assert m["seq_ratio"] < 0.5 and m["median_adapter_generation_s"] > 0 and m["trained_generator"] is True
    assert m["edge_model"] == str(tiny_dirs["edge"])  # the generator's edge model, read from its config

    # 1-shot: same adapters (now cache hits), one example in the edge prompt
    one = run(RunConfig(mode="loragen-1shot", out=tmp_path / "one", data_dir=data_dir, limit_per_task=2, shots=3,
                        generator=generator_dir))
    one_log = records(tmp_path / "one")
    assert [r["adapter_hash"] for r in one_log] == [r["adapter_hash"] for r in log]
    assert all(r["adapter_cache_hit"] for r in one_log if r["adapter_cache_hit"] is not None)
    assert m["seq_ratio"] < one.metrics["seq_ratio"] < 1.0


def test_lora_row_and_the_table(tiny_dirs, generator_dir, data_dir, tmp_path, loragen_home):
    adapter = load_generator(generator_dir).generate("any task").save_pretrained(tmp_path / "adapter", tiny_dirs["edge"])
    common = dict(data_dir=data_dir, limit_per_task=1, shots=2, edge_model=str(tiny_dirs["edge"]))
    lora = run(RunConfig(mode="lora", out=tmp_path / "runs" / "lora", adapter=adapter, **common))
    icl = run(RunConfig(mode="icl", out=tmp_path / "runs" / "icl", **common))
    assert lora.metrics["seq_ratio"] < 1.0 and lora.metrics["adapter"] == str(adapter)
    assert {r["adapter_hash"] for r in records(tmp_path / "runs" / "lora")} != {None}

    results = tmp_path / "results"
    assert main(["table", str(tmp_path / "runs" / "icl"), str(tmp_path / "runs" / "lora"), "--results", str(results)]) == 0
    rows = json.loads((results / "commonsense_table2.json").read_text())
    assert [r["method"] for r in rows] == ["icl", "lora"]
    for row in rows:
        assert {t.name for t in TASKS} | {"AVE", "HAR", "seq_ratio", "median_latency_s", "n_per_task"} <= row.keys()
    assert rows[0]["HAR"] == pytest.approx(icl.metrics["HAR"])
    table = (results / "commonsense_table2.md").read_text()
    assert "| icl |" in table and "| lora |" in table and "HellaS*" in table
    assert (results / "commonsense_table2.png").read_bytes()[:4] == b"\x89PNG"


def test_mode_arguments_and_missing_data_are_clear(tmp_path, capsys):
    with pytest.raises(RunConfigError, match="needs --adapter"):
        RunConfig(mode="lora", out=tmp_path)
    with pytest.raises(RunConfigError, match="--shots must be >= 1"):
        RunConfig(mode="loragen-1shot", out=tmp_path, shots=0)
    assert main(["run", "--mode", "icl", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_build_data_output_trains_the_generator(tiny_dirs, data_dir, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["build-data", "--data-dir", str(data_dir), "--out", str(out), "--rows-per-task", "4", "--shots", "2",
                 "--prompts-per-task", "2"]) == 0
    assert "20 rows, 10 distinct system prompts" in capsys.readouterr().out
    final = train(TrainConfig(data=[str(out / "train.jsonl")], out=str(tmp_path / "run"), steps=2, batch_size=4, lr=1e-2,
                              warmup_steps=1, edge_model=str(tiny_dirs["edge"]), cloud_model=str(tiny_dirs["cloud"]), r=4,
                              n_experts=4))
    assert load_generator(final).experts.lora_b["up_proj"].abs().sum() > 0
    assert "20 rows" in (final / "README.md").read_text()
    assert torch.isfinite(torch.tensor([json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()])).all()


def test_main_job_runs_every_row_on_the_generators_edge_model(tiny_dirs, generator_dir, data_dir, tmp_path, loragen_home):
    results = tmp_path / "results"
    assert main(["--data-dir", str(data_dir), "--shots", "2", "--limit-per-task", "1", "--runs-dir", str(tmp_path / "runs"),
                 "--results", str(results), "--generator", str(generator_dir)]) == 0
    rows = json.loads((results / "commonsense_table2.json").read_text())
    assert [r["method"] for r in rows] == ["icl", "loragen", "loragen-1shot"]
    assert {r["edge_model"] for r in rows} == {str(tiny_dirs["edge"])}
    assert all(r["n_per_task"] == {t.name: 1 for t in TASKS} for r in rows)
