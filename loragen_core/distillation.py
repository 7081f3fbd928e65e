"""Context distillation (ours, not the paper's): the student — the edge model with the generated
adapter, reading the short edge prompt — learns the answer-token distributions of a teacher — the
edge model with a full-prompt LoRA, reading the whole prompt, tool definitions included.

L_KL = mean over answer tokens of KL(teacher ‖ student), on the teacher's top-k tokens plus one bucket
for the rest of the vocabulary: the exact KL between the two (k+1)-bucket distributions, a lower
bound on the full KL that equals it as the teacher's tail mass goes to 0. Storing k tokens instead of
49k is what makes the cache small.

The teacher is run once per training row, never per step: `TeacherCache.fill` scores the rows a run
will read and keeps their top-k log-probabilities in the run directory (`teacher_topk.pt`), keyed by
the row's text and tied to a fingerprint of the teacher. The student and teacher answers are the same
token ids (`encode_example` tokenizes the answer apart from the prompt), so token t of one is token t
of the other.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .adapter import PEFT_WEIGHTS_FILE
from .atomic import read_fingerprinted, write_fingerprinted
from .objective import IGNORE_INDEX
from .train_data import EdgeExample, collate, encode_example, row_key

TEACHER_CACHE_FILE = "teacher_topk.pt"


class TeacherError(ValueError):
    """The teacher adapter is missing or does not fit the edge model."""


def topk_kl(student_logits: torch.Tensor, teacher_indices: torch.Tensor, teacher_logprobs: torch.Tensor) -> torch.Tensor:
    """Mean KL(teacher ‖ student) over N tokens: `student_logits` (N, V), the teacher's top-k token ids
    and log-probabilities (N, k). With k = V this is the full KL (tested against `kl_div`)."""
    student = torch.log_softmax(student_logits.float(), dim=-1)
    student_k = student.gather(-1, teacher_indices.long())
    teacher_k = teacher_logprobs.float()
    # The tail bucket: everything outside the teacher's top k. Clamped so that a teacher (or student)
    # that puts all its mass on the k tokens gives log(tiny), not log(0) = -inf times 0.
    tiny = torch.finfo(torch.float32).tiny
    teacher_tail = torch.log1p(-teacher_k.exp().sum(-1).clamp(max=1.0)).clamp(min=math.log(tiny))
    student_tail = torch.log((1.0 - student_k.exp().sum(-1)).clamp(min=tiny))
    per_token = (teacher_k.exp() * (teacher_k - student_k)).sum(-1) + teacher_tail.exp() * (teacher_tail - student_tail)
    return per_token.mean()


@dataclass(frozen=True)
class TeacherTargets:
    indices: torch.Tensor  # (answer tokens, k) int32
    logprobs: torch.Tensor  # (answer tokens, k) float32


class TeacherCache:
    """Top-k answer-token log-probabilities of the teacher, per training row, in memory and on disk."""

    def __init__(self, teacher_adapter: str | Path, edge_model: str, top_k: int, path: Path | None = None, batch_size: int = 4):
        self.adapter_dir = Path(teacher_adapter)
        weights = self.adapter_dir / PEFT_WEIGHTS_FILE
        if not weights.is_file():
            raise TeacherError(
                f"--teacher-adapter {self.adapter_dir} has no {PEFT_WEIGHTS_FILE}; pass the final/ directory of a "
                "`python -m loragen_core.train --method lora --prompt full` run."
            )
        if top_k < 1:
            raise TeacherError("--teacher-top-k must be at least 1.")
        self.edge_model, self.top_k, self.path, self.batch_size = edge_model, top_k, path, batch_size
        digest = hashlib.sha256(f"{edge_model}|{top_k}".encode())
        digest.update(weights.read_bytes())
        self.fingerprint = digest.hexdigest()
        self.targets: dict[str, TeacherTargets] = self._read()

    def _read(self) -> dict[str, TeacherTargets]:
        saved = read_fingerprinted(self.path, self.fingerprint) or {}
        return {key: TeacherTargets(*pair) for key, pair in saved.items()}

    def _write(self) -> None:
        write_fingerprinted(self.path, self.fingerprint, {key: (t.indices, t.logprobs) for key, t in self.targets.items()})

    def _load_teacher(self) -> tuple[nn.Module, object]:
        from peft import PeftModel

        from .model_loading import load_causal_lm

        loaded = load_causal_lm(self.edge_model)
        try:
            model = PeftModel.from_pretrained(loaded.model, str(self.adapter_dir)).merge_and_unload()
        except (ValueError, RuntimeError, KeyError) as error:
            raise TeacherError(f"The teacher adapter {self.adapter_dir} does not fit {self.edge_model}: {error}") from error
        return model.eval(), loaded.tokenizer

    @torch.no_grad()
    def fill(self, rows: list[dict], show_progress: bool = True) -> None:
        """Score every row not yet cached (each needs `instruction`, the full prompt, and `output`)."""
        missing = list({row_key(r): r for r in rows if row_key(r) not in self.targets}.items())
        if not missing:
            return
        model, tokenizer = self._load_teacher()
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        device = next(model.parameters()).device
        batches = range(0, len(missing), self.batch_size)
        for number, start in enumerate(tqdm(batches, desc="teacher reads full prompts", unit="batch", disable=not show_progress)):
            chunk = missing[start : start + self.batch_size]
            batch = collate([_encoded(tokenizer, row) for _, row in chunk], pad_id)
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
            answer = batch["labels"][:, 1:] != IGNORE_INDEX
            for (key, _), row_logits, row_answer in zip(chunk, logits[:, :-1], answer):
                logprobs, indices = torch.log_softmax(row_logits[row_answer.to(device)].float(), -1).topk(self.top_k, dim=-1)
                self.targets[key] = TeacherTargets(indices.to(torch.int32).cpu(), logprobs.cpu())
            if number % 25 == 24:
                self._write()  # an interrupted fill keeps what it scored
        self._write()

    def stack(self, keys: list[str], device: torch.device) -> TeacherTargets:
        """The batch's targets, rows concatenated in order (as the student's answer positions are)."""
        absent = [k for k in keys if k not in self.targets]
        if absent:
            raise KeyError(f"{len(absent)} training rows have no teacher targets; TeacherCache.fill them first.")
        return TeacherTargets(
            torch.cat([self.targets[k].indices for k in keys]).to(device),
            torch.cat([self.targets[k].logprobs for k in keys]).to(device),
        )


def _encoded(tokenizer, row: dict) -> EdgeExample:
    input_ids, labels = encode_example(tokenizer, row["instruction"], row["output"], row.get("template") or "chat")
    return EdgeExample(row["system_prompt"], input_ids, labels)
