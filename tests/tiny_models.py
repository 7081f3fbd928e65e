"""Tiny random models built from configs, saved as real model directories (no downloads).

A byte-level BPE tokenizer is trained on a few sentences in milliseconds; a 2-layer Llama serves as
edge and a 2-layer Qwen2 (another architecture, another width) as cloud.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

CORPUS = [
    "GPT4Tools has access to the following tools: Edge Detection On Image, Detect Face, Segment the Image.",
    "Thought: Do I need to use a tool? Yes\nAction: Detect Face\nAction Input: image/abc.png\nObservation:",
    "Human: Provide an image named cache/xyzxyzxy.png. Description: a dog on a couch. AI: Received.",
    "Answer the question with one word. The quick brown fox jumps over the lazy dog.",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|endoftext|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    # A ChatML template like SmolLM2's, so EdgeModel and the trainer format tiny models as the real one.
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _save_tiny(directory: Path, config_class, model_class, hidden: int, intermediate: int, seed: int,
               initializer_range: float = 0.02) -> Path:
    tokenizer = tiny_tokenizer()
    config = config_class(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model_class(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_llama(directory: Path, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """`initializer_range`: the default 0.02 gives near-uniform logits that no FFN adapter can sharpen
    (the frozen lm_head's rows are too alike); ~0.3 gives a random model whose outputs an adapter can
    steer, for tests that train one to a behaviour."""
    return _save_tiny(directory, LlamaConfig, LlamaForCausalLM, hidden=32, intermediate=48, seed=seed,
                      initializer_range=initializer_range)


def save_tiny_qwen2(directory: Path, seed: int = 1) -> Path:
    return _save_tiny(directory, Qwen2Config, Qwen2ForCausalLM, hidden=24, intermediate=40, seed=seed)
