"""How a prompt becomes the edge model's chat tokens, in one place: inference, training, the prefix
cache and the benchmarks all format through here, so a model is always read the way it was trained.

SmolLM2's chat template adds its default system line ("You are a helpful AI assistant named SmolLM,
trained by Hugging Face", about 16 tokens with its markers) whenever a conversation has no system
message. For LoRA-Gen that line is pure overhead: every edge prompt pays it, and the point is a short
edge prompt. `EDGE_SYSTEM_PROMPT`:

    ""     (default) an empty system message: the template writes an empty system block and no
           default line
    None   the template's own default line (what every shipped checkpoint was trained with; the
           untrained model was instruction-tuned with it)

Measured on the 652 GPT4Tools test items with the SmolLM2 tokenizer (docs/method-notes.md): edge
prompt 131.4 → 115.4 tokens, full prompt 686.3 → 670.3, compression 5.22x → 5.81x. The shipped
checkpoints, trained with the line, lose nothing without it (served rule, 100 stratified items:
loragen SR 81 → 85, paired p = 0.125; the full-prompt LoRA 90 → 90; results/README.md), so the
default drops it in every mode.
A template that refuses a system message falls back to the user turn alone.
"""

from __future__ import annotations

import os

from jinja2.exceptions import TemplateError

# LORAGEN_EDGE_SYSTEM=default|empty overrides it for a process (experiments comparing the two).
EDGE_SYSTEM_PROMPT: str | None = {"default": None, "empty": ""}.get(os.environ.get("LORAGEN_EDGE_SYSTEM", ""), "")


def chat_messages(user_text: str, system_prompt: str | None = None) -> list[dict]:
    system = EDGE_SYSTEM_PROMPT if system_prompt is None else system_prompt
    user = [{"role": "user", "content": user_text}]
    return user if system is None else [{"role": "system", "content": system}] + user


def chat_ids(tokenizer, user_text: str) -> list[int]:
    """The token ids of `user_text` as one user turn, ready for the assistant's reply."""
    try:
        return list(tokenizer.apply_chat_template(chat_messages(user_text), add_generation_prompt=True, return_dict=True)["input_ids"])
    except TemplateError:  # a template without a system role: the user turn alone
        return list(tokenizer.apply_chat_template([{"role": "user", "content": user_text}], add_generation_prompt=True,
                                                  return_dict=True)["input_ids"])


def chat_text(tokenizer, user_text: str) -> str:
    """The same turn as text (what `chat_ids` tokenizes)."""
    try:
        return tokenizer.apply_chat_template(chat_messages(user_text), add_generation_prompt=True, tokenize=False)
    except TemplateError:
        return tokenizer.apply_chat_template([{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=False)
