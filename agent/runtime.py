"""One process-wide LoRA-Gen runtime: generator, adapter service and edge model, loaded once.

    system prompt ─► AdapterService (memory → disk cache → cloud LM) ─► adapter ─┐
    edge prompt ─────────────────────────────────────────► EdgeModel (merged) ◄─┘ ─► completion

Every agent and chat model in a process shares one runtime, so the models are loaded once. Agents
with different tool sets need different adapters in the same edge weights: `complete` takes the
edge model's lock, merges the caller's adapter if another one is merged (or restores the base weights
for the in-context baseline), and decodes before releasing it. Adapter generation happens before the
lock is taken, so one agent's cloud-LM pass does not stall another agent's decoding.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loragen_core import (
    AdapterResult, AdapterService, CheckpointError, LoRAGenerator, load_causal_lm, load_default_generator, load_full_prompt_lora, load_generator,
)
from loragen_core.compiled_decoding import SERVED_EDGE_DECODER
from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS, EdgeModel
from loragen_core.tool_prior import ToolPrior

log = logging.getLogger(__name__)

# Adapters kept in memory by system prompt (SmolLM2: ~12 MB each); older ones come from the disk cache.
MEMORY_CACHE_SIZE = 8
# The longest edge prompt accepted. The full GPT4Tools prompt (the in-context baseline) is ~700 tokens;
# a loragen edge prompt ~130. SmolLM2 has 8,192 positions, but decoding 2,048 prompt tokens on this CPU
# already takes seconds, and one request must not hold the shared edge model for minutes.
MAX_PROMPT_TOKENS = 2048
# Tokens are never fewer than characters / 8 in practice; longer text is refused before tokenizing it.
CHARS_PER_TOKEN_BOUND = 8


class RequestTooLongError(ValueError):
    """A prompt longer than the runtime accepts; the message says by how much."""


@dataclass(frozen=True)
class RuntimeCompletion:
    text: str
    prompt_tokens: int  # edge-model prompt tokens, chat template included
    new_tokens: int
    seconds: float  # decoding only
    adapter_hash: str | None  # None: base weights (in-context baseline)
    adapter_cache_hit: bool | None  # True: memory or disk cache, no cloud-LM pass
    adapter_seconds: float | None  # time to obtain the adapter (generation or cache read)
    merge_seconds: float | None  # 0.0 when the adapter was already merged


class LoRAGenRuntime:
    """Generator + adapter service + edge model, shared by every agent of a process. Thread-safe."""

    _default: "LoRAGenRuntime | None" = None
    _default_lock = threading.Lock()

    def __init__(
        self,
        generator: LoRAGenerator,
        edge: EdgeModel | None = None,
        adapter_cache_dir: str | Path | None = None,
        use_disk_cache: bool = True,
        trained: bool = True,
        max_prompt_tokens: int = MAX_PROMPT_TOKENS,
        memory_cache_size: int = MEMORY_CACHE_SIZE,
    ):
        self.generator = generator
        self.edge = edge or EdgeModel(load_causal_lm(generator.config.edge_model), decoder=SERVED_EDGE_DECODER)
        self.service = AdapterService(generator, cache_dir=adapter_cache_dir, use_cache=use_disk_cache)
        self.trained = trained  # False: a fresh generator whose adapters do not teach anything yet
        self.max_prompt_tokens = max_prompt_tokens
        self.memory_cache_size = memory_cache_size  # a server with more tenants than this reads adapters from disk
        self.adapter_requests = 0
        self.merges = 0
        self._memory: OrderedDict[str, AdapterResult] = OrderedDict()
        self._memory_lock = threading.Lock()
        self._generation_lock = threading.Lock()
        self._full_prompt_lora: AdapterResult | None = None

    @classmethod
    def default(cls) -> "LoRAGenRuntime":
        """The process-wide runtime on the shipped generator and the embedded default model."""
        with cls._default_lock:
            if cls._default is None:
                generator, trained = load_default_generator()
                cls._default = cls(generator, trained=trained)
            return cls._default

    @classmethod
    def from_checkpoint(cls, generator_dir: str | Path | None, edge_model: str | None = None, edge_weights: str = "fp32",
                        edge_decoder: str = SERVED_EDGE_DECODER, **kwargs) -> "LoRAGenRuntime":
        """A runtime on a generator checkpoint (None: the shipped one); `edge_model` overrides the edge
        model it names; `edge_weights="int8"` decodes with the int8 copy (loragen_core/int8.py);
        `edge_decoder="compiled"` decodes through torch.compile (loragen_core/compiled_decoding.py),
        "fast-forward" writes grammar-forced tokens without a step each (loragen_core/fast_forward.py)."""
        if generator_dir is None:
            generator, kwargs["trained"] = load_default_generator()
        else:
            generator = load_generator(generator_dir)
        edge = None
        if edge_model or edge_weights != "fp32" or edge_decoder != SERVED_EDGE_DECODER:
            edge = EdgeModel(load_causal_lm(edge_model or generator.config.edge_model), weights=edge_weights, decoder=edge_decoder)
        return cls(generator, edge, **kwargs)

    @property
    def adapter_generations(self) -> int:
        """How many times the cloud LM actually ran; cache hits do not count."""
        return self.service.generations

    def adapter_for(self, system_prompt: str) -> AdapterResult:
        """The adapter for a system prompt: from memory, else the disk cache, else generated."""
        with self._memory_lock:
            self.adapter_requests += 1
            remembered = self._remembered(system_prompt)
        if remembered is not None:
            return remembered
        # The service runs one generation at a time anyway; waiting here as well means a second
        # caller with the same prompt finds the first caller's adapter instead of generating it again.
        with self._generation_lock:
            with self._memory_lock:
                remembered = self._remembered(system_prompt)
            if remembered is not None:
                return remembered
            result = self.service.adapter_for(system_prompt)
            with self._memory_lock:
                self._memory[system_prompt] = result
                while len(self._memory) > self.memory_cache_size:
                    self._memory.popitem(last=False)
        log.info(
            "LoRA-Gen adapter %s %s in %.2f s",
            result.adapter_hash[:12], "read from the disk cache" if result.cache_hit else "generated", result.seconds,
        )
        return result

    def full_prompt_lora(self) -> AdapterResult:
        """The shipped full-prompt LoRA (read once per runtime): the trained baseline's weights."""
        with self._memory_lock:
            if self._full_prompt_lora is None:
                self._full_prompt_lora = load_full_prompt_lora()
            return self._full_prompt_lora

    def has_full_prompt_lora(self) -> bool:
        """Whether this checkout ships the full-prompt LoRA and it fits this runtime's edge model."""
        try:
            return self.full_prompt_lora().adapter.fits(self.edge.model)
        except CheckpointError:
            return False

    def _remembered(self, system_prompt: str) -> AdapterResult | None:
        found = self._memory.get(system_prompt)
        if found is None:
            return None
        self._memory.move_to_end(system_prompt)
        return AdapterResult(found.adapter, True, 0.0, found.adapter_hash)

    def check_length(self, prompt: str) -> None:
        """Raise `RequestTooLongError` for a prompt over `max_prompt_tokens` (chat template included)."""
        limit = self.max_prompt_tokens
        if len(prompt) > limit * CHARS_PER_TOKEN_BOUND:
            raise RequestTooLongError(
                f"The request is {len(prompt):,} characters long; at most {limit * CHARS_PER_TOKEN_BOUND:,} characters "
                f"({limit:,} tokens, history and tool steps included) are accepted. Shorten the message."
            )
        tokens = self.count_prompt_tokens(prompt)
        if tokens > limit:
            raise RequestTooLongError(
                f"The request is {tokens:,} tokens long; at most {limit:,} (history and tool steps included) are accepted. "
                "Shorten the message."
            )

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` alone (no chat template)."""
        with self.edge.lock:
            return len(self.edge.tokenizer.encode(text, add_special_tokens=False))

    def count_prompt_tokens(self, prompt: str) -> int:
        with self.edge.lock:  # a fast tokenizer must not be used from two threads at once
            return self.edge.count_prompt_tokens(prompt)

    def complete(
        self,
        prompt: str,
        system_prompt: str | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        stop: Sequence[str] | None = None,
        on_text: Callable[[str], None] | None = None,
        grammar: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        answer_line_ends: bool = True,
        adapter: AdapterResult | None = None,
        tool_prior: ToolPrior | None = None,
    ) -> RuntimeCompletion:
        """Decode `prompt` on the edge model specialised for `system_prompt` (None: base weights).

        With a system prompt the edge model sees only `prompt`; the system prompt reaches it as the
        merged adapter. Without one, `prompt` must carry everything (the in-context baseline).
        `grammar` (Lark) constrains what the edge model may write, `tool_prior` steers its choice of
        tool (loragen_core/tool_prior.py); `should_stop` ends decoding early;
        `answer_line_ends=False` (plain chat) keeps decoding past a line that starts with "AI: ".
        `adapter` (with no system prompt): merge this one instead, e.g. `full_prompt_lora()`.
        Raises `RequestTooLongError` before any work for a prompt over `max_prompt_tokens`.
        """
        if adapter is not None and system_prompt is not None:
            raise ValueError("Pass a system prompt (its adapter is generated) or an adapter, not both.")
        self.check_length(prompt)
        if system_prompt is not None:
            adapter = self.adapter_for(system_prompt)
        return self.decode(
            prompt, adapter, max_new_tokens=max_new_tokens, stop=stop, on_text=on_text, grammar=grammar,
            should_stop=should_stop, answer_line_ends=answer_line_ends, tool_prior=tool_prior,
        )

    def decode(self, prompt: str, adapter: AdapterResult | None, **decoding) -> RuntimeCompletion:
        """Merge `adapter` if another one is merged (None: restore the base weights), then decode
        `prompt` with `EdgeModel.complete`'s `decoding` arguments, all under the edge model's lock."""
        with self.edge.lock:
            merge_seconds = None
            if adapter is None:
                if self.edge.active_adapter is not None:
                    self.edge.reset()
            elif self.edge.active_adapter != adapter.adapter_hash:
                merge_seconds = self.edge.specialize(adapter.adapter, adapter.adapter_hash)
                self.merges += 1
            else:
                merge_seconds = 0.0
            completion = self.edge.complete(prompt, **decoding)
        return RuntimeCompletion(
            text=completion.text,
            prompt_tokens=completion.prompt_tokens,
            new_tokens=completion.new_tokens,
            seconds=completion.seconds,
            adapter_hash=adapter.adapter_hash if adapter else None,
            adapter_cache_hit=adapter.cache_hit if adapter else None,
            adapter_seconds=adapter.seconds if adapter else None,
            merge_seconds=merge_seconds,
        )
