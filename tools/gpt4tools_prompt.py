"""The GPT4Tools prompt: build it from tools, and split it into system prompt and edge prompt.

A GPT4Tools prompt reads, in order:

    HEAD     preamble, TOOLS block, tool-use format, no-tool format, file-name rules,
             "Previous conversation:\\n\\n"
    USER     chat history (image introduction) + "\\n\\nNew input: <request>"
    CLOSING  "\\nGPT4Tools needs to use tools to observe images, ... Let's think step by step.\\n"
    TRACE    (context samples only) the steps taken so far

The split, decided once: the **system prompt** (what the generator reads) is HEAD + CLOSING, the
task-level text that is identical for every request with the same tools. The **edge prompt** (what the
edge model still sees) is USER + TRACE. Moving the fixed closing line to the system prompt raises the
compression from ~4.2x to ~6.1x on the test set (gpt4tools.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
HEAD_END = "Previous conversation:\n\n"
CLOSING_START = "\nGPT4Tools needs to use tools to observe images, not directly imagine them."
CLOSING_END = "Let's think step by step.\n"
NEW_INPUT = "New input: "


class PromptFormatError(ValueError):
    """The text is not a GPT4Tools prompt (a marker of the template is missing)."""


@cache
def prompt_templates() -> dict[str, str]:
    return json.loads((DATA_DIR / "prompt_templates.json").read_text())


@cache
def seen_tools() -> tuple[dict, ...]:
    return tuple(json.loads((DATA_DIR / "tools_seen.json").read_text())["tools"])


def build_prompt(tools: list[tuple[str, str]], new_input: str, chat_history: str = "") -> str:
    """The full GPT4Tools prompt for (name, description) tools, exactly as the template writes it."""
    return prompt_templates()["PROMPT_FORMAT"].format(
        tool_descriptions="\n".join(f"> {name}: {description}" for name, description in tools),
        tool_names=", ".join(name for name, _ in tools),
        chat_history=chat_history,
        input=new_input,
    )


def image_turn(image_path: str, caption: str) -> str:
    return prompt_templates()["LLM_IMAGE_FORMAT"].format(image_path=image_path, image_caption=caption)


# An image file name as GPT4Tools writes them (image/abcdefgh.png, examples/x.jpg, photo.png).
IMAGE_PATH = re.compile(r"[\w./-]+\.(?:png|jpe?g|bmp|webp|gif|tiff?)\b", re.IGNORECASE)
# The format rules list the tool names: "... should be one of [A, B, C]".
TOOL_NAMES = re.compile(r"should be one of \[(.*?)\]")
# The TOOLS block writes one "> Name: description" line per tool (names never hold ':', see registry.py).
TOOL_LINE = re.compile(r"^> ([^:\n]+): (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class PromptParts:
    head: str
    user: str
    closing: str
    trace: str

    @property
    def system_prompt(self) -> str:
        return self.head + self.closing

    @property
    def edge_prompt(self) -> str:
        # The trace followed the closing line, which moved to the system prompt: keep it on its own line.
        return self.user + ("\n" + self.trace if self.trace else "")

    @property
    def edge_prompt_with_tool_names(self) -> str:
        """The edge prompt behind one line naming the tools (names only, no definitions): the
        `loragen-names` variant, ~20 tokens instead of the ~550 the definitions take."""
        names = TOOL_NAMES.search(self.head)
        return f"Tools: {names.group(1) if names else ''}\n{self.edge_prompt}"

    @property
    def tool_names(self) -> list[str]:
        """The tools this prompt offers, in order, as its format rules list them."""
        names = TOOL_NAMES.search(self.head)
        return [name.strip() for name in names.group(1).split(", ")] if names and names.group(1).strip() else []

    @property
    def new_input(self) -> str:
        """The request itself: the user part after its last "New input:" (the whole user part if none)."""
        at = self.user.rfind(NEW_INPUT)
        return (self.user[at + len(NEW_INPUT) :] if at >= 0 else self.user).strip()

    @property
    def tool_definitions(self) -> list[tuple[str, str]]:
        """The (name, description) pairs of the prompt's TOOLS block, in order."""
        return TOOL_LINE.findall(self.head)

    def reassemble(self) -> str:
        return self.head + self.user + self.closing + self.trace


def split_prompt(prompt: str) -> PromptParts:
    """Split a full GPT4Tools prompt; `split_prompt(p).reassemble() == p` for every prompt."""
    head_end = prompt.find(HEAD_END)
    closing_start = prompt.find(CLOSING_START, max(head_end, 0))
    closing_end = prompt.find(CLOSING_END, max(closing_start, 0))
    if head_end < 0 or closing_start < 0 or closing_end < 0:
        raise PromptFormatError(
            "Not a GPT4Tools prompt: expected 'Previous conversation:', the closing "
            "'GPT4Tools needs to use tools...' line and \"Let's think step by step.\""
        )
    head_end += len(HEAD_END)
    closing_end += len(CLOSING_END)
    return PromptParts(
        head=prompt[:head_end],
        user=prompt[head_end:closing_start],
        closing=prompt[closing_start:closing_end],
        trace=prompt[closing_end:],
    )


def prompt_parts(tools: list[tuple[str, str]], new_input: str, chat_history: str = "") -> PromptParts:
    """The parts of the prompt `build_prompt` writes, built piece by piece rather than split.

    Splitting a finished prompt finds the template's markers by search, so a request that contains
    the closing line would move its own text into the system prompt (and so shape the adapter). Here
    the template is split once, and the user's text only ever fills the user part.
    """
    template = prompt_templates()["PROMPT_FORMAT"]
    template_parts = split_prompt(template)
    tool_fields = {
        "tool_descriptions": "\n".join(f"> {name}: {description}" for name, description in tools),
        "tool_names": ", ".join(name for name, _ in tools),
    }
    return PromptParts(
        head=template_parts.head.format(**tool_fields),
        user=template_parts.user.format(chat_history=chat_history, input=new_input),
        closing=template_parts.closing,
        trace="",
    )


def full_prompt(system_prompt: str, edge_prompt: str) -> str:
    """The full GPT4Tools prompt that `PromptParts` split into `system_prompt` and `edge_prompt` (its
    inverse): the in-context baseline answers the same requests as LoRA-Gen. The trace starts at the
    first "Thought: Do I need to use a tool?" line after "New input:"."""
    from .gpt4tools_format import THOUGHT_START  # imported here: that module reads this one's templates

    at = system_prompt.find(CLOSING_START)
    if at < 0:
        raise PromptFormatError("Not a GPT4Tools system prompt: the closing 'GPT4Tools needs to use tools...' line is missing.")
    head, closing = system_prompt[:at], system_prompt[at:]
    trace_at = edge_prompt.find("\n" + THOUGHT_START, max(edge_prompt.find("New input: "), 0))
    user, trace = (edge_prompt, "") if trace_at < 0 else (edge_prompt[:trace_at], edge_prompt[trace_at + 1 :])
    return head + user + closing + trace


def system_prompt_for(tools: list[tuple[str, str]]) -> str:
    """The system prompt for a tool set (what the generator reads); independent of any request."""
    return split_prompt(build_prompt(tools, new_input="")).system_prompt
