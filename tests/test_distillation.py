"""Context distillation: the top-k KL against torch's own, the teacher cache against peft, and a
generator trained on the KL term alone moving toward its full-prompt teacher."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from loragen_core import load_causal_lm
from loragen_core.distillation import TeacherCache, TeacherError, topk_kl
from loragen_core.train import main as train_main
from loragen_core.train import train
from loragen_core.train_config import TrainConfig
from loragen_core.train_data import encode_example, load_rows, row_key
from tests.test_train import config, read_log, write_data


def test_topk_kl_over_the_whole_vocabulary_is_torchs_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(7, 50), torch.randn(7, 50) * 3
    teacher_logprobs, indices = torch.log_softmax(teacher, -1).topk(50, dim=-1)
    reference = torch.nn.functional.kl_div(torch.log_softmax(student, -1), torch.log_softmax(teacher, -1), log_target=True,
                                           reduction="sum") / 7
    torch.testing.assert_close(topk_kl(student, indices, teacher_logprobs), reference, rtol=1e-4, atol=1e-5)


def test_topk_kl_is_a_lower_bound_that_vanishes_at_the_teacher():
    torch.manual_seed(1)
    student, teacher = torch.randn(5, 40), torch.randn(5, 40) * 2
    full = torch.nn.functional.kl_div(torch.log_softmax(student, -1), torch.log_softmax(teacher, -1), log_target=True,
                                      reduction="sum") / 5
    logprobs, indices = torch.log_softmax(teacher, -1).topk(8, dim=-1)
    bucketed = topk_kl(student, indices, logprobs)
    assert 0 < bucketed <= full + 1e-6  # merging tokens into one bucket never increases a KL
    assert topk_kl(teacher, indices, logprobs).abs() < 1e-5


@pytest.fixture(scope="module")
def teacher_adapter(tiny_dirs, tmp_path_factory):
    """A full-prompt LoRA on the tiny edge model, trained a few steps (so that it differs from the base)."""
    tmp = tmp_path_factory.mktemp("teacher")
    return train(config(tiny_dirs, tmp, method="lora", prompt="full", steps=3, save_every=3))


def test_the_cache_holds_pefts_top_k_and_scores_each_row_once(tiny_dirs, tmp_path, teacher_adapter, monkeypatch):
    rows = load_rows([write_data(tmp_path / "rows.jsonl", n=4)], need_instruction=True)
    path = tmp_path / "teacher_topk.pt"
    cache = TeacherCache(teacher_adapter, str(tiny_dirs["edge"]), top_k=5, path=path, batch_size=3)
    cache.fill(rows, show_progress=False)

    loaded = load_causal_lm(str(tiny_dirs["edge"]))
    peft_model = PeftModel.from_pretrained(loaded.model, str(teacher_adapter)).eval()  # unmerged: the reference
    ids, labels = encode_example(loaded.tokenizer, rows[1]["instruction"], rows[1]["output"])
    with torch.no_grad():
        logits = peft_model(input_ids=torch.tensor([ids])).logits[0, :-1]
    answer = torch.tensor(labels[1:]) != -100
    expected_logprobs, expected_indices = torch.log_softmax(logits[answer], -1).topk(5, dim=-1)
    cached = cache.targets[row_key(rows[1])]
    assert cached.indices.shape == (int(answer.sum()), 5)  # one entry per answer token of the student's encoding
    torch.testing.assert_close(cached.logprobs, expected_logprobs, rtol=1e-4, atol=1e-4)
    assert torch.equal(cached.indices.long(), expected_indices)

    def no_teacher(self):
        raise AssertionError("the teacher ran again for rows already in the cache")

    monkeypatch.setattr(TeacherCache, "_load_teacher", no_teacher)
    reread = TeacherCache(teacher_adapter, str(tiny_dirs["edge"]), top_k=5, path=path)
    reread.fill(rows, show_progress=False)
    assert set(reread.targets) == {row_key(r) for r in rows}
    assert TeacherCache(teacher_adapter, str(tiny_dirs["edge"]), top_k=3, path=path).targets == {}, "another k is another cache"
    path.write_bytes(b"not a torch file")
    assert TeacherCache(teacher_adapter, str(tiny_dirs["edge"]), top_k=5, path=path).targets == {}


def test_the_kl_term_alone_pulls_the_generator_toward_the_teacher(tiny_dirs, tmp_path, teacher_adapter):
    run = config(tiny_dirs, tmp_path, steps=12, save_every=12, lm_weight=0.0, kl_weight=1.0,
                 teacher_adapter=str(teacher_adapter), teacher_top_k=8)
    final = train(run)
    assert "Context distillation (ours): L_KL weight 1.0" in (final / "README.md").read_text()
    log = [r for r in read_log(tmp_path / "run") if "step" in r and "kl" in r]
    assert len(log) == 12
    assert sum(r["kl"] for r in log[-3:]) / 3 < sum(r["kl"] for r in log[:3]) / 3
    # lm_weight 0: the total is the KL (plus L_cv), L_LM is only logged.
    assert all(abs(r["loss"] - r["kl"] - r["cv"]) < 1e-4 for r in log)
    # The teacher scored exactly the rows the 12 steps read, once each.
    cached = torch.load(tmp_path / "run" / "teacher_topk.pt", weights_only=True)["payload"]
    assert 0 < len(cached) <= 12


def test_a_run_without_the_kl_term_logs_none(tiny_dirs, tmp_path):
    train(config(tiny_dirs, tmp_path, steps=2, save_every=2))
    assert all("kl" not in r for r in read_log(tmp_path / "run"))
    assert not (tmp_path / "run" / "teacher_topk.pt").exists()


def test_distillation_settings_are_checked(tiny_dirs, tmp_path, capsys):
    with pytest.raises(ValueError, match="needs --teacher-adapter"):
        config(tiny_dirs, tmp_path, kl_weight=1.0)
    with pytest.raises(ValueError, match="for --method loragen"):
        config(tiny_dirs, tmp_path, method="lora", kl_weight=1.0, teacher_adapter="x")
    data = write_data(tmp_path / "train.jsonl")
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1", "--edge-model", str(tiny_dirs["edge"]),
                    "--cloud-model", str(tiny_dirs["cloud"]), "--kl-weight", "1", "--teacher-adapter", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2 and "has no adapter_model.safetensors" in capsys.readouterr().err
    rows_without_full_prompt = tmp_path / "short.jsonl"
    rows_without_full_prompt.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "instruction"}) + "\n"
                                                for line in data.read_text().splitlines()))
    with pytest.raises(ValueError, match="instruction"):
        train(TrainConfig(**{**config(tiny_dirs, tmp_path).to_dict(), "data": [str(rows_without_full_prompt)], "kl_weight": 1.0,
                             "out": str(tmp_path / "run-short"),
                             "teacher_adapter": str(tmp_path)}))
    with pytest.raises(TeacherError):
        TeacherCache(tmp_path, str(tiny_dirs["edge"]), top_k=4)


def test_ship_puts_a_lora_baseline_into_the_package_in_bf16(teacher_adapter, tiny_dirs, tmp_path):
    """The full-prompt LoRA ships as the generator does: bf16, with its card, loadable as an adapter."""
    from safetensors.torch import load_file

    from loragen_core import GeneratedLoRA
    from loragen_core.__main__ import main as package_main

    dest = tmp_path / "checkpoints" / "full_prompt_lora"
    assert package_main(["ship", str(teacher_adapter), "--to", str(dest)]) == 0
    assert {t.dtype for t in load_file(dest / "adapter_model.safetensors").values()} == {torch.bfloat16}
    assert (dest / "README.md").read_text().startswith("# vanilla LoRA baseline (full prompt)")
    shipped, trained = GeneratedLoRA.from_pretrained(dest), GeneratedLoRA.from_pretrained(teacher_adapter)
    for name in trained.lora_b:
        assert trained.lora_b[name].abs().max() > 0, "a trained B is non-zero, or comparing it proves nothing"
        torch.testing.assert_close(shipped.lora_b[name].float(), trained.lora_b[name], rtol=2e-2, atol=1e-3)
    assert shipped.fits(load_causal_lm(str(tiny_dirs["edge"])).model)
