"""The adapter cache: hits skip the cloud LM; damaged entries are regenerated, never trusted."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from loragen_core import AdapterService, LoRAGenConfig, build_generator, save_generator
from loragen_core.adapter_cache import AdapterCache, cache_key

PROMPT = "GPT4Tools has access to the following tools: Segment the Image."


@pytest.fixture
def service(tiny_dirs, tmp_path):
    config = LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, r=4,
        router_hidden=16, cloud_lora_r=4, expert_b_init_std=0.1,
    )
    generator = build_generator(config)
    service = AdapterService(generator, cache_dir=tmp_path / "adapters")
    service.cloud_calls = 0

    def count(*_):
        service.cloud_calls += 1

    getattr(generator.cloud, generator.cloud.base_model_prefix).register_forward_hook(count)
    return service


def test_cache_hit_does_not_run_the_cloud_lm(service):
    first = service.adapter_for(PROMPT)
    assert not first.cache_hit and service.cloud_calls == 1
    second = service.adapter_for(PROMPT)
    assert second.cache_hit and service.cloud_calls == 1
    assert second.adapter_hash == first.adapter_hash
    third = service.adapter_for(PROMPT + " Detect Face.")
    assert not third.cache_hit and third.adapter_hash != first.adapter_hash
    # Each served adapter is the generator's own output for that prompt, not another prompt's.
    for result, prompt in ((second, PROMPT), (third, PROMPT + " Detect Face.")):
        direct = service.generator.generate(prompt)
        assert all(torch.equal(result.adapter.lora_b[n], direct.lora_b[n]) for n in direct.lora_b)


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes", "garbage"])
def test_corrupted_cache_entry_is_regenerated(service, damage):
    first = service.adapter_for(PROMPT)
    path = next(service.cache.directory.glob("*.safetensors"))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_bytes":
        data[-16:] = bytes(b ^ 0xFF for b in data[-16:])  # inside the last tensor's bytes
    else:
        data = bytearray(b"\x00" * 64)
    path.write_bytes(bytes(data))

    again = service.adapter_for(PROMPT)
    assert not again.cache_hit and service.cloud_calls == 2
    assert again.adapter_hash == first.adapter_hash
    assert service.adapter_for(PROMPT).cache_hit  # the regenerated entry was stored again
    assert not [p for p in service.cache.directory.iterdir() if p.suffix == ".tmp"]


def _entry(service, prompt: str) -> Path:
    return service.cache.path_for(cache_key(service.fingerprint, prompt))


@pytest.mark.parametrize("how", ["parent_is_a_file", "read_only_directory"])
def test_unwritable_cache_serves_the_adapter_uncached(service, tmp_path, monkeypatch, caplog, how):
    if how == "parent_is_a_file":
        blocker = tmp_path / "blocker"
        blocker.write_text("not a directory")
        service.cache = AdapterCache(blocker / "adapters")
    else:
        service.cache.directory.mkdir()
        service.cache.directory.chmod(0o555)  # stops writes for a normal user; root needs the patch below
        monkeypatch.setattr(tempfile, "mkstemp", _raise(PermissionError(13, "Permission denied")))
    with caplog.at_level(logging.WARNING, logger="loragen_core.adapter_cache"):
        first = service.adapter_for(PROMPT)
    assert not first.cache_hit and first.adapter.lora_a
    assert "not cached" in caplog.text
    again = service.adapter_for(PROMPT)
    assert not again.cache_hit and again.adapter_hash == first.adapter_hash and service.cloud_calls == 2


def _raise(error: Exception):
    def fail(*_args, **_kwargs):
        raise error

    return fail


def test_generate_cli_with_an_unwritable_cache_still_writes_the_adapter(service, tmp_path, loragen_home, capsys, caplog):
    from loragen_core.__main__ import main

    checkpoint = save_generator(service.generator, tmp_path / "ckpt")
    (loragen_home / "adapters").write_text("a file where the cache directory should be")
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(PROMPT)
    with caplog.at_level(logging.WARNING, logger="loragen_core.adapter_cache"):
        code = main(["generate", "--system-prompt-file", str(prompt_file), "--out", str(tmp_path / "out"),
                     "--generator", str(checkpoint)])
    assert code == 0 and (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert "generated" in capsys.readouterr().out and "not cached" in caplog.text


def test_cache_entry_replaced_by_a_directory_is_regenerated(service):
    first = service.adapter_for(PROMPT)
    path = _entry(service, PROMPT)
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")

    again = service.adapter_for(PROMPT)
    assert not again.cache_hit and again.adapter_hash == first.adapter_hash and path.is_file()
    assert service.adapter_for(PROMPT).cache_hit


def test_another_keys_entry_is_not_served(service):
    other = PROMPT + " Detect Face."
    a, b = service.adapter_for(PROMPT), service.adapter_for(other)
    shutil.copyfile(_entry(service, PROMPT), _entry(service, other))

    again = service.adapter_for(other)
    assert not again.cache_hit and again.adapter_hash == b.adapter_hash != a.adapter_hash
    assert service.adapter_for(other).cache_hit and service.cloud_calls == 3


def test_cache_evicts_least_recently_used_entries_beyond_its_size_bound(service):
    prompts = [f"{PROMPT} Tool {i}." for i in range(3)]
    paths = [_entry(service, p) for p in prompts]
    service.adapter_for(prompts[0])
    service.cache.max_bytes = int(paths[0].stat().st_size * 2.5)  # room for two entries
    service.adapter_for(prompts[1])
    os.utime(paths[0], (1000, 1000))  # 0 is older than 1 ...
    os.utime(paths[1], (2000, 2000))
    assert service.adapter_for(prompts[0]).cache_hit  # ... until a hit makes 0 the most recent
    service.adapter_for(prompts[2])
    assert [p.exists() for p in paths] == [True, False, True]

    service.cache.max_bytes = 1  # smaller than any entry: the one just written still stays
    service.adapter_for(prompts[1])
    assert [p.exists() for p in paths] == [False, True, False]


def test_cache_size_bound_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("LORAGEN_ADAPTER_CACHE_MAX_MB", raising=False)
    assert AdapterCache(tmp_path).max_bytes == 2 * 2**30
    monkeypatch.setenv("LORAGEN_ADAPTER_CACHE_MAX_MB", "0.5")
    assert AdapterCache(tmp_path).max_bytes == 2**19
    assert AdapterCache(tmp_path, max_bytes=10).max_bytes == 10
    monkeypatch.setenv("LORAGEN_ADAPTER_CACHE_MAX_MB", "lots")
    with pytest.raises(ValueError, match="LORAGEN_ADAPTER_CACHE_MAX_MB"):
        AdapterCache(tmp_path)
