"""The edge model's chat format in one place: by default an empty system prompt, so SmolLM2's default
system line is gone and nothing else changes; None gives exactly the tokenizer's own template."""

from __future__ import annotations

import os

import pytest
from transformers import AutoTokenizer

import loragen_core.chat_format as chat_format
from loragen_core.model_loading import default_model_dir

DEFAULT_LINE = "You are a helpful AI assistant named SmolLM"


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return AutoTokenizer.from_pretrained(default_model_dir())


def test_none_is_the_templates_own_rendering(smollm2_tokenizer, monkeypatch):
    monkeypatch.setattr(chat_format, "EDGE_SYSTEM_PROMPT", None)
    text = "New input: Detect the edges of image/abc.png"
    own = smollm2_tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, return_dict=True)
    assert chat_format.chat_ids(smollm2_tokenizer, text) == list(own["input_ids"])
    assert DEFAULT_LINE in chat_format.chat_text(smollm2_tokenizer, text)


def test_an_empty_system_prompt_drops_the_default_line(smollm2_tokenizer, monkeypatch):
    text = "New input: Detect the edges of image/abc.png"
    monkeypatch.setattr(chat_format, "EDGE_SYSTEM_PROMPT", None)
    with_line = chat_format.chat_ids(smollm2_tokenizer, text)
    monkeypatch.setattr(chat_format, "EDGE_SYSTEM_PROMPT", "")
    rendered = chat_format.chat_text(smollm2_tokenizer, text)
    assert DEFAULT_LINE not in rendered
    assert rendered.endswith(f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")
    assert len(with_line) - len(chat_format.chat_ids(smollm2_tokenizer, text)) == 16  # what every edge prompt saves


def test_a_template_without_a_system_role_gets_the_user_turn_alone(tiny_dirs, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs["edge"])
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "{{ m['content'] }}\n{% endfor %}"
    )
    monkeypatch.setattr(chat_format, "EDGE_SYSTEM_PROMPT", "")
    assert chat_format.chat_text(tokenizer, "hello") == "hello\n"


@pytest.mark.skipif("LORAGEN_EDGE_SYSTEM" in os.environ, reason="LORAGEN_EDGE_SYSTEM overrides the default")
def test_the_default_drops_the_line():
    assert chat_format.EDGE_SYSTEM_PROMPT == ""
