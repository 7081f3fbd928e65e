"""The trainer on tiny models: it learns, resumes bit-exactly, and its outputs load where they are used."""

from __future__ import annotations

import json
import math

import pytest
import torch
from peft import PeftModel

from loragen_core import load_causal_lm, load_generator
from loragen_core.meta_state_cache import MetaStateCache, prompt_key
from loragen_core.train import train
from loragen_core.train_config import TrainConfig
from loragen_core.train_data import TrainingDataError, batch_indices, encode_example

SYSTEM_PROMPTS = ["GPT4Tools has access to: Edge Detection On Image.", "GPT4Tools has access to: Detect Face."]


def write_data(path, n: int = 12):
    rows = []
    for i in range(n):
        system = SYSTEM_PROMPTS[i % 2]
        tool = "Edge Detection On Image" if i % 2 == 0 else "Detect Face"
        rows.append({"system_prompt": system, "edge_prompt": f"New input: request {i}", "instruction": system + f"\nNew input: request {i}",
                     "output": f"Thought: Do I need to use a tool? Yes\nAction: {tool}\n", "kind": "tool", "id": f"t-{i}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(tiny_dirs, tmp_path, **overrides) -> TrainConfig:
    values = dict(data=[str(write_data(tmp_path / "train.jsonl"))], out=str(tmp_path / "run"), steps=6, batch_size=4, lr=1e-2,
                  warmup_steps=1, save_every=3, edge_model=str(tiny_dirs["edge"]), cloud_model=str(tiny_dirs["cloud"]), r=4, n_experts=4)
    values.update(overrides)
    return TrainConfig(**values)


def interrupt_after_first_save(run: TrainConfig) -> int:
    """Train until right after the first checkpoint, then crash as an interruption would; returns
    how many checkpoints were written."""
    import loragen_core.train as trainer

    original, saves = trainer.save_checkpoint, []

    def crash_after_saving(*args, **kwargs):
        original(*args, **kwargs)
        saves.append(1)
        raise KeyboardInterrupt

    trainer.save_checkpoint = crash_after_saving
    try:
        with pytest.raises(KeyboardInterrupt):
            train(run)
    finally:
        trainer.save_checkpoint = original
    return len(saves)


def read_log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_loragen_training_lowers_the_loss_and_writes_a_loadable_generator(tiny_dirs, tmp_path):
    final = train(config(tiny_dirs, tmp_path, steps=12))
    log = read_log(tmp_path / "run")
    assert [r["step"] for r in log] == list(range(12))
    assert sum(r["lm"] for r in log[-3:]) / 3 < sum(r["lm"] for r in log[:3]) / 3
    # L_cv is a squared coefficient of variation: finite, and above 0 once the routers prefer some experts.
    assert all(math.isfinite(r["cv"]) for r in log) and any(r["cv"] > 0 for r in log)
    generator = load_generator(final)  # bf16 on disk, float32 once loaded
    assert generator.experts.lora_b["up_proj"].dtype == torch.float32
    assert generator.experts.lora_b["up_proj"].abs().sum() > 0  # B started at zero: training moved it
    card = (final / "README.md").read_text()
    assert "12 rows" in card and "distinct system prompts" in card
    assert (final / "loss.png").stat().st_size > 0


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_dirs, tmp_path):
    straight = tmp_path / "straight"
    straight.mkdir()
    train(config(tiny_dirs, straight))
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    first = config(tiny_dirs, resumed)
    assert interrupt_after_first_save(first) == 1 and len(read_log(resumed / "run")) == 3  # step 3 of 6
    train(first)  # the same command again resumes at step 3
    assert [r["step"] for r in read_log(resumed / "run")] == list(range(6))
    a = load_generator(straight / "run" / "final").trainable_state_dict()
    b = load_generator(resumed / "run" / "final").trainable_state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    # The same code wrote both halves: one version, from step 0; the model card says which.
    versions = json.loads((resumed / "run" / "final" / "training_summary.json").read_text())["code_versions"]
    assert [v["records_before"] for v in versions] == [0]
    assert f"- Code: {versions[0]['git'] or versions[0]['code']} from step 0." in (resumed / "run" / "final" / "README.md").read_text()


def test_a_run_resumed_under_changed_code_says_so_in_its_model_card(tiny_dirs, tmp_path, monkeypatch, caplog):
    from loragen_core import resumable_run

    first = config(tiny_dirs, tmp_path)
    assert interrupt_after_first_save(first) == 1
    monkeypatch.setattr(resumable_run, "code_fingerprint", lambda: "0123456789abcdef")
    monkeypatch.setattr(resumable_run, "_git_commit", lambda: None)
    with caplog.at_level("WARNING"):
        train(first)
    assert "3 records were written by other code" in caplog.text
    card = (tmp_path / "run" / "final" / "README.md").read_text()
    assert "from step 0, 0123456789abcdef from step 3 (resumed across a code change)." in card


def test_a_checkpoint_missing_trained_tensors_is_refused_on_resume(tiny_dirs, tmp_path):
    from safetensors.torch import load_file, save_file

    from loragen_core import CheckpointError

    run = config(tiny_dirs, tmp_path, steps=6, save_every=3)
    interrupt_after_first_save(run)
    weights = tmp_path / "run" / "checkpoint" / "model" / "generator.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if not k.startswith("experts.")}, weights)  # a damaged checkpoint
    with pytest.raises(CheckpointError, match="missing trained tensors"):
        train(run)


def test_lora_baseline_writes_a_peft_adapter(tiny_dirs, tmp_path):
    final = train(config(tiny_dirs, tmp_path, method="lora", prompt="full", steps=3))
    edge = load_causal_lm(str(tiny_dirs["edge"])).model
    model = PeftModel.from_pretrained(edge, final)
    assert any("lora_" in name for name, _ in model.named_parameters())
    assert (final / "README.md").read_text().startswith("# vanilla LoRA baseline (full prompt)")


def test_meta_state_cache_matches_the_cloud_and_survives_damage(tiny_dirs, tmp_path):
    from loragen_core import LoRAGenConfig, build_generator

    generator = build_generator(LoRAGenConfig(cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]),
                                              train_cloud_lora=False, train_meta_tokens=False))
    path = tmp_path / "states.pt"
    cache = MetaStateCache(generator, path)
    cache.fill(SYSTEM_PROMPTS, show_progress=False)
    generator.eval()
    with torch.no_grad():
        direct = generator.meta_states([SYSTEM_PROMPTS[1]])[0]
    torch.testing.assert_close(cache.stack([SYSTEM_PROMPTS[1]])[0], direct, rtol=1e-5, atol=1e-5)
    assert set(MetaStateCache(generator, path).states) == {prompt_key(p) for p in SYSTEM_PROMPTS}
    path.write_bytes(b"not a torch file")
    assert MetaStateCache(generator, path).states == {}


def test_training_data_errors_are_clear(tiny_dirs, tmp_path):
    with pytest.raises(TrainingDataError, match="does not exist"):
        train(config(tiny_dirs, tmp_path, data=[str(tmp_path / "missing.jsonl")]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"system_prompt": "s", "output": "o"}) + "\n")
    with pytest.raises(TrainingDataError, match="edge_prompt"):
        train(config(tiny_dirs, tmp_path, data=[str(bad)], out=str(tmp_path / "run2")))


def test_labels_cover_exactly_the_answer(tiny_dirs):
    tokenizer = load_causal_lm(str(tiny_dirs["edge"])).tokenizer
    ids, labels = encode_example(tokenizer, "New input: hi", "AI: hello")
    answer = [t for t in labels if t != -100]
    assert tokenizer.decode(answer) == "AI: hello" + tokenizer.eos_token
    assert ids[-len(answer):] == answer


def test_batches_cover_each_epoch_once():
    seen = [i for step in range(3) for i in batch_indices(10, 4, step, seed=0)][:10]
    assert sorted(seen) == list(range(10))


def test_files_with_different_columns_mix(tmp_path):
    from loragen_core.train_data import load_rows

    first = write_data(tmp_path / "a.jsonl", n=2)
    second = tmp_path / "b.jsonl"
    second.write_text(json.dumps({"system_prompt": "s", "edge_prompt": "e", "output": "o", "task": "boolq"}) + "\n")
    rows = load_rows([first, second])
    assert len(rows) == 3 and rows[-1]["output"] == "o"


def test_held_out_loss_is_logged_and_carried_to_the_card(tiny_dirs, tmp_path):
    held_out = write_data(tmp_path / "held_out.jsonl", n=4)
    final = train(config(tiny_dirs, tmp_path, steps=4, eval_data=[str(held_out)], eval_every=2))
    evaluations = [r for r in read_log(tmp_path / "run") if "eval_lm" in r]
    assert [r["step"] for r in evaluations] == [1, 3] and all(r["eval_examples"] == 4 and r["eval_lm"] > 0 for r in evaluations)
    summary = json.loads((final / "training_summary.json").read_text())["training"]
    assert summary["held_out_lm"] == round(evaluations[-1]["eval_lm"], 4) and summary["steps_logged"] == 4
    # After the fact, from the saved (bf16) checkpoint: the same loss, up to bf16 rounding of the weights.
    from loragen_core.heldout import held_out_loss

    loss, n = held_out_loss(final, [str(held_out)], batch_size=4)
    assert n == 4 and loss == pytest.approx(evaluations[-1]["eval_lm"], rel=2e-2)


def test_command_line_takes_several_data_and_eval_files():
    from loragen_core.train import parse_args

    config = parse_args(["--data", "a.jsonl", "b.jsonl", "--eval-data", "c.jsonl", "--steps", "3", "--no-train-routers"])
    assert config.data == ["a.jsonl", "b.jsonl"] and config.eval_data == ["c.jsonl"]
    assert config.steps == 3 and config.train_routers is False and config.lr == 1e-3  # the cpu recipe's default


def test_two_cpu_processes_train_under_accelerate_launch(tiny_dirs, tmp_path):
    """The documented multi-process command, for real: `accelerate launch --multi_gpu --num_processes 2` on a
    machine without CUDA is DDP on the gloo backend; only the main process logs and saves.

    Not asserted: equality with one process on the whole batch. The routers' BatchNorm normalises over
    each rank's own rows (SyncBatchNorm needs GPUs), and AdamW turns the resulting tiny gradient
    differences into lr-sized steps, so the two runs legitimately part after a step or two.
    """
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "loragen_core.train",
               "--data", str(write_data(tmp_path / "train.jsonl")), "--out", str(tmp_path / "ddp"), "--steps", "4",
               "--batch-size", "4", "--lr", "0.01", "--warmup-steps", "1", "--save-every", "2", "--r", "4", "--n-experts", "4",
               "--edge-model", str(tiny_dirs["edge"]), "--cloud-model", str(tiny_dirs["cloud"])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) (MULTI_CPU)" in done.stderr
    log = read_log(tmp_path / "ddp")
    assert [r["step"] for r in log] == [0, 1, 2, 3], "only the main process logs, once per step"
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert load_generator(tmp_path / "ddp" / "final").experts.lora_b["up_proj"].abs().sum() > 0


def test_gradient_checkpointing_trains_the_same_weights(tiny_dirs, tmp_path):
    """--gradient-checkpointing (method lora) only trades compute for memory: same losses, same weights."""
    from safetensors.torch import load_file

    runs = {}
    for checkpointing in (False, True):
        directory = tmp_path / str(checkpointing)
        directory.mkdir()
        train(config(tiny_dirs, directory, method="lora", prompt="full", steps=3, gradient_checkpointing=checkpointing))
        runs[checkpointing] = directory / "run"
    plain, recomputed = (read_log(runs[c]) for c in (False, True))
    assert [r["lm"] for r in recomputed] == pytest.approx([r["lm"] for r in plain], rel=1e-5)
    a, b = (load_file(runs[c] / "checkpoint" / "model" / "adapter_model.safetensors") for c in (False, True))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(ValueError, match="for --method lora"):
        config(tiny_dirs, tmp_path, gradient_checkpointing=True)
    from loragen_core.train import build_trainable

    edge = load_causal_lm(str(tiny_dirs["edge"])).model
    build_trainable(config(tiny_dirs, tmp_path, method="lora", gradient_checkpointing=True), edge, tmp_path, [], False)
    assert edge.is_gradient_checkpointing, "the flag must switch checkpointing on"


def test_each_prompts_adapter_makes_the_edge_model_name_its_own_tool(tiny_dirs, tmp_path):
    """The edge prompt is the same for every row: only the generated adapter can say which tool to
    name. A generator that ignored its system prompt would give both prompts the same tool."""
    from loragen_core.edge_runtime import EdgeModel

    tools = {SYSTEM_PROMPTS[0]: "Edge Detection On Image", SYSTEM_PROMPTS[1]: "Detect Face"}
    rows = [{"system_prompt": system, "edge_prompt": "New input: use the tool", "output": f"Action: {tool}\n", "kind": "tool",
             "id": f"r-{i}-{j}"} for j, (system, tool) in enumerate(tools.items()) for i in range(8)]
    data = tmp_path / "two_prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    final = train(config(tiny_dirs, tmp_path, data=[str(data)], steps=40, batch_size=8, lr=1e-2, save_every=40))
    generator = load_generator(final).eval()
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])))
    written = {}
    for system in tools:
        edge.specialize(generator.generate(system))
        written[system] = edge.complete("New input: use the tool", max_new_tokens=16).text
    for system, tool in tools.items():
        other = next(t for t in tools.values() if t != tool)
        assert tool in written[system] and other not in written[system], written


def test_each_prompts_adapter_ranks_its_own_tool_first(tiny_dirs, tmp_path):
    """The edge prompt never says which tool (it is the same for both), so only the adapter can: a
    generator that ignored its system prompt would rank the same tool first for both prompts."""
    from loragen_core.edge_runtime import EdgeModel
    from loragen_core.train_data import IGNORE_INDEX, encode_example

    final = train(config(tiny_dirs, tmp_path, steps=40, save_every=40))
    generator = load_generator(final).eval()
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])))
    tools = ["Edge Detection On Image", "Detect Face"]

    def mean_loss(adapter, tool: str) -> float:
        ids, labels = encode_example(edge.tokenizer, "New input: request 99", f"Thought: Do I need to use a tool? Yes\nAction: {tool}\n")
        with torch.no_grad(), adapter.applied_to(edge.model):
            loss = edge.model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        assert IGNORE_INDEX in labels
        return float(loss)

    preferred = []
    for system_prompt in SYSTEM_PROMPTS:
        losses = [mean_loss(generator.generate(system_prompt), tool) for tool in tools]
        preferred.append(tools[losses.index(min(losses))])
    assert preferred == tools, "each system prompt's adapter must prefer its own tool; swapping prompts swaps tools"
