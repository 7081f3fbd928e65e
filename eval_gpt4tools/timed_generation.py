"""Greedy decoding with `EdgeModel.complete`'s exact rule, timed token by token, on a chosen KV cache.

The rule (greedy, `max_new_tokens`, stop at EOS or once the final `AI: ...` line is complete) is the
one of loragen_core/edge_runtime.py: the same `generate` call with the same stopping criterion, so
every benchmark mode decodes alike (a test checks the tokens equal `EdgeModel.complete`'s). What
changes between decoders is only how the KV cache is kept, which does not change the tokens:

    dynamic    transformers' default DynamicCache: grows by torch.cat every step (what EdgeModel uses)
    static     a preallocated StaticCache, written in place: no per-step copy of the whole cache
    compiled   static + the decode step compiled by torch.compile (inductor), one graph per model
               as long as the cache length stays fixed

Time to first token is when `generate` hands the first new token to its streamer; the clock starts
before the prompt is chat-formatted and tokenized, so tokenization and cache preparation count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import StaticCache, StoppingCriteriaList

from loragen_core.compiled_decoding import compile_config
from loragen_core.edge_runtime import FirstTokenClock, RowEnds, greedy_generate
from loragen_core.prefix_cache import rewind

DECODERS = ("dynamic", "static", "compiled")


@dataclass(frozen=True)
class TimedCompletion:
    token_ids: tuple[int, ...]
    text: str
    prompt_tokens: int
    ttft_s: float  # request start → first new token
    latency_s: float  # request start → text decoded

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first, per second after the first: the per-token decode speed."""
        if self.new_tokens < 2 or self.latency_s <= self.ttft_s:
            return None
        return (self.new_tokens - 1) / (self.latency_s - self.ttft_s)


class Decoder:
    """Runs timed generations for one model with one KV-cache strategy.

    For `static`/`compiled`, one StaticCache of `cache_length` tokens is reused across requests (reset
    each time), so the compiled decode step always sees the same shapes and addresses.
    """

    def __init__(self, model, tokenizer, kind: str = "dynamic", cache_length: int | None = None):
        if kind not in DECODERS:
            raise ValueError(f"Unknown decoder {kind!r}; choose one of {DECODERS}.")
        if kind != "dynamic" and not cache_length:
            raise ValueError(f"Decoder {kind!r} needs a cache_length (prompt + max_new_tokens at most).")
        self.model = model
        self.tokenizer = tokenizer
        self.kind = kind
        self.cache_length = cache_length
        self.static_cache = StaticCache(config=model.config, max_cache_len=cache_length) if kind != "dynamic" else None
        self.compile_config = compile_config() if kind == "compiled" else None

    def fresh_cache(self):
        """The cache a request without a prefix starts from (None: generate makes a DynamicCache)."""
        return rewind(self.static_cache) if self.static_cache is not None else None

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, started: float, max_new_tokens: int, cache=None,
                 exact_length: bool = False) -> TimedCompletion:
        """Decode after `input_ids` (the whole prompt, even when `cache` already holds a prefix of it);
        `started` is the request's `time.perf_counter()` start. `exact_length`: write exactly
        `max_new_tokens` tokens (no end rule, EOS suppressed), for speed at equal output length."""
        if self.static_cache is not None and input_ids.shape[1] + max_new_tokens > self.cache_length:
            raise ValueError(f"Prompt of {input_ids.shape[1]} tokens + {max_new_tokens} new exceeds the static cache.")
        prompt_length = input_ids.shape[1]
        clock = FirstTokenClock()
        extra = {"compile_config": self.compile_config} if self.compile_config is not None else {}
        if exact_length:
            extra["min_new_tokens"] = max_new_tokens
        else:
            extra["stopping_criteria"] = StoppingCriteriaList([RowEnds(self.tokenizer, prompt_length, self.tokenizer.eos_token_id)])
        output = greedy_generate(self.model, self.tokenizer, input_ids, torch.ones_like(input_ids), max_new_tokens,
                                 streamer=clock, cache=cache, **extra)
        new = output[0, prompt_length:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finished = time.perf_counter()
        first = clock.first_token_at if clock.first_token_at is not None else finished
        return TimedCompletion(tuple(new.tolist()), text, int(prompt_length), first - started, finished - started)
