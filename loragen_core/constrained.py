"""Grammar-constrained decoding: a logits processor that lets each batch row write only what its
grammar allows.

Engine: llguidance (Microsoft's Rust library behind llama.cpp's and guidance's constrained decoding).
Why it and not xgrammar or outlines-core: it has no dependencies (xgrammar's wheel pulls triton, which
a CPU-only install would carry for nothing), it reads Lark grammars and regexes directly, it handles
token boundaries that cut across grammar terminals, and its matchers need no ahead-of-time compilation:
a new tool set's grammar is ready in well under a millisecond, and a token mask costs ~0.1 ms per row.

Per row: a `GrammarConstraint` holds a validated grammar; `GrammarLogitsProcessor` gives every row its
own matcher (or none: that row decodes freely), so rows with different tool sets, and so different
grammars, decode in one batch next to per-row adapters. Greedy decoding under the mask is still greedy:
the highest-scoring token the grammar allows. Once a row's grammar is complete only EOS is allowed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import llguidance
import llguidance.hf
import torch
from transformers import LogitsProcessor

# Validated grammars kept per tokenizer; a tool set's grammar is a few hundred bytes.
GRAMMAR_CACHE_SIZE = 256


class GrammarError(ValueError):
    """A grammar llguidance cannot use (a syntax error, or a rule that matches nothing)."""


@dataclass(frozen=True)
class GrammarConstraint:
    """A grammar validated against one tokenizer; `source` is the Lark text it came from."""

    source: str
    compiled: str  # llguidance's serialised grammar


class GrammarCompiler:
    """Turns Lark text into `GrammarConstraint`s for one tokenizer, cached by text. Thread-safe.

    Building llguidance's view of a tokenizer takes ~1 s, so one compiler is made per tokenizer and kept.
    """

    def __init__(self, tokenizer, vocab_size: int | None = None):
        self.ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
        self._cache: OrderedDict[str, GrammarConstraint] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, lark: str) -> GrammarConstraint:
        with self._lock:
            found = self._cache.get(lark)
            if found is not None:
                self._cache.move_to_end(lark)
                return found
        compiled = llguidance.LLMatcher.grammar_from_lark(lark)
        probe = llguidance.LLMatcher(self.ll_tokenizer, compiled, log_level=0)
        if probe.is_error():
            raise GrammarError(f"The decoding grammar is not usable: {probe.get_error()}")
        constraint = GrammarConstraint(lark, compiled)
        with self._lock:
            self._cache[lark] = constraint
            while len(self._cache) > GRAMMAR_CACHE_SIZE:
                self._cache.popitem(last=False)
        return constraint

    def matcher(self, constraint: GrammarConstraint) -> llguidance.LLMatcher:
        return llguidance.LLMatcher(self.ll_tokenizer, constraint.compiled, log_level=0)


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks each row's scores to the tokens its grammar allows next (rows without one are left free).

    `generate` calls it once per step with the ids so far; the processor feeds each row's matcher the
    tokens written since its last call (one per step) before masking the next step. A row whose matcher has stopped (grammar complete)
    may only write EOS; a row that already ended keeps receiving padding, which is not fed.
    """

    def __init__(self, compiler: GrammarCompiler, constraints: Sequence[GrammarConstraint | None], prompt_width: int, eos_token_id: int):
        self.matchers = [compiler.matcher(c) if c is not None else None for c in constraints]
        self.prompt_width = prompt_width
        self.eos_token_id = eos_token_id
        self.words = (compiler.ll_tokenizer.vocab_size + 31) // 32
        self._ended = [False] * len(self.matchers)
        self._fed = [prompt_width] * len(self.matchers)  # input_ids columns each matcher has consumed
        self._bit = torch.arange(32, dtype=torch.int32)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.consume(input_ids)
        for row, matcher in enumerate(self.matchers):
            if matcher is None or self._ended[row]:
                continue
            if matcher.is_stopped():  # the grammar is complete: end the row
                allowed = torch.zeros(scores.shape[1], dtype=torch.bool)
                allowed[self.eos_token_id] = True
            else:
                allowed = self._unpack(matcher.compute_bitmask(), scores.shape[1])
            scores[row] = scores[row].masked_fill(~allowed.to(scores.device), float("-inf"))
        return scores

    def consume(self, input_ids: torch.LongTensor) -> None:
        """Feed each row's matcher the tokens written since it last saw the row: one per step under
        `generate`, several after a fast-forward (fast_forward.py)."""
        for row, matcher in enumerate(self.matchers):
            if matcher is None:
                continue
            for token in input_ids[row, self._fed[row] :].tolist():
                if self._ended[row]:
                    break
                if matcher.is_stopped() or token == self.eos_token_id or not matcher.consume_token(token):
                    self._ended[row] = True  # EOS, or padding after the row ended: nothing more to constrain
            self._fed[row] = input_ids.shape[1]

    def forced_tokens(self, input_ids: torch.LongTensor, row: int = 0) -> list[int]:
        """The tokens row `row`'s grammar allows as the only continuation after `input_ids` (llguidance's
        fast-forward tokens, in the tokenizer's canonical split); [] where the model has a choice."""
        self.consume(input_ids)
        matcher = self.matchers[row]
        if matcher is None or self._ended[row] or matcher.is_stopped():
            return []
        return list(matcher.compute_ff_tokens())

    def _unpack(self, bitmask: bytes, width: int) -> torch.Tensor:
        words = torch.frombuffer(bytearray(bitmask), dtype=torch.int32)
        bits = ((words.unsqueeze(1) >> self._bit) & 1).reshape(-1).bool()
        allowed = torch.zeros(width, dtype=torch.bool)
        n = min(width, bits.shape[0])
        allowed[:n] = bits[:n]
        return allowed
