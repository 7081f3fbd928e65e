"""The edge model at inference: chat-format a prompt, decode greedily, time it; specialise by merging.

Decoding rule, the same for every mode that uses it (benchmarks compare like with like): greedy, stop
at the tokenizer's EOS, at `max_new_tokens`, or once a GPT4Tools final-answer line (`AI: ...`) has been
completed by a newline, since nothing after it is scored or shown.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .adapter import GeneratedLoRA
from .model_loading import LoadedModel

FINAL_ANSWER_DONE = re.compile(r"(^|\n)AI: [^\n]*\n")
DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


class _FinalAnswerStop(StoppingCriteria):
    def __init__(self, tokenizer, prompt_length: int):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_length :], skip_special_tokens=True)
        done = FINAL_ANSWER_DONE.search(text) is not None
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class EdgeModel:
    """One edge LM; `specialize` merges a generated adapter, `reset` restores the base weights.

    A lock serialises generation and weight changes, so threads sharing one EdgeModel never decode
    with another caller's adapter half-merged.
    """

    def __init__(self, loaded: LoadedModel):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.directory = loaded.directory
        self.lock = threading.RLock()
        self.active_adapter: str | None = None  # content hash of the merged adapter

    def chat_input_ids(self, user_text: str) -> torch.Tensor:
        encoded = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return encoded["input_ids"]

    def count_prompt_tokens(self, user_text: str) -> int:
        return int(self.chat_input_ids(user_text).shape[1])

    @torch.inference_mode()
    def complete(self, user_text: str, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Completion:
        with self.lock:
            input_ids = self.chat_input_ids(user_text).to(self.model.device)
            start = time.perf_counter()
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                stopping_criteria=StoppingCriteriaList([_FinalAnswerStop(self.tokenizer, input_ids.shape[1])]),
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
            seconds = time.perf_counter() - start
        new = output[0, input_ids.shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Completion(text=text, prompt_tokens=int(input_ids.shape[1]), new_tokens=int(new.shape[0]), seconds=seconds)

    def specialize(self, adapter: GeneratedLoRA) -> float:
        """Merge `adapter` (replacing any merged one); returns the merge time in seconds."""
        with self.lock:
            start = time.perf_counter()
            adapter.merge_into(self.model)
            self.active_adapter = adapter.content_hash()
            return time.perf_counter() - start

    def reset(self) -> None:
        with self.lock:
            GeneratedLoRA.unmerge_from(self.model)
            self.active_adapter = None
