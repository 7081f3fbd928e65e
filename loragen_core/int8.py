"""An int8 copy of the edge model for decoding on a CPU: every nn.Linear (lm_head included), or with
scope "mlp" only the MLPs' Linear layers, becomes a dynamically quantised int8 Linear (per-channel
weight scales, activations quantised per call).

Batch-1 decode on a CPU is memory-bound: each new token reads every weight once. int8 weights are a
quarter of fp32's bytes, and fbgemm / oneDNN run the int8 matmuls with VNNI. Measured on this
project's 2-core Xeon VM (AVX512-VNNI, AMX), 40 greedy tokens, one thread, in one process, while two
training jobs shared the cores (so only the ratios mean anything):
fp32 11.6-12.5 tok/s, this int8 copy 22.6-25.0 tok/s. torchao 0.18 (the successor library) was
slower here: Int8WeightOnlyConfig 4.3-5.2 tok/s, Int8DynamicActivationInt8WeightConfig 9.0-9.8, so
this uses torch's own `quantize_dynamic`, deprecated in favour of torchao but the fast path on CPU.

Accuracy: on the agent grammar's first 100 unseen-tool items SR is fp32 33.0, int8 23.0 and int8-mlp
26.0 (results/README.md, "int8-mlp"); keeping attention and lm_head in fp32 recovers SR_t and SR_args
but not SR, so both formats are opt-in speed options, never the default.

The copy shares every tensor that is not quantised (embeddings, norms) with the fp32 model, so it
adds only the int8 weights (~1 byte per Linear parameter). The fp32 model stays as it was: the exact
path, and the weights the generator's adapters are trained against. Adapters reach the int8 copy
functionally (forward hooks, lora_math.apply_lora_functionally): W_int8 x + scale·B(A x), the LoRA
part in fp32, so no re-quantisation per adapter.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from .int8_weight_only import int8_weight_only_copy

WEIGHT_FORMATS = ("fp32", "int8", "int8-mlp", "w8a16")  # w8a16: int8 weights, bf16 activations (int8_weight_only.py)
# Which Linear layers each int8 format quantises. "int8-mlp" keeps attention and lm_head in fp32:
# the MLPs hold ~60% of SmolLM2-135M's Linear weights, and attention scores and the vocabulary
# logits (where greedy decoding picks a tool name's next token) are where rounding errors matter most.
INT8_SCOPES = {"int8": "all", "int8-mlp": "mlp"}


def is_int8(weights: str) -> bool:
    """Dynamically quantised (activations quantised per call, so per batch)."""
    return weights in INT8_SCOPES


def is_quantised(weights: str) -> bool:
    """Decoded with a quantised copy of the model, to which adapters are attached, not merged."""
    return weights != "fp32"


def decode_copy(model: nn.Module, weights: str) -> nn.Module:
    """The model that decodes in format `weights`: `model` itself (fp32) or a quantised copy of it."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"Unknown edge weights {weights!r}; choose one of {', '.join(WEIGHT_FORMATS)}.")
    if weights == "w8a16":
        return int8_weight_only_copy(model)
    return int8_copy(model, INT8_SCOPES[weights]) if is_int8(weights) else model


def _quantised_linears(model: nn.Module, scope: str) -> list[str]:
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if scope == "all":
        return names
    if scope == "mlp":
        return [name for name in names if ".mlp." in f".{name}."]
    raise ValueError(f"Unknown int8 scope {scope!r}; choose all or mlp.")


def int8_copy(model: nn.Module, scope: str = "all") -> nn.Module:
    """A decode-only int8 copy of `model` with the Linear layers of `scope` ("all" or "mlp")
    quantised; `model` itself is not changed."""
    names = _quantised_linears(model, scope)
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear layers in int8 scope {scope!r}.")
    # deepcopy with every parameter and buffer pre-entered in the memo: the module tree is copied,
    # the tensors are shared; quantize_dynamic then swaps the copy's Linear modules only.
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    skeleton = copy.deepcopy(model, shared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that torch.ao.quantization moves to torchao (see above)
        quantized = quantize_dynamic(skeleton, dict.fromkeys(names, per_channel_dynamic_qconfig), dtype=torch.qint8, inplace=True)
    quantized.eval()
    return quantized


def int8_nbytes(model: nn.Module) -> int:
    """Bytes of the int8 weights a copy holds (what it adds to the fp32 model)."""
    total = 0
    for module in model.modules():
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            weight, bias = module._packed_params._weight_bias()
            total += weight.int_repr().numel() + (bias.numel() * bias.element_size() if bias is not None else 0)
    return total
