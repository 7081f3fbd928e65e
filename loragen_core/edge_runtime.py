"""The edge model at inference: chat-format a prompt, decode greedily, time it; specialise by merging.

Decoding rule, the same for every mode that uses it (benchmarks compare like with like): greedy, stop
at the tokenizer's EOS, at `max_new_tokens`, or once a GPT4Tools final-answer line (`AI: ...`) has been
completed by a newline, since nothing after it is scored or shown.

Callers that execute tools (the agent) add `stop` strings: decoding also ends once one appears, and
the text is cut before it, so the model cannot write a tool's observation itself. `on_text` streams
the decoded text as it grows, never past a stop string.

`grammar` (Lark text, or a `GrammarConstraint` from `EdgeModel.grammars`) constrains what a row may
write (loragen_core/constrained.py); the rule above is unchanged, applied to the allowed tokens.

`weights="int8"` decodes with an int8 copy of the model (loragen_core/int8.py: about twice the CPU
decode speed, not the same tokens), `weights="w8a16"` with an int8 weight-only copy computing in bf16
(loragen_core/int8_weight_only.py); the adapter is then attached to that copy functionally instead
of merged (through fixed slots, loragen_core/adapter_slots.py). The default, fp32, is the exact path.

`decoder="compiled"` runs `complete`'s decode steps through a static KV cache and one compiled graph
per cache-length bucket (loragen_core/compiled_decoding.py): faster per token, not the same tokens,
the first request of each bucket compiles (~30 s). `decoder="fast-forward"` writes the tokens a
grammar forces without a decode step each (loragen_core/fast_forward.py): under the agent's grammar
about twice the tokens per second, the same text up to rounding; the served runtime decodes with it. Batches (`complete_batch`) always
decode eagerly, step by step.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from tools.gpt4tools_format import FINAL_ANSWER_DONE

from .adapter import GeneratedLoRA
from .adapter_slots import AdapterSlots
from .chat_format import chat_ids
from .compiled_decoding import EDGE_DECODERS, StaticCaches
from .constrained import GrammarCompiler, GrammarConstraint, GrammarLogitsProcessor
from .fast_forward import fast_forward_generate
from .int8 import WEIGHT_FORMATS, decode_copy, is_quantised
from .model_loading import LoadedModel
from .prefix_cache import check_kv_cache
from .tool_prior import ToolPrior, ToolPriorLogitsProcessor

DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float  # generate's wall time (a batch's: the whole batch's)
    first_token_seconds: float | None = None  # from the same start to the first new token(s), where measured


class FirstTokenClock(BaseStreamer):
    """A streamer that only notes when `generate` hands over the first new token (of every row at
    once, in a batch): `generate` puts the prompt first, then one call per decoding step. The time up
    to it is the prefill; after it, the decode phase."""

    def __init__(self):
        self.calls = 0
        self.first_token_at: float | None = None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


class RowEnds(StoppingCriteria):
    """The decoding rule, row by row: row i ends at EOS or once its final-answer line is complete.

    Records how many tokens each row had generated when it ended (generate() pads ended rows until the
    whole batch is done), so every row's token count matches what decoding it alone would produce.
    """

    def __init__(self, tokenizer, prompt_width: int, eos_token_id: int, answer_line_ends: bool = True):
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.eos_token_id = eos_token_id
        self.answer_line_ends = answer_line_ends  # False: plain chat, where a line "AI: ..." is just text
        self.ended_at: list[int | None] = []

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if not self.ended_at:
            self.ended_at = [None] * input_ids.shape[0]
        generated = input_ids.shape[1] - self.prompt_width
        for row, ended in enumerate(self.ended_at):
            if ended is not None:
                continue
            tokens = input_ids[row, self.prompt_width :]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if int(tokens[-1]) == self.eos_token_id or (self.answer_line_ends and FINAL_ANSWER_DONE.search(text)):
                self.ended_at[row] = generated
        return torch.tensor([e is not None for e in self.ended_at], dtype=torch.bool, device=input_ids.device)


class _StopStringCriteria(StoppingCriteria):
    def __init__(self, tokenizer, prompt_length: int, stop: Sequence[str]):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.stop = tuple(stop)

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_length :], skip_special_tokens=True)
        done = any(s in text for s in self.stop)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _CallerStop(StoppingCriteria):
    """Ends every row once `should_stop()` is true: a Stop button, or a turn's time budget spent."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), bool(self.should_stop()), dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest stop string in it."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def _streamable_prefix(text: str, stop: Sequence[str]) -> str:
    """What may be shown while decoding continues: no stop string, no possible start of one, and no
    half-decoded character (U+FFFD while a multi-byte character is still incomplete)."""
    text = cut_at_stop(text, stop)
    held = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                held = max(held, n)
                break
    text = text[: len(text) - held]
    return text.rstrip("\ufffd")


class _CallbackStreamer(BaseStreamer):
    """Feeds `on_text` the newly decoded text after every generated token (the prompt is skipped)."""

    def __init__(self, tokenizer, on_text: Callable[[str], None], stop: Sequence[str]):
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.stop = tuple(stop)
        self.token_ids: list[int] = []
        self.emitted = 0
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first pushes the prompt
            self.prompt_seen = True
            return
        self.token_ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.token_ids, skip_special_tokens=True)
        self._emit(_streamable_prefix(text, self.stop))

    def end(self) -> None:
        pass  # `EdgeModel.complete` calls `finish` with the final text, cut exactly as it returns it

    def finish(self, text: str) -> None:
        self._emit(text)

    def _emit(self, text: str) -> None:
        if len(text) > self.emitted:
            self.on_text(text[self.emitted :])
            self.emitted = len(text)


def pad_token_id(tokenizer) -> int:
    """Padding for generate and for left-padded batches: the pad token, else EOS (id 0 is a real id)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def greedy_generate(model, tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                    **options) -> torch.Tensor:
    """The one greedy decode behind every mode and benchmark: `model.generate` without sampling, padded
    by `pad_token_id`; `options` carry the end rule, grammar, streamer and cache."""
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                          do_sample=False, pad_token_id=pad_token_id(tokenizer), **options)


class EdgeModel:
    """One edge LM; `specialize` merges a generated adapter, `reset` restores the base weights.

    A lock serialises generation and weight changes, so threads sharing one EdgeModel never decode
    with another caller's adapter half-merged.

    `weights`: "fp32" decodes with `model` itself (exact); "int8" (all Linear layers), "int8-mlp"
    (the MLPs only) or "w8a16" (int8 weights, bf16 activations) with `decode_model`, a copy made once
    here, to which `specialize` attaches the adapter (adapter_slots.py; `model` then never changes).

    `decoder`: "dynamic" (eager, transformers' DynamicCache: exact), "compiled" (batch-1 `complete`
    through static caches and torch.compile; see the module docstring) or "fast-forward" (batch-1
    `complete` under a grammar writes the tokens the grammar forces without a step each; fast_forward.py).
    """

    def __init__(self, loaded: LoadedModel, weights: str = "fp32", decoder: str = "dynamic"):
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"Unknown edge weights {weights!r}; choose one of {', '.join(WEIGHT_FORMATS)}.")
        if decoder not in EDGE_DECODERS:
            raise ValueError(f"Unknown edge decoder {decoder!r}; choose one of {', '.join(EDGE_DECODERS)}.")
        if is_quantised(weights) and loaded.model.device.type != "cpu":
            raise ValueError(f"{weights} edge weights are a CPU decode path; the model is on {loaded.model.device}: use fp32.")
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.directory = loaded.directory
        self.weights = weights
        self.decode_model = decode_copy(loaded.model, weights)
        self.lock = threading.RLock()
        self.active_adapter: str | None = None  # content hash of the merged (or, int8, attached) adapter
        self._slots = AdapterSlots(self.decode_model) if is_quantised(weights) else None  # quantised: the attached adapter
        self.decoder = decoder
        self._static_caches = StaticCaches(self.decode_model) if decoder == "compiled" else None
        self._grammars: GrammarCompiler | None = None

    @property
    def grammars(self) -> GrammarCompiler:
        """The grammar compiler for this model's tokenizer (built on first use, ~1 s)."""
        with self.lock:
            if self._grammars is None:
                self._grammars = GrammarCompiler(self.tokenizer, self.model.config.vocab_size)
            return self._grammars

    @property
    def pad_token_id(self) -> int:
        return pad_token_id(self.tokenizer)

    def _constraint(self, grammar: str | GrammarConstraint | None) -> GrammarConstraint | None:
        if grammar is None or isinstance(grammar, GrammarConstraint):
            return grammar
        return self.grammars.compile(grammar)

    def _grammar_processors(self, grammars: Sequence, prompt_width: int,
                            tool_priors: Sequence[ToolPrior | None] | None = None) -> LogitsProcessorList | None:
        constraints = [self._constraint(g) for g in grammars]
        priors = list(tool_priors) if tool_priors is not None else [None] * len(constraints)
        if len(priors) != len(constraints):
            raise ValueError(f"{len(constraints)} prompts but {len(priors)} tool priors.")
        if any(p is not None and c is None for p, c in zip(priors, constraints)):
            # Outside the grammar a tool name is not a region of known tokens: the prior has nothing to steer.
            raise ValueError("A tool prior steers the grammar's choice of tool: give the row a grammar too.")
        if all(c is None for c in constraints):
            return None
        processors = [GrammarLogitsProcessor(self.grammars, constraints, prompt_width, self.tokenizer.eos_token_id)]
        if any(p is not None for p in priors):
            processors.append(ToolPriorLogitsProcessor(self.tokenizer, priors, prompt_width))
        return LogitsProcessorList(processors)

    def chat_input_ids(self, user_text: str) -> torch.Tensor:
        return torch.tensor([chat_ids(self.tokenizer, user_text)])

    def count_prompt_tokens(self, user_text: str) -> int:
        return int(self.chat_input_ids(user_text).shape[1])

    @torch.inference_mode()
    def complete(
        self,
        user_text: str,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        stop: Sequence[str] | None = None,
        on_text: Callable[[str], None] | None = None,
        grammar: str | GrammarConstraint | None = None,
        should_stop: Callable[[], bool] | None = None,
        answer_line_ends: bool = True,
        tool_prior: ToolPrior | None = None,
    ) -> Completion:
        """Greedy completion. `stop`: also end at these strings (cut from the text); `on_text`:
        called with each new piece of text while decoding, the pieces adding up to the returned text;
        `grammar`: write only what it allows; `tool_prior` (with a grammar): steer its choice of tool
        (loragen_core/tool_prior.py); `should_stop`: polled after every token, ends decoding early when
        it returns True; `answer_line_ends=False` drops the GPT4Tools rule (plain chat)."""
        stop = tuple(s for s in (stop or ()) if s)
        with self.lock:
            input_ids = self.chat_input_ids(user_text).to(self.model.device)
            prompt_length = input_ids.shape[1]
            criteria = [RowEnds(self.tokenizer, prompt_length, self.tokenizer.eos_token_id, answer_line_ends)]
            if stop:
                criteria.append(_StopStringCriteria(self.tokenizer, prompt_length, stop))
            if should_stop is not None:
                criteria.append(_CallerStop(should_stop))
            streamer = _CallbackStreamer(self.tokenizer, on_text, stop) if on_text else None
            processors = self._grammar_processors([grammar], prompt_length, [tool_prior])
            compiled = self._static_caches.generate_options(prompt_length + max_new_tokens) if self._static_caches else {}
            start = time.perf_counter()
            if self.decoder == "fast-forward" and processors is not None:
                output = fast_forward_generate(self.decode_model, input_ids, max_new_tokens, processors,
                                               StoppingCriteriaList(criteria), streamer)
            else:
                output = greedy_generate(self.decode_model, self.tokenizer, input_ids, torch.ones_like(input_ids), max_new_tokens,
                                         stopping_criteria=StoppingCriteriaList(criteria), logits_processor=processors,
                                         streamer=streamer, **compiled)
            seconds = time.perf_counter() - start
        new = output[0, prompt_length:]
        text = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), stop)
        if streamer is not None:
            streamer.finish(text)
        return Completion(text=text, prompt_tokens=int(prompt_length), new_tokens=int(new.shape[0]), seconds=seconds)

    @torch.inference_mode()
    def complete_batch(
        self,
        user_texts: Sequence[str],
        adapter: GeneratedLoRA | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        grammars: Sequence[str | GrammarConstraint | None] | None = None,
        exact_length: bool = False,
        tool_priors: Sequence[ToolPrior | None] | None = None,
        kv_cache: str = "dynamic",
    ) -> list[Completion]:
        """Greedy completions of several prompts in one left-padded batch, by the rule of `complete`
        (`exact_length`, `kv_cache`: see `decode_rows`).

        `adapter` (optional) is applied functionally on top of the current weights, one adapter per
        row (its batch size equals len(user_texts)) or one shared (batch size 1): evaluation can then
        batch items whose system prompts, and so adapters, differ. This is for throughput: each
        Completion's `seconds` is the whole batch's wall time, not a per-request latency. `grammars`
        (optional) holds one grammar per row, None for a row that decodes freely; `tool_priors` one
        tool prior per row (rows with a prior need a grammar).
        """
        if not user_texts:
            return []
        if grammars is not None and len(grammars) != len(user_texts):
            raise ValueError(f"{len(user_texts)} prompts but {len(grammars)} grammars.")
        if adapter is not None and adapter.batch_size not in (1, len(user_texts)):
            raise ValueError(f"{len(user_texts)} prompts but an adapter batch of {adapter.batch_size}.")
        rows = [self.chat_input_ids(text)[0] for text in user_texts]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):  # left padding: every prompt ends where decoding starts
            input_ids[i, width - len(row) :] = row
            attention_mask[i, width - len(row) :] = 1
        with self.lock:
            applied = adapter.applied_to(self.decode_model) if adapter is not None else nullcontext()
            with applied:
                return self.decode_rows(input_ids, attention_mask, [len(row) for row in rows], max_new_tokens, grammars,
                                        exact_length=exact_length, tool_priors=tool_priors, kv_cache=kv_cache)

    @torch.inference_mode()
    def decode_rows(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_tokens: Sequence[int],
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        grammars: Sequence[str | GrammarConstraint | None] | None = None,
        cache=None,
        exact_length: bool = False,
        tool_priors: Sequence[ToolPrior | None] | None = None,
        kv_cache: str = "dynamic",
    ) -> list[Completion]:
        """Greedy completions of an already padded batch (every row's prompt ends at the last column),
        by the rule of `complete`, on the weights as they are. `cache` (optional) holds the keys and
        values of the first columns (a cached prefix, padded as `attention_mask` says); only the rest
        is prefilled. `prompt_tokens`: each row's real prompt length, as reported. `exact_length`:
        every row writes exactly `max_new_tokens` (no end rule, EOS suppressed): for benchmarks that
        compare speed at equal output length. `kv_cache`: "dynamic" (transformers' DynamicCache, which
        grows by concatenation, so each step copies the batch's whole KV) or "static" (preallocated for
        prompt + max_new_tokens, written in place, as a serving engine's cache is); it applies when no
        `cache` is given (a given cache is used as it is)."""
        check_kv_cache(kv_cache)
        width = input_ids.shape[1]
        ends = RowEnds(self.tokenizer, width, self.tokenizer.eos_token_id)
        length_rule = {"min_new_tokens": max_new_tokens} if exact_length else {"stopping_criteria": StoppingCriteriaList([ends])}
        with self.lock:
            if grammars is None and tool_priors is not None and any(p is not None for p in tool_priors):
                raise ValueError("A tool prior steers the grammar's choice of tool: give the rows grammars too.")
            processors = self._grammar_processors(grammars, width, tool_priors) if grammars is not None else None
            clock = FirstTokenClock()
            start = time.perf_counter()
            output = greedy_generate(self.decode_model, self.tokenizer, input_ids.to(self.model.device),
                                     attention_mask.to(self.model.device), max_new_tokens, logits_processor=processors,
                                     streamer=clock, **length_rule,
                                     **({"cache": cache} if cache is not None else
                                        {"cache_implementation": "static"} if kv_cache == "static" else {}))
            seconds = time.perf_counter() - start
        first_token_seconds = clock.first_token_at - start if clock.first_token_at is not None else None
        completions = []
        for i, length in enumerate(prompt_tokens):
            new = output[i, width:]
            n_new = ends.ended_at[i] if ends.ended_at and ends.ended_at[i] is not None else int(new.shape[0])
            text = self.tokenizer.decode(new[:n_new], skip_special_tokens=True)
            completions.append(Completion(text=text, prompt_tokens=int(length), new_tokens=n_new, seconds=seconds,
                                          first_token_seconds=first_token_seconds))
        return completions

    def specialize(self, adapter: GeneratedLoRA, adapter_hash: str | None = None) -> float:
        """Merge `adapter` (replacing any merged one); returns the merge time in seconds, hashing
        excluded (`adapter_hash`: its content hash when the caller knows it already)."""
        adapter_hash = adapter_hash or adapter.content_hash()
        with self.lock:
            start = time.perf_counter()
            if self._slots is not None:
                self._slots.load(adapter)
            else:
                adapter.merge_into(self.model)
            seconds = time.perf_counter() - start
            self.active_adapter = adapter_hash
            return seconds

    def reset(self) -> None:
        with self.lock:
            if self._slots is not None:
                self._slots.clear()
            else:
                GeneratedLoRA.unmerge_from(self.model)
            self.active_adapter = None
