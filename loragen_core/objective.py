"""The LoRA-Gen training objective: L_total = L_LM(edge with generated LoRA) + L_cv."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from .generator import LoRAGenerator

IGNORE_INDEX = -100


@dataclass
class LossParts:
    total: torch.Tensor
    lm: torch.Tensor
    cv: torch.Tensor


def answer_only_lm_loss(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Causal-LM cross-entropy over the labelled (answer) tokens only.

    Equal to `model(..., labels=labels).loss`, but the output projection runs only where a label is
    set: the answer is a fraction of each sequence and SmolLM2's 49k-word head is a fifth of its
    FLOPs, so this saves most of that fifth on every training step.
    """
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    return nn.functional.cross_entropy(logits.float(), targets[keep])


def loragen_loss(
    generator: LoRAGenerator,
    edge_model: PreTrainedModel,
    system_prompts: list[str],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    meta_states: torch.Tensor | None = None,
) -> LossParts:
    """Row b of the edge batch (user side only, labels -100 outside the answer) uses the adapter
    generated from `system_prompts[b]`, applied functionally so gradients reach the generator.

    `meta_states` (batch, L, width), when given, replaces reading the prompts with the cloud LM: valid
    only while the cloud and the meta tokens are frozen (see `LoRAGenerator.from_meta_states`).
    """
    generated = generator.from_meta_states(meta_states) if meta_states is not None else generator(system_prompts)
    dropout = generator.config.lora_dropout if generator.training else 0.0
    with generated.adapter.applied_to(edge_model, dropout=dropout):
        lm = answer_only_lm_loss(edge_model, input_ids, attention_mask, labels)
    return LossParts(total=lm + generated.cv_loss, lm=lm, cv=generated.cv_loss)
