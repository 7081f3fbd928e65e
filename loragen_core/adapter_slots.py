"""One adapter attached to a quantised decode copy through fixed, reusable slots.

The int8 and w8a16 copies cannot take a merge (their weights are quantised), so an adapter reaches
them as a forward hook per LoRA target: y = W_q x + scale·B(A x). `apply_lora_functionally` makes new
hook closures for every adapter, which is right for training and per-row batches, but a compiled
decode step (torch.compile) guards on the hooks: each new adapter would be a new graph, ~30 s of
compilation, and after eight the compiler gives up.

Slots keep what the compiled graph sees fixed: each target module gets two tensors (A, and scale·B)
allocated once, and one module-level hook function. Loading another adapter copies its factors into
the same tensors in place (same shapes, same addresses), so the graph compiled for the first adapter
serves every later one. `clear()` zeroes the slots and leaves the hooks in place: W x + 0 is exactly
W x, and a compiled graph never sees its hooks come and go (by default the compiler does not even
check, torch._dynamo.config.skip_nnmodule_hook_guards: a graph compiled without the hooks would go on
ignoring them; compiled_decoding.py turns that check on for the first installation).

The LoRA part is computed in fp32, as `apply_lora_functionally` does, so the numbers equal the hook
path up to where the scale is applied (folded into B here).

On the w8a16 copy (`Int8WeightOnlyLinear`) the adapter also goes into the int8 weights: each target's
int8 weight is quantised again from its fp32 weight + scale·B·A (in place, ~100 ms for SmolLM2's 90
MLP matrices; `clear` quantises the fp32 weight alone again, bit-exact). Decode steps (one position
per row) then skip the LoRA matmuls, which were ~20% of a compiled step (180 small GEMVs, profiled);
prompts, which prefill through the fp32 weights, still add the LoRA from the slots. The adapter's
change to each weight is then rounded with it to the int8 grid: the SR this costs is measured
(results/README.md).
"""

from __future__ import annotations

import torch
from torch import nn

from .adapter import GeneratedLoRA
from .int8_weight_only import Int8WeightOnlyLinear

_A, _B = "_loragen_slot_a", "_loragen_slot_b"


def _slot_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    x = inputs[0]
    if isinstance(module, Int8WeightOnlyLinear) and not module.is_prompt(x):
        return output  # decode steps: the int8 weight holds the adapter already (requantised)
    a, b = getattr(module, _A), getattr(module, _B)
    delta = torch.matmul(torch.matmul(x.to(a.dtype), a.t()), b.t())
    return output + delta.to(output.dtype)


class AdapterSlots:
    """Attach one adapter at a time to `model` (a quantised decode copy) without changing the
    module tree or the tensors a compiled graph reads."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._handles: list = []

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    @torch.no_grad()
    def load(self, adapter: GeneratedLoRA) -> None:
        """Attach `adapter` (replacing the attached one), copying its factors into the slots."""
        adapter._require_single()
        modules = dict(self.model.named_modules())
        missing = sorted(set(adapter.lora_a) - set(modules))
        if missing:
            raise ValueError(f"The adapter targets modules this model lacks: {', '.join(missing[:3])}.")
        previous = self._targets()
        if previous and set(adapter.lora_a) != set(previous):
            self.clear()  # another target set: restore the old targets' weights, then start from empty slots
            for handle in self._handles:
                handle.remove()
            self._handles = []
            for name in previous:
                delattr(modules[name], _A)
                delattr(modules[name], _B)
        for name, a in adapter.lora_a.items():
            module = modules[name]
            a = a[0].to(torch.float32)
            b = adapter.lora_b[name][0].to(torch.float32) * adapter.scale
            slot_a, slot_b = getattr(module, _A, None), getattr(module, _B, None)
            if slot_a is None or slot_a.shape != a.shape or slot_b.shape != b.shape:
                setattr(module, _A, a.clone())  # a new rank: new tensors (and, once, a new graph)
                setattr(module, _B, b.clone())
            else:
                slot_a.copy_(a)
                slot_b.copy_(b)
            if isinstance(module, Int8WeightOnlyLinear):
                module.requantize(torch.mm(b, a))
        if not self.installed:
            self._handles = [modules[name].register_forward_hook(_slot_hook) for name in adapter.lora_a]

    @torch.no_grad()
    def clear(self) -> None:
        """Detach: zero the slots (and restore requantised weights), so the model computes exactly
        its own weights' output."""
        modules = dict(self.model.named_modules())
        for name in self._targets():
            getattr(modules[name], _A).zero_()
            getattr(modules[name], _B).zero_()
            if isinstance(modules[name], Int8WeightOnlyLinear):
                modules[name].requantize()

    def _targets(self) -> list[str]:
        return [name for name, module in self.model.named_modules() if hasattr(module, _A)]
