"""The adapter cache: hits skip the cloud LM; damaged entries are regenerated, never trusted."""

from __future__ import annotations

import pytest

from loragen_core import AdapterService, LoRAGenConfig, build_generator

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
