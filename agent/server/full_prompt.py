"""The competitor the load test measures LoRA-Gen against: the full prompt with a prefix cache.

A prefix-caching server (vLLM, SGLang) keeps each system prompt's KV cache and prefills only the
rest of a request. `PrefixCachedFullPromptRuntime` serves the same OpenAI requests that way: the
tool definitions go back *into* the context (`tools.gpt4tools_prompt.full_prompt`), no adapter is
made, and concurrent requests are micro-batched exactly as `BatchingRuntime` batches LoRA-Gen's, each
row continuing from its own tenant's cached prefix (`loragen_core.prefix_cache`). The weights are
the edge model's as they are; decoding speed does not depend on their values, only on the lengths
(the load test reports the tokens each server wrote next to its throughput).

It serves what the load test sends (non-streamed tool-call requests); the rest is refused.
"""

from __future__ import annotations

from typing import Any

from loragen_core.prefix_cache import PrefixCacheStore, cache_nbytes, complete_batch_from_prefixes
from loragen_core.edge_runtime import Completion
from loragen_core.tool_prior import ToolPrior
from tools.gpt4tools_prompt import full_prompt

from ..runtime import LoRAGenRuntime, RuntimeCompletion
from .batching import BATCH_WINDOW_SECONDS, MAX_BATCH, BatchingRuntime, _Job


class PrefixCachedFullPromptRuntime(BatchingRuntime):
    """Full GPT4Tools prompts, each system prompt's KV cached once, decoded in micro-batches."""

    def __init__(self, runtime: LoRAGenRuntime, window_seconds: float = BATCH_WINDOW_SECONDS, max_batch: int = MAX_BATCH):
        self.store = PrefixCacheStore(runtime.edge.model)
        super().__init__(runtime, window_seconds, max_batch)

    @property
    def cached_prefix_bytes(self) -> int:
        """Bytes of KV the cached system prompts hold (the per-tenant memory of this server)."""
        return sum(cache_nbytes(cache) for cache in self.store.caches.values())

    def _complete_unbatched(self, *args: Any, **kwargs: Any) -> RuntimeCompletion:
        raise ValueError("The prefix-cached baseline serves non-streamed tool-call requests only.")

    def _job(self, prompt: str, system_prompt: str | None, max_new_tokens: int, stop: tuple[str, ...], grammar: str | None,
             tool_prior: ToolPrior | None = None) -> _Job:
        if system_prompt is None:
            raise ValueError("The prefix-cached baseline serves tool-call requests only.")
        prompt = full_prompt(system_prompt, prompt)  # the tool definitions back in the context, no adapter
        self.runtime.check_length(prompt)
        return _Job(prompt, None, max_new_tokens, stop, grammar, tool_prior)

    def _decode_together(self, group: list[_Job], grammars: list[str | None]) -> list[Completion]:
        edge = self.runtime.edge
        with edge.lock:
            if edge.active_adapter is not None:  # the base weights, as the in-context baseline reads them
                edge.reset()
            return complete_batch_from_prefixes(edge, self.store, [job.prompt for job in group], group[0].max_new_tokens, grammars,
                                                tool_priors=[job.tool_prior for job in group])

    def _decode_alone(self, job: _Job) -> RuntimeCompletion:  # a batch of one continues from its prefix too
        return self._decode([job])[0]
