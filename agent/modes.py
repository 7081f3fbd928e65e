"""Serving modes: what stays in the edge model's context, one definition for the agent, the LangChain
model and the UI.

    loragen        generated adapter merged; the edge model reads only the conversation
    loragen-names  generated adapter merged; the conversation behind one line naming the tools
                   ("Tools: A, B"), ~20 tokens instead of the ~550 the definitions take
    icl            no adapter; the full GPT4Tools prompt, tool definitions included (the baseline)
"""

from __future__ import annotations

from tools.gpt4tools_prompt import PromptParts

LORAGEN, LORAGEN_NAMES, ICL = "loragen", "loragen-names", "icl"
MODES = (LORAGEN, LORAGEN_NAMES, ICL)
DEFAULT_MODE = LORAGEN


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    return mode


def uses_adapter(mode: str) -> bool:
    return check_mode(mode) != ICL


def edge_text(parts: PromptParts, mode: str) -> str:
    """What the edge model reads in `mode` (the trace, if any, included)."""
    if check_mode(mode) == ICL:
        return parts.reassemble()
    return parts.edge_prompt_with_tool_names if mode == LORAGEN_NAMES else parts.edge_prompt
