"""The held-out answer-token loss of a trained generator on any JSON-lines data: the trainer's own
`held_out_lm` (eval mode: no dropout, BatchNorm's running statistics), for a checkpoint after the fact,
so runs trained with and without `--eval-data` compare on the same rows.

    python -m loragen_core heldout --generator runs/train/NAME/final --data held_out.jsonl
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_generator
from .model_loading import load_causal_lm
from .train import LoRAGenTrainable, held_out_lm
from .train_data import encode_rows, load_rows

DEFAULT_MAX_EDGE_TOKENS = 512  # the cpu recipe's


def held_out_loss(generator_dir: Path, data: list[str], batch_size: int = 8, max_edge_tokens: int = DEFAULT_MAX_EDGE_TOKENS) -> tuple[float, int]:
    """(mean answer-token L_LM, examples scored): the generator reads each row's system prompt with its
    own cloud LM (trained or frozen, as it was saved), the edge model answers its edge prompt."""
    generator = load_generator(generator_dir)
    edge = load_causal_lm(generator.config.edge_model)
    edge.model.requires_grad_(False)
    examples, _ = encode_rows(load_rows(data), edge.tokenizer, "edge_prompt", max_edge_tokens)
    trainable = LoRAGenTrainable(generator, edge.model, states=None)
    pad_id = edge.tokenizer.pad_token_id if edge.tokenizer.pad_token_id is not None else edge.tokenizer.eos_token_id
    device = next(edge.model.parameters()).device
    with torch.inference_mode():
        return held_out_lm(trainable, examples, pad_id, device, batch_size, progress=True), len(examples)
