"""The LoRA-Gen training objective: L_total = L_LM(edge with generated LoRA) + L_cv."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from .generator import LoRAGenerator


@dataclass
class LossParts:
    total: torch.Tensor
    lm: torch.Tensor
    cv: torch.Tensor


def loragen_loss(
    generator: LoRAGenerator,
    edge_model: PreTrainedModel,
    system_prompts: list[str],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
) -> LossParts:
    """Row b of the edge batch (user side only, labels -100 outside the answer) uses the adapter
    generated from `system_prompts[b]`, applied functionally so gradients reach the generator."""
    generated = generator(system_prompts)
    dropout = generator.config.lora_dropout if generator.training else 0.0
    with generated.adapter.applied_to(edge_model, dropout=dropout):
        lm = edge_model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    return LossParts(total=lm + generated.cv_loss, lm=lm, cv=generated.cv_loss)
