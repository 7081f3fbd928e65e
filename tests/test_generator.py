"""Generator math and training signal, on a 2-layer Qwen2 cloud and a 2-layer Llama edge."""

from __future__ import annotations

import json
import re

import pytest
import torch

from loragen_core import LoRAGenConfig, build_generator, cv_squared_loss, keep_top_k, load_causal_lm
from loragen_core.objective import loragen_loss

PROMPTS = [
    "GPT4Tools has access to the following tools: Detect Face, Segment the Image.",
    "Answer the question with one word.",
    "GPT4Tools has access to the following tools: Edge Detection On Image.",
]


@pytest.fixture
def generator(tiny_dirs):
    config = LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, top_k=2, r=4,
        lora_alpha=8, router_hidden=16, cloud_lora_r=4, expert_b_init_std=0.02, seed=3,
    )
    return build_generator(config)


def test_keep_top_k_keeps_exactly_k_and_renormalises():
    logits = torch.randn(5, 3, 8)
    gates = keep_top_k(logits, 2)
    assert ((gates > 0).sum(-1) == 2).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(5, 3))
    # The kept experts are the two largest softmax entries, in the softmax's proportions.
    probs = logits.softmax(-1)
    top = probs.topk(2, -1)
    torch.testing.assert_close(gates.gather(-1, top.indices), top.values / top.values.sum(-1, keepdim=True))


def test_cv_loss_matches_hand_computation():
    # batch 2, 1 layer, 3 experts. Importance per expert: [1.0, 0.5, 0.5]; mean 2/3,
    # population std sqrt(((1/3)^2 + 2*(1/6)^2)/3) = sqrt(1/18); cv^2 = (1/18)/(4/9) = 1/8.
    gates = torch.tensor([[[0.5, 0.5, 0.0]], [[0.5, 0.0, 0.5]]])
    assert cv_squared_loss(gates, alpha=0.01).item() == pytest.approx(0.01 / 8, rel=1e-6)
    assert cv_squared_loss(torch.full((4, 2, 3), 1 / 3), alpha=0.01).item() == pytest.approx(0.0, abs=1e-9)


def test_generator_gates_and_adapter_shapes(generator):
    generator.eval()
    output = generator(PROMPTS)
    assert output.gates.shape == (3, 2, 4)
    assert ((output.gates > 0).sum(-1) == 2).all()
    torch.testing.assert_close(output.gates.sum(-1), torch.ones(3, 2))
    adapter = output.adapter
    assert len(adapter.lora_a) == 2 * 3  # 2 layers × gate/up/down
    assert adapter.lora_a["model.layers.1.mlp.down_proj"].shape == (3, 4, 48)
    assert adapter.lora_b["model.layers.1.mlp.down_proj"].shape == (3, 32, 4)
    assert adapter.lora_a["model.layers.0.mlp.gate_proj"].shape == (3, 4, 32)


def test_batched_generation_equals_one_by_one(generator):
    # Left padding must not change what a prompt generates (eval mode: BatchNorm uses running stats).
    generator.eval()
    batched = generator(PROMPTS).adapter
    for i, prompt in enumerate(PROMPTS):
        single = generator.generate(prompt)
        for name in single.lora_a:
            torch.testing.assert_close(batched.lora_a[name][i : i + 1], single.lora_a[name], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(batched.lora_b[name][i : i + 1], single.lora_b[name], atol=1e-5, rtol=1e-4)


def test_one_step_trains_generator_parts_and_freezes_base_weights(generator, tiny_dirs):
    edge = load_causal_lm(str(tiny_dirs["edge"])).model
    edge.requires_grad_(False)
    generator.train()
    frozen_before = {f"cloud.{n}": p.detach().clone() for n, p in generator.cloud.named_parameters() if "lora_" not in n}
    edge_before = {n: p.detach().clone() for n, p in edge.named_parameters()}
    trainable = {n: p for n, p in generator.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}

    ids = torch.randint(0, edge.config.vocab_size, (3, 12))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :6] = -100
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    loss = loragen_loss(generator, edge, PROMPTS, ids, mask, labels)
    assert loss.cv.item() > 0 and torch.isclose(loss.total, loss.lm + loss.cv)
    loss.total.backward()
    optimizer.step()

    def changed(prefix: str) -> bool:
        return any(not torch.equal(before[n], trainable[n]) for n in trainable if n.startswith(prefix))

    assert changed("meta_tokens") and changed("routers.") and changed("experts.")
    assert any(not torch.equal(before[n], trainable[n]) for n in trainable if n.startswith("cloud.") and "lora_" in n)
    assert all(not n.startswith("cloud.") or "lora_" in n for n in trainable)
    for name, parameter in generator.cloud.named_parameters():
        if "lora_" not in name:
            assert torch.equal(frozen_before[f"cloud.{name}"], parameter), name
    for name, parameter in edge.named_parameters():
        assert torch.equal(edge_before[name], parameter), name


def test_trainable_flags_freeze_parts(tiny_dirs):
    config = LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, r=4,
        router_hidden=16, cloud_lora_r=4, train_cloud_lora=False, train_meta_tokens=False,
    )
    generator = build_generator(config)
    trainable = [n for n, p in generator.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("routers.", "experts.")) for n in trainable)


def test_checkpoint_round_trip(generator, tmp_path):
    from loragen_core import CheckpointError, load_generator, save_generator
    from loragen_core.checkpoint import generator_fingerprint

    generator.eval()
    with torch.no_grad():
        generator.routers[0].norm.running_mean.add_(0.3)  # state beyond parameters must survive too
    directory = save_generator(generator, tmp_path / "ckpt")
    loaded = load_generator(directory).eval()
    assert generator_fingerprint(loaded) == generator_fingerprint(generator)
    assert loaded.generate(PROMPTS[0]).content_hash() == generator.generate(PROMPTS[0]).content_hash()
    (directory / "generator.safetensors").unlink()
    with pytest.raises(CheckpointError, match="generator.safetensors is missing"):
        load_generator(directory)


def test_ship_writes_bf16_with_the_model_card_or_nothing(generator, tmp_path, capsys):
    from loragen_core import load_generator, save_generator
    from loragen_core.__main__ import main
    from safetensors.torch import load_file

    final = save_generator(generator, tmp_path / "run" / "final")
    (final / "README.md").write_text("# card\n")
    (tmp_path / "notes.md").write_text("## How this was made\n`python -m loragen_core.train ...`\n")
    dest = tmp_path / "pkg" / "checkpoints" / "tiny"
    assert main(["ship", str(final), "--to", str(dest), "--notes", str(tmp_path / "notes.md")]) == 0
    assert {t.dtype for t in load_file(dest / "generator.safetensors").values() if t.is_floating_point()} == {torch.bfloat16}
    assert (dest / "README.md").read_text() == "# card\n\n## How this was made\n`python -m loragen_core.train ...`\n"
    shipped = load_generator(dest).eval()
    generator.eval()
    a, b = shipped.generate(PROMPTS[0]), generator.generate(PROMPTS[0])
    for name in a.lora_a:  # bf16 storage: equal to about 3 significant digits
        assert torch.allclose(a.lora_a[name], b.lora_a[name], rtol=2e-2, atol=1e-3)
        assert b.lora_b[name].abs().max() > 1e-3, "B must be non-zero, or comparing it proves nothing"
        assert torch.allclose(a.lora_b[name], b.lora_b[name], rtol=2e-2, atol=1e-4)

    before = sorted(p.name for p in dest.iterdir())
    with pytest.raises(SystemExit) as refused:
        main(["ship", str(final), "--to", str(dest), "--max-mib", "0.001"])
    assert refused.value.code == 2 and "over the 0.001 MiB limit" in capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == before, "a refused ship leaves the old checkpoint in place"
    assert [p.name for p in dest.parent.iterdir()] == ["tiny"], "no staging directory left behind"
    with pytest.raises(SystemExit):
        main(["ship", str(tmp_path / "nope"), "--to", str(dest)])
    assert "is not a LoRA-Gen checkpoint" in capsys.readouterr().err


def test_checkpoint_with_non_finite_weights_is_refused(generator, tmp_path, loragen_home, capsys):
    from safetensors.torch import load_file, save_file

    from loragen_core import CheckpointError, load_generator, save_generator
    from loragen_core.__main__ import main

    directory = save_generator(generator, tmp_path / "ckpt")
    weights = directory / "generator.safetensors"
    state = load_file(weights)
    poisoned = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    save_file(poisoned, weights)
    first_bad = min(k for k, v in state.items() if v.is_floating_point())
    with pytest.raises(CheckpointError, match=rf"damaged: tensor {re.escape(first_bad)} .*Retrain"):
        load_generator(directory)

    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPTS[0])
    with pytest.raises(SystemExit) as refused:
        main(["generate", "--system-prompt-file", str(prompt), "--out", str(tmp_path / "out"), "--generator", str(directory)])
    assert refused.value.code == 2 and f"error: {weights}" in capsys.readouterr().err
    assert not (loragen_home / "adapters").exists()


def test_non_finite_adapter_is_refused_before_caching(generator, tmp_path):
    from loragen_core import AdapterService
    from loragen_core.errors import USER_ERRORS
    from loragen_core.generator import NonFiniteAdapterError

    with torch.no_grad():
        for parameter in generator.experts.parameters():
            parameter.fill_(float("nan"))
    service = AdapterService(generator, cache_dir=tmp_path / "adapters")
    with pytest.raises(NonFiniteAdapterError, match="non-finite.*model.layers.0.mlp"):
        service.adapter_for(PROMPTS[0])
    assert issubclass(NonFiniteAdapterError, USER_ERRORS)  # the CLIs print it as one `error:` line
    assert not (tmp_path / "adapters").exists()  # nothing was cached


GOOD_TARGET = {"module_name": "model.layers.0.mlp.up_proj", "layer": 0, "kind": "up_proj", "in_features": 32, "out_features": 48}


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not valid JSON"),
        ('{"model.layers.0.mlp.up_proj": 0}', "list"),
        ("[]", "list"),
        ('["up_proj"]', "entry 0"),
        (json.dumps([{**GOOD_TARGET, "layer": "0"}]), "layer"),
        (json.dumps([{**GOOD_TARGET, "in_features": True}]), "in_features"),
        (json.dumps([{k: v for k, v in GOOD_TARGET.items() if k != "kind"}]), "kind"),
        (json.dumps([{**GOOD_TARGET, "extra": 1}]), "extra"),
    ],
)
def test_malformed_edge_targets_are_a_checkpoint_error(generator, tmp_path, content, problem):
    from loragen_core import CheckpointError, load_generator, save_generator

    directory = save_generator(generator, tmp_path / "ckpt")
    (directory / "edge_targets.json").write_text(content)
    with pytest.raises(CheckpointError, match="edge_targets.json") as refused:
        load_generator(directory)
    assert problem in str(refused.value)


def test_edge_targets_that_do_not_fit_the_weights_are_a_checkpoint_error(generator, tmp_path):
    from loragen_core import CheckpointError, load_generator, save_generator

    directory = save_generator(generator, tmp_path / "ckpt")
    path = directory / "edge_targets.json"
    path.write_text(json.dumps([{**t, "in_features": t["in_features"] + 1} for t in json.loads(path.read_text())]))
    with pytest.raises(CheckpointError, match="does not match") as refused:
        load_generator(directory)


def test_the_generator_leaves_its_callers_tokenizer_as_it_was(tiny_dirs):
    from loragen_core import LoRAGenConfig, build_generator, load_causal_lm
    from loragen_core.generator import LoRAGenerator

    loaded = load_causal_lm(str(tiny_dirs["cloud"]))
    tokenizer = loaded.tokenizer
    tokenizer.pad_token, tokenizer.padding_side, tokenizer.truncation_side = None, "right", "right"
    generator = build_generator(LoRAGenConfig(cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=2, r=2))
    edge_targets = generator.edge_targets
    LoRAGenerator(generator.config, loaded.model, tokenizer, edge_targets).generate("Some system prompt.")
    assert (tokenizer.pad_token, tokenizer.padding_side, tokenizer.truncation_side) == (None, "right", "right")


def test_an_untrained_cloud_lora_is_left_out_and_changes_nothing(tiny_dirs, tmp_path):
    """The cpu recipe does not train the cloud q/v LoRA; its layers (B = 0) are not injected. Old
    checkpoints that hold those zero factors still load, and every adapter is the same."""
    from loragen_core import load_generator, save_generator
    from loragen_core.checkpoint import GENERATOR_WEIGHTS_FILE
    from safetensors.torch import load_file, save_file

    base = dict(cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, top_k=2, r=4,
                lora_alpha=8, router_hidden=16, cloud_lora_r=4, expert_b_init_std=0.02, seed=3)
    with_lora = build_generator(LoRAGenConfig(**base, train_cloud_lora=True)).eval()
    without = build_generator(LoRAGenConfig(**base, train_cloud_lora=False)).eval()
    assert any("lora_" in n for n in with_lora.trainable_state_dict()) and not any("cloud." in n for n in without.trainable_state_dict())
    a, b = with_lora.generate(PROMPTS[0]), without.generate(PROMPTS[0])
    assert all(torch.equal(a.lora_a[n], b.lora_a[n]) and torch.equal(a.lora_b[n], b.lora_b[n]) for n in a.lora_a)

    old = save_generator(without, tmp_path / "old")  # as an old cpu-recipe checkpoint was written: zero cloud factors inside
    weights = load_file(old / GENERATOR_WEIGHTS_FILE)
    zero_factors = {n: t for n, t in with_lora.trainable_state_dict().items() if n.startswith("cloud.")}
    save_file({**weights, **{n: t.contiguous() for n, t in zero_factors.items()}}, old / GENERATOR_WEIGHTS_FILE)
    loaded = load_generator(old).eval().generate(PROMPTS[0])
    assert all(torch.allclose(loaded.lora_b[n], b.lora_b[n], atol=1e-2) for n in b.lora_b)  # bf16 on disk
