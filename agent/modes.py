"""Serving modes: what stays in the edge model's context, one definition for the agent, the LangChain
model and the UI.

    loragen        generated adapter merged; the edge model reads only the conversation
    loragen-names  generated adapter merged; the conversation behind one line naming the tools
                   ("Tools: A, B"), ~20 tokens instead of the ~550 the definitions take
    icl            no adapter; the full GPT4Tools prompt, tool definitions included (the untrained baseline)
    full-prompt-lora
                   the shipped full-prompt LoRA merged (loragen_core/checkpoints/full_prompt_lora, trained on
                   the generator's data and steps); the full prompt: the trained baseline to compare with
"""

from __future__ import annotations

from tools.gpt4tools_prompt import PromptParts

LORAGEN, LORAGEN_NAMES, ICL, FULL_PROMPT_LORA = "loragen", "loragen-names", "icl", "full-prompt-lora"
MODES = (LORAGEN, LORAGEN_NAMES, ICL, FULL_PROMPT_LORA)
DEFAULT_MODE = LORAGEN


# How the UI and the demo name each baseline; the trained one is what LoRA-Gen should be compared with.
BASELINE_LABELS = {
    FULL_PROMPT_LORA: "Full-prompt LoRA (trained on the same data, reads every tool definition)",
    ICL: "In-context baseline (untrained, full prompt)",
}


def baseline_mode(runtime) -> str:
    """The side-by-side baseline for a `LoRAGenRuntime`: the shipped full-prompt LoRA where this
    checkout has it for the runtime's edge model, else icl."""
    return FULL_PROMPT_LORA if runtime.has_full_prompt_lora() else ICL


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    return mode


def uses_adapter(mode: str) -> bool:
    """Whether `mode` generates an adapter from the system prompt."""
    return check_mode(mode) in (LORAGEN, LORAGEN_NAMES)


def reads_full_prompt(mode: str) -> bool:
    return check_mode(mode) in (ICL, FULL_PROMPT_LORA)


def edge_text(parts: PromptParts, mode: str) -> str:
    """What the edge model reads in `mode` (the trace, if any, included)."""
    if reads_full_prompt(mode):
        return parts.reassemble()
    return parts.edge_prompt_with_tool_names if mode == LORAGEN_NAMES else parts.edge_prompt
