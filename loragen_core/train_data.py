"""Training data: JSON lines of (system prompt, edge prompt, output) → edge-model token batches.

Each row needs `system_prompt` (what the generator reads), `edge_prompt` (what the edge model still
sees) and `output` (the answer to learn); `instruction` (the full prompt) is needed only to train the
in-context LoRA baseline. `python -m eval_gpt4tools build-data` writes such files.

A row's optional `template` says how the edge model reads it (only the answer is labelled):
    chat  (default) the chat-formatted user turn exactly as `EdgeModel.chat_input_ids` builds it at
          inference, then the answer and the end-of-turn token
    text  plain text, no chat template, no end-of-turn token: the prompt as a context and the output as
          its continuation, tokenized as lm-evaluation-harness scores a continuation (the commonsense
          tasks' harness format)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import load_dataset
from transformers import PreTrainedTokenizerBase

from .chat_format import chat_ids
from .objective import IGNORE_INDEX

REQUIRED_FIELDS = ("system_prompt", "edge_prompt", "output")


class TrainingDataError(ValueError):
    """The training data is missing, unreadable or lacks a required field."""


@dataclass(frozen=True)
class EdgeExample:
    system_prompt: str
    input_ids: list[int]
    labels: list[int]
    teacher_key: str | None = None  # the row's key in a distillation teacher's cache (rows with a full prompt)


def row_key(row: dict) -> str:
    """A row's identity for the teacher cache: the full prompt the teacher reads and the answer it scores."""
    return hashlib.sha256(f"{row['instruction']}\0{row['output']}".encode()).hexdigest()


def load_rows(paths: list[str | Path], need_instruction: bool = False) -> list[dict]:
    files = [str(p) for p in paths]
    for path in files:
        if not Path(path).is_file():
            raise TrainingDataError(f"Training data {path} does not exist; build it with `python -m eval_gpt4tools build-data --out DIR`.")
    rows = []
    for path in files:  # one dataset per file: files from different builders may carry other columns
        try:
            rows.extend(load_dataset("json", data_files=path, split="train").to_list())
        except Exception as error:  # datasets raises several types for malformed JSON
            raise TrainingDataError(f"Cannot read {path} as JSON lines: {error}") from error
    required = REQUIRED_FIELDS + (("instruction",) if need_instruction else ())
    for index, row in enumerate(rows):
        missing = [k for k in required if not isinstance(row.get(k), str)]
        if missing:
            raise TrainingDataError(f"Row {index} of {', '.join(files)} lacks the text field(s) {missing}.")
    if not rows:
        raise TrainingDataError(f"{', '.join(files)} holds no rows.")
    return rows


TEMPLATES = ("chat", "text")


def encode_example(tokenizer: PreTrainedTokenizerBase, prompt: str, output: str, template: str = "chat") -> tuple[list[int], list[int]]:
    if template == "text":
        return encode_continuation(tokenizer, prompt, output)
    if template != "chat":
        raise TrainingDataError(f"Unknown template {template!r}; a row's template is one of {', '.join(TEMPLATES)}.")
    prompt_ids = chat_ids(tokenizer, prompt)
    answer_ids = tokenizer(output + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def encode_continuation(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """As lm-evaluation-harness's HFLM encodes a (context, continuation) pair: the context's trailing
    blanks move to the continuation, the pair is encoded whole and split where the context's tokens
    end, so the learnt tokens are the ones the harness scores."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    answer_ids = whole[len(context_ids):]
    return context_ids + answer_ids, [IGNORE_INDEX] * len(context_ids) + answer_ids


def encode_rows(
    rows: list[dict], tokenizer: PreTrainedTokenizerBase, prompt_field: str, max_tokens: int
) -> tuple[list[EdgeExample], int]:
    """Encoded examples, and how many were dropped for exceeding `max_tokens` (never truncated:
    a cut answer would teach the model to stop mid-call)."""
    examples, dropped = [], 0
    for row in rows:
        input_ids, labels = encode_example(tokenizer, row[prompt_field], row["output"], row.get("template") or "chat")
        if len(input_ids) > max_tokens:
            dropped += 1
            continue
        key = row_key(row) if isinstance(row.get("instruction"), str) else None
        examples.append(EdgeExample(row["system_prompt"], input_ids, labels, key))
    if not examples:
        raise TrainingDataError(f"Every example is longer than max_edge_tokens={max_tokens}; raise it.")
    return examples, dropped


def collate(examples: list[EdgeExample], pad_id: int) -> dict:
    """Right-padded batch: input_ids, attention_mask, labels (-100 on padding), system_prompts."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {
        "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
        "system_prompts": [e.system_prompt for e in examples], "teacher_keys": [e.teacher_key for e in examples],
    }


def batch_indices(n_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The examples of step `step`: a fresh seeded permutation per epoch, so a resumed run reads
    exactly the batches an uninterrupted one would."""
    start = step * batch_size
    indices = []
    while len(indices) < batch_size:
        epoch, offset = divmod(start + len(indices), n_examples)
        order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = min(batch_size - len(indices), n_examples - offset)
        indices.extend(order[offset : offset + take].tolist())
    return indices
