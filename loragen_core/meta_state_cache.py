"""Meta states per system prompt, computed once: the cpu recipe's answer to the cloud LM's cost.

While the cloud LM and the meta tokens are frozen, a prompt's meta states (the cloud's last hidden
states at the L meta tokens) never change, so reading the prompt again every step would be waste.
The cache lives in memory and in the run directory (`meta_states.pt`), keyed by a hash of the prompt
and tied to a fingerprint of what computes the states; a stale or damaged file is recomputed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from tqdm import tqdm

from .atomic import read_fingerprinted, write_fingerprinted
from .generator import LoRAGenerator


def prompt_key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()


class MetaStateCache:
    def __init__(self, generator: LoRAGenerator, path: Path | None = None, batch_size: int = 4):
        if not generator.reads_prompts_with_frozen_cloud:
            raise ValueError("Meta states can only be cached while the cloud LoRA and the meta tokens are frozen.")
        self.generator = generator
        self.path = path
        self.batch_size = batch_size
        self.fingerprint = self._fingerprint()
        self.states: dict[str, torch.Tensor] = self._read()

    def _fingerprint(self) -> str:
        digest = hashlib.sha256(f"{self.generator.config.cloud_model}|{self.generator.config.max_system_prompt_tokens}".encode())
        digest.update(self.generator.meta_tokens.detach().cpu().float().numpy().tobytes())
        for name, tensor in sorted(self.generator.cloud.state_dict().items()):
            if "lora_" in name:
                digest.update(tensor.detach().cpu().float().numpy().tobytes())
        return digest.hexdigest()

    def _read(self) -> dict[str, torch.Tensor]:
        return dict(read_fingerprinted(self.path, self.fingerprint) or {})

    def _write(self) -> None:
        write_fingerprinted(self.path, self.fingerprint, self.states)

    @torch.no_grad()
    def fill(self, prompts: list[str], show_progress: bool = True) -> None:
        missing = [p for p in dict.fromkeys(prompts) if prompt_key(p) not in self.states]
        if not missing:
            return
        was_training = self.generator.training
        self.generator.eval()  # no cloud-LoRA dropout: the cached state is the deterministic one
        try:
            batches = range(0, len(missing), self.batch_size)
            for start in tqdm(batches, desc="cloud LM reads system prompts", unit="batch", disable=not show_progress):
                chunk = missing[start : start + self.batch_size]
                for prompt, state in zip(chunk, self.generator.meta_states(chunk).cpu()):
                    self.states[prompt_key(prompt)] = state.clone()
                if (start // self.batch_size) % 25 == 24:
                    self._write()  # an interrupted fill keeps what it computed
        finally:
            self.generator.train(was_training)
        self._write()

    def stack(self, prompts: list[str]) -> torch.Tensor:
        device = self.generator.meta_tokens.device
        missing = [p for p in prompts if prompt_key(p) not in self.states]
        if missing:
            self.fill(missing, show_progress=False)
        return torch.stack([self.states[prompt_key(p)] for p in prompts]).to(device)
