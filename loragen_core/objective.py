"""The LoRA-Gen training objective: L_total = w_LM·L_LM(edge with generated LoRA) + L_cv + w_KL·L_KL.

L_LM and L_cv are the paper's; L_KL, context distillation from a full-prompt teacher, is ours
(`distillation.py`), off unless a run sets --kl-weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import PreTrainedModel

from .generator import LoRAGenerator

if TYPE_CHECKING:
    from .distillation import TeacherTargets

IGNORE_INDEX = -100


@dataclass
class LossParts:
    total: torch.Tensor
    lm: torch.Tensor
    cv: torch.Tensor
    kl: torch.Tensor | None = None  # None: the run has no distillation term


def answer_logits(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits at the positions that predict a labelled (answer) token, rows in order, and those tokens.

    The output projection runs only there: the answer is a fraction of each sequence and SmolLM2's
    49k-word head is a fifth of its FLOPs, so this saves most of that fifth on every training step.
    """
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    return model.get_output_embeddings()(hidden[:, :-1][keep]), targets[keep]


def answer_only_lm_loss(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Causal-LM cross-entropy over the labelled (answer) tokens only: `model(..., labels=labels).loss`."""
    logits, targets = answer_logits(model, input_ids, attention_mask, labels)
    return nn.functional.cross_entropy(logits.float(), targets)


def loragen_loss(
    generator: LoRAGenerator,
    edge_model: PreTrainedModel,
    system_prompts: list[str],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    meta_states: torch.Tensor | None = None,
    teacher: TeacherTargets | None = None,
    lm_weight: float = 1.0,
    kl_weight: float = 0.0,
) -> LossParts:
    """Row b of the edge batch (user side only, labels -100 outside the answer) uses the adapter
    generated from `system_prompts[b]`, applied functionally so gradients reach the generator.

    `meta_states` (batch, L, width), when given, replaces reading the prompts with the cloud LM: valid
    only while the cloud and the meta tokens are frozen (see `LoRAGenerator.from_meta_states`).
    `teacher`: the batch's cached teacher targets, one per answer token in row order; with
    `kl_weight` > 0 the distillation term joins the total.
    """
    generated = generator.from_meta_states(meta_states) if meta_states is not None else generator(system_prompts)
    dropout = generator.config.lora_dropout if generator.training else 0.0
    with generated.adapter.applied_to(edge_model, dropout=dropout):
        logits, targets = answer_logits(edge_model, input_ids, attention_mask, labels)
    lm = nn.functional.cross_entropy(logits.float(), targets)
    total = lm_weight * lm + generated.cv_loss
    kl = None
    if teacher is not None:
        if teacher.indices.shape[0] != targets.shape[0]:
            raise ValueError(f"The teacher scored {teacher.indices.shape[0]} answer tokens, the student has {targets.shape[0]}: "
                             "the two tokenizations of the answer differ.")
        from .distillation import topk_kl  # distillation imports this module

        kl = topk_kl(logits, teacher.indices, teacher.logprobs)
        total = total + kl_weight * kl
    return LossParts(total=total, lm=lm, cv=generated.cv_loss, kl=kl)
