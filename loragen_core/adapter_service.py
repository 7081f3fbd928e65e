"""System prompt → adapter, with the content-addressed cache in front of the generator."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .adapter import PEFT_WEIGHTS_FILE, GeneratedLoRA
from .adapter_cache import AdapterCache, cache_key
from .checkpoint import FULL_PROMPT_LORA_CHECKPOINT, CheckpointError, generator_fingerprint
from .generator import LoRAGenerator
from .model_loading import loragen_home


@dataclass(frozen=True)
class AdapterResult:
    adapter: GeneratedLoRA
    cache_hit: bool
    seconds: float  # wall time to obtain the adapter (cache read, or cloud LM + routing)
    adapter_hash: str


class AdapterService:
    """Thread-safe: one generation at a time per service (the cloud LM is one shared module)."""

    def __init__(self, generator: LoRAGenerator, cache_dir: str | Path | None = None, use_cache: bool = True):
        self.generator = generator
        self.cache = AdapterCache(cache_dir or loragen_home() / "adapters") if use_cache else None
        self.fingerprint = generator_fingerprint(generator)
        self.generations = 0  # how many times the cloud LM actually ran; cache hits do not count
        self._lock = threading.Lock()

    def adapter_for(self, system_prompt: str) -> AdapterResult:
        start = time.perf_counter()
        key = cache_key(self.fingerprint, system_prompt)
        with self._lock:
            adapter = self.cache.get(key) if self.cache else None
            hit = adapter is not None
            if adapter is None:
                adapter = self.generator.generate(system_prompt)
                self.generations += 1
                if self.cache:
                    self.cache.put(key, adapter)
        return AdapterResult(adapter, hit, time.perf_counter() - start, adapter.content_hash())


def full_prompt_lora_shipped() -> bool:
    return (FULL_PROMPT_LORA_CHECKPOINT / PEFT_WEIGHTS_FILE).is_file()


def load_full_prompt_lora() -> AdapterResult:
    """The shipped full-prompt LoRA (the `lora_with_tools` baseline: a peft LoRA trained on the same
    data and steps as the generator, with the whole tool list in the prompt), as an adapter that
    `EdgeModel.specialize` merges. The comparison a user should see: the same edge model, trained,
    reading every tool definition, against LoRA-Gen reading none."""
    started = time.perf_counter()
    if not full_prompt_lora_shipped():
        raise CheckpointError(
            f"{FULL_PROMPT_LORA_CHECKPOINT} holds no {PEFT_WEIGHTS_FILE}: this checkout lacks the shipped full-prompt LoRA. "
            "Train one with `python -m loragen_core.train --method lora --prompt full ...` and pass its final/ directory."
        )
    adapter = GeneratedLoRA.from_pretrained(FULL_PROMPT_LORA_CHECKPOINT)
    return AdapterResult(adapter, True, time.perf_counter() - started, adapter.content_hash())
