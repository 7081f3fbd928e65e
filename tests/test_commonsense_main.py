"""The command line: the main job (every harness mode, then the table) on the real default model,
and build-data → trainer on tiny models, over a small synthetic copy of the eight task files (same
templates as the LLM-Adapters files, so no shared data is needed)."""

from __future__ import annotations

import json

import pytest
import torch

from eval_commonsense.__main__ import main
from eval_commonsense.harness_run import HarnessConfig
from eval_commonsense.tasks import HELD_OUT_SHOTS, TASKS
from loragen_core import load_generator
from loragen_core.train import train
from loragen_core.train_config import TrainConfig

OPTIONS = {"PIQA": 2, "WinoGrande": 2, "HellaSwag": 4}  # as the real files (the harness's choices count on it)
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
                words = [WORDS[(i + t_index + j) % len(WORDS)] for j in range(OPTIONS.get(task.name, 3))]
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


def test_mode_arguments_and_missing_data_are_clear(tmp_path, capsys):
    with pytest.raises(ValueError, match="needs --adapter"):
        HarnessConfig(mode="lora", out=tmp_path)
    with pytest.raises(ValueError, match="Unknown task"):
        HarnessConfig(mode="base", out=tmp_path, tasks=("MMLU",))
    nowhere = str(tmp_path / "nowhere")
    for argv in (["--data-dir", nowhere, "harness", "--mode", "icl", "--out", str(tmp_path / "r")],  # one mode
                 ["--data-dir", nowhere, "--runs-dir", str(tmp_path / "r")]):  # the main job
        assert main(argv) == 2
        assert "--data-dir" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any run directory is made


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


@pytest.mark.real_model
def test_main_job_scores_every_mode_with_the_harness_and_writes_the_table(data_dir, tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["--data-dir", str(data_dir), "--shots", "2", "--limit-per-task", "2", "--tasks", "BoolQ", "PIQA",
            "--runs-dir", str(tmp_path / "runs"), "--results", str(results)]
    assert main(argv) == 0
    table = json.loads((results / "commonsense_harness_table2.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["base", "icl", "loragen", "loragen-1shot"]
    assert all(r["n_per_task"] == {"BoolQ": 2, "PIQA": 2} for r in table["rows"])
    fewshot = {r["method"]: r["num_fewshot"] for r in table["rows"]}
    assert fewshot == {"base": [0], "icl": [2], "loragen": [0], "loragen-1shot": [1]}
    icl = next(r for r in table["rows"] if r["method"] == "icl")
    assert all(r["context_vs_icl"] < 1 for r in table["rows"] if r["method"] in ("base", "loragen"))  # shots cost tokens
    assert [p["metric"] for p in table["paired"]] == ["acc, PIQA"]  # loragen vs icl on the one unseen task run
    assert "| loragen | icl | acc, PIQA |" in capsys.readouterr().out and icl["mean_context_tokens"] > 0
