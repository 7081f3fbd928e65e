"""The compiled decode step for batch-1 generation: a static KV cache and torch.compile (inductor).

A batch-1 decode step on a CPU runs ~400 small kernels (SmolLM2-135M: 30 layers); in eager mode the
Python and dispatch overhead between them is a large share of each token, and transformers' default
DynamicCache also grows by a copy every step. With a preallocated StaticCache the step has fixed
shapes, so transformers' `generate` can run it through one compiled graph (fused kernels, no
per-op dispatch). Prefill stays eager.

The graph is specialised to the cache length, so caches come in a few length buckets (powers of two
from `MIN_BUCKET`): a prompt plus its token budget takes the smallest bucket it fits, and each bucket
is compiled once, on its first use (~30 s on a 2-core CPU). Attention runs over the whole bucket
(masked), which is why the buckets are not all the model's maximum length.

Not exact: fused kernels round differently from eager ones, so greedy tokens can differ from the
dynamic path's (results/README.md gives the measured agreement and SR). Opt-in (`decoder="compiled"`
in `EdgeModel`, `--edge-decoder compiled`); the dynamic eager path stays the default and the exact one.
"""

from __future__ import annotations

import shutil

import torch
from transformers import CompileConfig, StaticCache

from .prefix_cache import rewind

EDGE_DECODERS = ("dynamic", "compiled", "fast-forward")  # fast-forward: grammar-forced tokens in one step (fast_forward.py)
# How the served runtime (agent, UI, server, LangChain) decodes one request: fast-forward gave the same
# outputs as step by step ("dynamic", the exact reference) on 100 served test items at 1.9x the tokens/s.
SERVED_EDGE_DECODER = "fast-forward"
MIN_BUCKET = 256


def compile_config() -> CompileConfig:
    """transformers' compile settings for the decode step, also on CPU (it compiles only on
    accelerators unless told).

    Also makes the compiler check forward hooks (process-wide): by default it assumes they never
    change, so a graph compiled before an adapter's hooks were installed would silently decode
    without the adapter (seen: the first token, from the eager prefill, followed the adapter, the rest
    did not). Adapter slots install their hooks once and keep them, so this costs one recompile."""
    torch._dynamo.config.skip_nnmodule_hook_guards = False
    config = CompileConfig(mode="default", fullgraph=False, dynamic=False)
    config._compile_all_devices = True
    return config


def bucket_length(tokens: int, max_length: int | None) -> int | None:
    """The smallest power-of-two cache length ≥ `tokens` (at least MIN_BUCKET), or None when it
    would exceed the model's `max_length`."""
    length = MIN_BUCKET
    while length < tokens:
        length *= 2
    return None if max_length is not None and length > max_length else length


class StaticCaches:
    """One StaticCache per length bucket for one model, reused (rewound) across requests so the
    compiled step always sees the same shapes and addresses."""

    def __init__(self, model):
        if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
            raise ValueError("The compiled decoder needs a C++ compiler for torch.compile's CPU backend (inductor): "
                             "install g++ (e.g. `apt install g++`), or decode with the default dynamic decoder.")
        self.model = model
        self.max_length = getattr(model.config, "max_position_embeddings", None)
        self.caches: dict[int, StaticCache] = {}
        self.config = compile_config()

    def generate_options(self, tokens: int) -> dict:
        """`generate` keyword arguments for a request of `tokens` (prompt + budget): a rewound static
        cache and the compile config, or {} (the dynamic path) when no bucket is long enough."""
        length = bucket_length(tokens, self.max_length)
        if length is None:
            return {}
        if length not in self.caches:
            self.caches[length] = StaticCache(config=self.model.config, max_cache_len=length)
        return {"cache": rewind(self.caches[length]), "compile_config": self.config}
