from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_models import save_tiny_llama, save_tiny_qwen2

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {"edge": save_tiny_llama(root / "edge-llama"), "cloud": save_tiny_qwen2(root / "cloud-qwen2")}


@pytest.fixture(scope="module")
def edge(tiny_dirs):
    """The tiny random edge model as an EdgeModel (one per test module)."""
    from loragen_core import load_causal_lm
    from loragen_core.edge_runtime import EdgeModel

    return EdgeModel(load_causal_lm(str(tiny_dirs["edge"])))


SYSTEM_PROMPTS = [
    "GPT4Tools has access to the following tools: Detect Face, Edge Detection On Image.",
    "GPT4Tools has access to the following tools: Generate Image From User Input Text.",
    "GPT4Tools has access to the following tools: Answer Question About The Image, Segment the Image.",
]


@pytest.fixture(scope="module")
def three_adapters(tiny_dirs):
    """One generated adapter per SYSTEM_PROMPTS entry, as one batch, from a tiny seeded generator whose
    expert B init is strong enough to change what the edge model writes."""
    import torch

    from loragen_core import LoRAGenConfig, build_generator

    config = LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, r=4,
        lora_alpha=8, router_hidden=16, cloud_lora_r=4, expert_b_init_std=2.0, seed=3,
    )
    with torch.inference_mode():
        return build_generator(config).eval()(SYSTEM_PROMPTS).adapter.detach()


@pytest.fixture
def loragen_home(tmp_path, monkeypatch) -> Path:
    """An empty LORAGEN_HOME, except that the converted default model is shared (read-only use)."""
    home = tmp_path / "loragen_home"
    home.mkdir()
    monkeypatch.setenv("LORAGEN_HOME", str(home))
    return home


def pytest_collection_modifyitems(config, items):
    # On CI, data-dependent tests must run; a user's clone without ../shared skips them with a reason.
    if os.environ.get("CI") and not SHARED.is_dir():
        raise pytest.UsageError(f"CI=true but {SHARED} is missing: data-dependent tests would be skipped.")
