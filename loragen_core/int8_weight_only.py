"""A weight-only int8 copy of the edge model for batch-1 decoding on a CPU: int8 weights, bf16
activations.

Every nn.Linear (lm_head included) keeps its weight as int8 with one bf16 scale per output channel
(symmetric, round to nearest), and multiplies with `torch.ops.aten._weight_int8pack_mm`, the CPU
kernel behind gpt-fast's and torchao's int8 weight-only path. The rest of the model (embeddings,
norms, attention) runs in bf16. Unlike loragen_core/int8.py's dynamic quantisation, activations are
never quantised, so a row's numbers do not depend on the other rows of a batch, and the rounding is
only the weights' (per-channel int8) and the activations' (bf16).

Why: batch-1 decode reads every weight once per token. On this project's 2-core Xeon (AMX, AVX512)
the fp32 matmuls of one token (SmolLM2-135M, 30 layers and lm_head) take 27.9 ms at 19 GB/s, a
ceiling of 36 tokens/s before anything else runs; the same matmuls with int8 weights and bf16
activations take 15.8 ms. bf16 weights alone are slower here (36 ms: the bf16 GEMV kernel reaches
7.5 GB/s), and int8 weights with fp32 activations take a slow path (99 ms). In eager mode the whole
model gains less (decode 1.2-1.45x fp32's), as the ~400 small kernels of a step cost their dispatch;
with the compiled decoder (compiled_decoding.py) the step's overhead goes and the int8 weights pay
(results/README.md, "Serving benchmark", gives the measured speed and SR). Prompts prefill through the
fp32 weights (see `Int8WeightOnlyLinear`). An opt-in speed option, never the default.

The one attached adapter (adapter_slots.py) is quantised into the int8 weights for decode steps
(`requantize`, ~100-170 ms per adapter) and added in fp32 from fixed slots to prompts; a batch carries
one adapter per row as forward hooks (lora_math.apply_lora_functionally), the LoRA part in fp32. The
fp32 model is not changed: it stays the exact path.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import torch
from torch import nn

ACTIVATION_DTYPE = torch.bfloat16


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, scale per output row) with weight ≈ int8 · scale[:, None], symmetric, round to nearest."""
    weight = weight.detach().to(torch.float32)
    scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    quantized = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return quantized, scales


class Int8WeightOnlyLinear(nn.Module):
    """y = x Wᵀ + b with W held as int8 per-channel; x is cast to bf16, y is bf16.

    `prefill_weight` (optional): the fp32 weight this layer was quantised from, shared, not copied.
    Inputs of more than one position per row (a prompt's prefill) then multiply with it in fp32:
    `_weight_int8pack_mm` is a one-row (GEMV) kernel, slower than fp32 GEMM on a whole prompt
    (measured: the full prompt's TTFT 1.68 s against fp32's 1.00 s). Decode steps (one position per
    row, any batch size) use the int8 weight."""

    def __init__(self, linear: nn.Linear, prefill_weight: torch.Tensor | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        quantized, scales = quantize_per_channel(linear.weight)
        self.register_buffer("weight_int8", quantized.contiguous())
        self.register_buffer("scales", scales.to(ACTIVATION_DTYPE))
        bias = linear.bias
        self.register_buffer("bias", bias.detach().to(ACTIVATION_DTYPE) if bias is not None else None)
        # A plain attribute (not a parameter or buffer): `.to()` and state_dict leave it alone, so it
        # stays the fp32 model's own tensor.
        self.prefill_weight = prefill_weight.detach() if prefill_weight is not None else None

    # Set (on every layer of a copy, `decoding_positions`) while a forward computes positions that decoding
    # wrote, several at once (grammar fast-forward): they take the int8 path a one-position step takes.
    decoding = False

    def is_prompt(self, x: torch.Tensor) -> bool:
        """Whether `x` is a prompt's prefill (several positions per row, not written by decoding)."""
        return x.dim() == 3 and x.shape[1] > 1 and not self.decoding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prefill_weight is not None and self.is_prompt(x):
            bias = self.bias.to(torch.float32) if self.bias is not None else None
            return nn.functional.linear(x.to(torch.float32), self.prefill_weight, bias).to(ACTIVATION_DTYPE)
        flat = x.reshape(-1, self.in_features).to(ACTIVATION_DTYPE).contiguous()
        y = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    @torch.no_grad()
    def requantize(self, delta: torch.Tensor | None = None) -> None:
        """Quantise the int8 weight again from the fp32 one plus `delta` (an adapter's scale·B·A), in
        place: the same tensors, so a compiled graph goes on reading them. `delta=None` restores the
        original int8 weight bit for bit (the same fp32 weight through the same rounding)."""
        if self.prefill_weight is None:
            raise ValueError("This int8 layer keeps no fp32 weight to quantise from (built without prefill_weight).")
        weight = self.prefill_weight if delta is None else self.prefill_weight + delta
        quantized, scales = quantize_per_channel(weight)
        self.weight_int8.copy_(quantized)
        self.scales.copy_(scales.to(ACTIVATION_DTYPE))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, bf16 activations"


def int8_weight_only_copy(model: nn.Module) -> nn.Module:
    """A decode-only copy of `model`: Linear layers int8 weight-only, everything else bf16.
    `model` itself is not changed (the copy holds its own bf16 and int8 tensors); prompts multiply
    with `model`'s own fp32 weights (shared, so `model` must stay unchanged)."""
    if model.device.type != "cpu":
        raise ValueError(f"int8 weight-only decoding is a CPU path; the model is on {model.device}: use fp32.")
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear layers to quantise.")
    skeleton = copy.deepcopy(model)  # a whole copy for a moment: the fp32 model must not change, tied weights stay tied
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = skeleton.get_submodule(parent_name) if parent_name else skeleton
        setattr(parent, child, Int8WeightOnlyLinear(getattr(parent, child), model.get_submodule(name).weight))
    skeleton.to(ACTIVATION_DTYPE)  # what is left (embeddings, norms); int8 buffers are not floating, so they stay
    skeleton.eval()
    return skeleton


@contextlib.contextmanager
def decoding_positions(model: nn.Module) -> Iterator[None]:
    """Within the block, `model`'s int8 weight-only layers treat several positions per row as decode
    steps (int8 weights holding the attached adapter), not as a prompt (fp32 weights): the positions
    grammar fast-forward writes then get the numbers one-position steps would give them."""
    layers = [m for m in model.modules() if isinstance(m, Int8WeightOnlyLinear)]
    for layer in layers:
        layer.decoding = True
    try:
        yield
    finally:
        for layer in layers:
            layer.decoding = False


def int8_weight_only_nbytes(model: nn.Module) -> int:
    """Bytes the copy holds: int8 weights and their scales, and every other tensor (bf16)."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
