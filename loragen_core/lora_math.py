"""The LoRA arithmetic LoRA-Gen needs on the edge model: find the targets, apply, merge, unmerge.

    x ──► W ────────────────► (+) ──► y        W: frozen edge FFN projection (out × in)
     └──► dropout ─► A ─► B ─► ×scale ┘        A: r × in, B: out × r, scale = lora_alpha / r

Training applies the generated LoRA *functionally* through forward hooks, one (A, B) per batch row,
so gradients flow back into the generator. Inference merges W' = W + scale·B·A into the weights, so
the specialised model has exactly the original architecture and cost.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import torch
from safetensors import safe_open
from torch import nn

_LAYER_INDEX = re.compile(r"\.(\d+)\.")
# Unmerging restores each weight from its pristine original, bit for bit (W + d - d is not exact in
# floating point). The originals are kept for the model's lifetime, so merges and restores in any
# order never copy them again; where the model was loaded from safetensors they are read-only views
# of the memory-mapped file (safetensors' `safe_open`): page cache, shared and reclaimable, no
# anonymous copy. A clone is kept only for a weight the file does not hold exactly.
_PRISTINE_ATTR = "_loragen_pristine_weights"
_MERGED_ATTR = "_loragen_merged_modules"  # the modules whose weights hold a merged adapter now
_MERGE_BLOCK_BYTES = 1 << 18  # well inside a core's L2 cache


@dataclass(frozen=True)
class LoRATarget:
    module_name: str  # e.g. "model.layers.3.mlp.up_proj"
    layer: int
    kind: str  # one of the configured FFN projection names
    in_features: int
    out_features: int


def find_lora_targets(model: nn.Module, module_names: tuple[str, ...]) -> list[LoRATarget]:
    """Every Linear whose last name is one of `module_names`, ordered by (layer, kind)."""
    targets = []
    for name, module in model.named_modules():
        kind = name.rsplit(".", 1)[-1]
        if kind not in module_names or not isinstance(module, nn.Linear):
            continue
        match = _LAYER_INDEX.search(name)
        if match is None:
            raise ValueError(f"Cannot tell which layer {name!r} belongs to (no '.<index>.' in its name).")
        targets.append(LoRATarget(name, int(match.group(1)), kind, module.in_features, module.out_features))
    if not targets:
        raise ValueError(f"The edge model has no Linear modules named {module_names}; set ffn_module_names.")
    targets.sort(key=lambda t: (t.layer, module_names.index(t.kind)))
    layers = sorted({t.layer for t in targets})
    if layers != list(range(len(layers))) or len(targets) != len(layers) * len(module_names):
        raise ValueError(f"Expected each of layers 0..{len(layers) - 1} to have all of {module_names}.")
    return targets


@contextlib.contextmanager
def apply_lora_functionally(
    model: nn.Module,
    lora_a: Mapping[str, torch.Tensor],
    lora_b: Mapping[str, torch.Tensor],
    scale: float,
    dropout: float = 0.0,
) -> Iterator[None]:
    """Within the block, module `name` computes W x + scale·B[b](A[b] x) for batch row b.

    `lora_a[name]` is (batch, r, in) and `lora_b[name]` is (batch, out, r); batch may be 1 to share
    one adapter across all rows. Dropout applies to the LoRA input only, and only in training mode.
    """
    modules = dict(model.named_modules())
    handles = []

    def make_hook(a: torch.Tensor, b: torch.Tensor):
        a_t, b_t = a.transpose(-1, -2), b.transpose(-1, -2)  # views: (batch, in, r), (batch, r, out)

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            x = inputs[0]
            if dropout and module.training:
                x = nn.functional.dropout(x, p=dropout, training=True)
            # x: (batch, seq, in) → (batch, seq, r) → (batch, seq, out); a batch of one adapter broadcasts.
            # Batched matmuls rather than einsum: this runs on 90 modules per decoded token, where
            # einsum's per-call parsing was a measurable share of a batch-1 step.
            delta = torch.matmul(torch.matmul(x.to(a.dtype), a_t), b_t)
            return output.add(delta.to(output.dtype), alpha=scale)

        return hook

    try:
        for name in lora_a:
            handles.append(modules[name].register_forward_hook(make_hook(lora_a[name], lora_b[name])))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def merge_lora(
    model: nn.Module, lora_a: Mapping[str, torch.Tensor], lora_b: Mapping[str, torch.Tensor], scale: float
) -> None:
    """W ← W_original + scale·B·A for each named module (A: r × in, B: out × r)."""
    modules = dict(model.named_modules())
    pristine = pristine_weights(model)
    merged: set[str] = getattr(model, _MERGED_ATTR, set())
    for name in merged - lora_a.keys():  # a previous adapter touched modules this one does not
        modules[name].weight.copy_(pristine[name])
    for name in lora_a:
        weight = modules[name].weight
        if name not in pristine:  # the weight holds its original now: never merged, or restored
            pristine[name] = _original_of(model, name, weight)
        a, b = lora_a[name].to(weight.device), lora_b[name].to(weight.device)
        if weight.dtype == a.dtype == b.dtype == torch.float32:
            _addmm_by_row_blocks(pristine[name], b, a, scale, out=weight.data)
        else:  # low-precision weights: accumulate in float32, round once
            delta = b.to(torch.float32) @ a.to(torch.float32)
            weight.copy_((pristine[name].to(torch.float32) + scale * delta).to(weight.dtype))
    setattr(model, _MERGED_ATTR, set(lora_a))


def pristine_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The originals of the weights merging has touched, by module name (kept for the model's life)."""
    if getattr(model, _PRISTINE_ATTR, None) is None:
        setattr(model, _PRISTINE_ATTR, {})
    return getattr(model, _PRISTINE_ATTR)


def _original_of(model: nn.Module, module_name: str, weight: torch.Tensor) -> torch.Tensor:
    """`weight`'s original: the memory-mapped tensor of the file the model was loaded from when it
    is bit-identical (checked once), else a clone."""
    if weight.device.type != "cpu":  # the memory-mapped file lives in host memory: keep a copy beside the weight
        return weight.detach().clone()
    mapped = _mapped_tensor(model, module_name + ".weight")
    if mapped is not None and mapped.dtype == weight.dtype and mapped.shape == weight.shape and torch.equal(mapped, weight):
        return mapped
    return weight.detach().clone()


def _mapped_tensor(model: nn.Module, tensor_name: str) -> torch.Tensor | None:
    source = getattr(model, "name_or_path", None)
    if not source or weight_files(source) is None:
        return None
    for path in weight_files(source):
        handle = _open_weight_file(path)
        if tensor_name in handle.keys():
            return handle.get_tensor(tensor_name)
    return None


@functools.cache
def weight_files(source: str) -> tuple[str, ...] | None:
    """The safetensors files of a local model directory (None: not a directory with any)."""
    directory = Path(source)
    files = tuple(str(p) for p in sorted(directory.glob("*.safetensors"))) if directory.is_dir() else ()
    return files or None


@functools.cache
def _open_weight_file(path: str):
    return safe_open(path, framework="pt")


def _addmm_by_row_blocks(base: torch.Tensor, b: torch.Tensor, a: torch.Tensor, scale: float, out: torch.Tensor) -> None:
    """out ← base + scale·b·a without temporaries. Merging is memory-bound (SmolLM2: 90 matrices,
    318 MB read and written); one fused GEMM per block of rows small enough to stay in cache reads
    the pristine weight and writes the merged one once each, instead of materialising B·A and a sum
    (the former merge: ~1.5x slower) or re-reading a whole matrix after copying it (~1.2x)."""
    rows = max(1, _MERGE_BLOCK_BYTES // (out.shape[1] * out.element_size()))
    for start in range(0, out.shape[0], rows):
        block = slice(start, start + rows)
        torch.addmm(base[block], b[block], a, alpha=scale, out=out[block])


@torch.no_grad()
def unmerge_lora(model: nn.Module) -> None:
    """Restore every merged weight to its exact original tensor."""
    modules = dict(model.named_modules())
    pristine = pristine_weights(model)
    for name in getattr(model, _MERGED_ATTR, set()):
        modules[name].weight.copy_(pristine[name])
    setattr(model, _MERGED_ATTR, set())
