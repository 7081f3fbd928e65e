"""Real answers for the builder's negative (no-tool) samples, written by the default instruct model.

Greedy and batched (left padding), so the same questions always get the same answers. Answers are
made single-line: the edge model's stop rule ends a trace once its `AI: ...` line is complete.
"""

from __future__ import annotations

import re

import torch
from tqdm import tqdm

from loragen_core import DEFAULT_MODEL, load_causal_lm

INSTRUCTION = "Answer in one or two short sentences."


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    sentences = re.findall(r"[^.!?]*[.!?]", text)
    kept = "".join(sentences).strip() if sentences else text
    return re.sub(r"\s*\d+\.$", "", kept)  # a list item cut off after its number


@torch.inference_mode()
def answer_with_model(questions: list[str], model_name: str = DEFAULT_MODEL, batch_size: int = 16, max_new_tokens: int = 64) -> list[str]:
    loaded = load_causal_lm(model_name)
    tokenizer, model = loaded.tokenizer, loaded.model
    tokenizer.padding_side = "left"
    answers = []
    for start in tqdm(range(0, len(questions), batch_size), desc="negative answers", unit="batch"):
        batch = questions[start : start + batch_size]
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
            )
            for q in batch
        ]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new = output[:, encoded["input_ids"].shape[1] :]
        answers.extend(_tidy(t) or "I can answer that without a tool." for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    return answers
