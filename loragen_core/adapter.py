"""A generated LoRA adapter: apply it functionally, merge/unmerge it, save and load it as PEFT.

The on-disk form is a standard PEFT LoRA directory (`adapter_config.json` +
`adapter_model.safetensors`), so `peft.PeftModel.from_pretrained(edge, dir)`, vLLM's multi-LoRA and
any other PEFT consumer can load what LoRA-Gen generates.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors.torch import load_file, save_file
from torch import nn

from .atomic import atomic_directory
from .lora_math import apply_lora_functionally, merge_lora, unmerge_lora

PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_CONFIG_FILE = "adapter_config.json"
_PEFT_PREFIX = "base_model.model."


class AdapterFormatError(ValueError):
    """A directory or file does not hold a LoRA adapter LoRA-Gen can read."""


@dataclass
class GeneratedLoRA:
    """LoRA factors keyed by edge module name: A (batch, r, in), B (batch, out, r)."""

    lora_a: dict[str, torch.Tensor]
    lora_b: dict[str, torch.Tensor]
    r: int
    lora_alpha: float

    @property
    def scale(self) -> float:
        return self.lora_alpha / self.r

    @property
    def batch_size(self) -> int:
        return next(iter(self.lora_a.values())).shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the factors (all rows)."""
        return sum(t.nbytes for t in (*self.lora_a.values(), *self.lora_b.values()))

    @property
    def target_kinds(self) -> list[str]:
        return sorted({name.rsplit(".", 1)[-1] for name in self.lora_a})

    def row(self, index: int) -> "GeneratedLoRA":
        """The adapter generated for one system prompt of a batch."""
        return GeneratedLoRA(
            {n: a[index : index + 1] for n, a in self.lora_a.items()},
            {n: b[index : index + 1] for n, b in self.lora_b.items()},
            self.r,
            self.lora_alpha,
        )

    @classmethod
    def stack(cls, adapters: list["GeneratedLoRA"]) -> "GeneratedLoRA":
        """One batch from several adapters of the same shape (row i is adapters[i])."""
        first = adapters[0]
        if any(a.r != first.r or a.lora_alpha != first.lora_alpha or a.lora_a.keys() != first.lora_a.keys() for a in adapters):
            raise ValueError("Only adapters with the same targets, rank and alpha can be stacked.")
        return cls(
            {n: torch.cat([a.lora_a[n] for a in adapters]) for n in first.lora_a},
            {n: torch.cat([a.lora_b[n] for a in adapters]) for n in first.lora_b},
            first.r,
            first.lora_alpha,
        )

    def detach(self) -> "GeneratedLoRA":
        return GeneratedLoRA(
            {n: a.detach().clone() for n, a in self.lora_a.items()},
            {n: b.detach().clone() for n, b in self.lora_b.items()},
            self.r,
            self.lora_alpha,
        )

    def applied_to(self, model: nn.Module, dropout: float = 0.0) -> AbstractContextManager[None]:
        """Functional application (differentiable): `with adapter.applied_to(edge): edge(...)`."""
        return apply_lora_functionally(model, self.lora_a, self.lora_b, self.scale, dropout)

    def merge_into(self, model: nn.Module) -> None:
        """W ← W + scale·B·A in place. Undo with `GeneratedLoRA.unmerge_from(model)`."""
        self._require_single()
        merge_lora(model, {n: a[0] for n, a in self.lora_a.items()}, {n: b[0] for n, b in self.lora_b.items()}, self.scale)

    def fits(self, model: nn.Module) -> bool:
        """Whether every factor pair names a Linear of `model` with matching shapes (an adapter
        trained for another model does not)."""
        modules = dict(model.named_modules())
        for name, a in self.lora_a.items():
            module, b = modules.get(name), self.lora_b[name]
            if not isinstance(module, nn.Linear) or tuple(module.weight.shape) != (b.shape[-2], a.shape[-1]):
                return False
        return True

    @staticmethod
    def unmerge_from(model: nn.Module) -> None:
        """Restore the exact original weights (bit-identical)."""
        unmerge_lora(model)

    def content_hash(self) -> str:
        """sha256 over names, shapes, scale and tensor bytes: equal hashes mean equal adapters."""
        digest = hashlib.sha256(f"r={int(self.r)};alpha={float(self.lora_alpha)}".encode())
        for name in sorted(self.lora_a):
            for tag, tensor in (("A", self.lora_a[name]), ("B", self.lora_b[name])):
                t = tensor.detach().to("cpu", torch.float32).contiguous()
                digest.update(f"{name}:{tag}:{tuple(t.shape)}".encode())
                digest.update(t.numpy().tobytes())
        return digest.hexdigest()

    def save_pretrained(self, directory: str | Path, base_model_name_or_path: str | Path) -> Path:
        """Write a PEFT LoRA directory atomically (a temporary directory renamed into place)."""
        self._require_single()
        directory = Path(directory)
        with atomic_directory(directory) as staging:
            config = LoraConfig(
                r=self.r,
                lora_alpha=self.lora_alpha,
                target_modules=self.target_kinds,
                lora_dropout=0.0,
                bias="none",
                task_type="CAUSAL_LM",
                base_model_name_or_path=str(base_model_name_or_path),
            )
            config.save_pretrained(staging)
            tensors = {}
            for name in self.lora_a:
                tensors[f"{_PEFT_PREFIX}{name}.lora_A.weight"] = self.lora_a[name][0].detach().contiguous().cpu()
                tensors[f"{_PEFT_PREFIX}{name}.lora_B.weight"] = self.lora_b[name][0].detach().contiguous().cpu()
            save_file(tensors, staging / PEFT_WEIGHTS_FILE, metadata={"format": "pt", "loragen_hash": self.content_hash()})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "GeneratedLoRA":
        """Read a PEFT LoRA directory (as written by `save_pretrained` or by peft itself)."""
        directory = Path(directory)
        config_path, weights_path = directory / PEFT_CONFIG_FILE, directory / PEFT_WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise AdapterFormatError(f"{directory} is not a PEFT adapter: it needs {PEFT_CONFIG_FILE} and {PEFT_WEIGHTS_FILE}.")
        try:
            config = json.loads(config_path.read_text())
            tensors = load_file(weights_path)
        except Exception as error:
            raise AdapterFormatError(f"{directory} holds an unreadable adapter: {error}") from error
        if config.get("peft_type") != "LORA":
            raise AdapterFormatError(f"{directory} is a {config.get('peft_type')} adapter, not LORA.")
        lora_a, lora_b = {}, {}
        for key, tensor in tensors.items():
            name = key.removeprefix(_PEFT_PREFIX)
            if name.endswith(".lora_A.weight"):
                lora_a[name.removesuffix(".lora_A.weight")] = tensor.unsqueeze(0)
            elif name.endswith(".lora_B.weight"):
                lora_b[name.removesuffix(".lora_B.weight")] = tensor.unsqueeze(0)
        if not lora_a or lora_a.keys() != lora_b.keys():
            raise AdapterFormatError(f"{directory}: lora_A and lora_B weights do not pair up.")
        return cls(lora_a, lora_b, r=int(config["r"]), lora_alpha=float(config["lora_alpha"]))

    def _require_single(self) -> None:
        if self.batch_size != 1:
            raise ValueError(f"This adapter holds a batch of {self.batch_size}; pick one with .row(i) first.")
