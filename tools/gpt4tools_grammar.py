"""The GPT4Tools trace as a grammar: everything a constrained edge model may write for one tool set.

    Thought: Do I need to use a tool? Yes              (zero or more tool steps)
    Action: <one of the bound tools' exact names>
    Action Input: <one line>
    Observation:
    <one line>                                         (written by the tool in the agent, by the model in evaluation)
    Thought: Do I need to use a tool? No               (then exactly one answer)
    AI: <one line>

The grammar is Lark, as llguidance reads it (loragen_core/constrained.py applies it while decoding).
Tool names are alternatives of exact strings, so a constrained model cannot invent a tool: the names it
may write are the names of the tools that exist. `image_paths`, when given, restricts the input of
tools that take only an image path to those files, so no made-up path reaches a tool.

The agent stops decoding at `Observation:` and writes the observation itself; in evaluation (the
authors' protocol) the model writes the whole trace, observations included, which the grammar allows
as one line, the format the templates and the test set's gold traces use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from .gpt4tools_format import ANSWER_START, OBSERVATION_STOP, TOOL_STEP_START


# GPT4Tools describes each tool's input in words; these two sentences are how it says "an image".
_ONLY_AN_IMAGE = re.compile(r"The input to this tool should be a string, representing the image_path\.?\s*$")
_AN_IMAGE = re.compile(r"representing the image_path|receives image_path")


def takes_only_an_image(description: str) -> bool:
    """The tool's whole input is one image path (GPT4Tools' wording)."""
    return bool(_ONLY_AN_IMAGE.search(description))


def needs_an_image(description: str) -> bool:
    """The tool's input includes an image path."""
    return bool(_AN_IMAGE.search(description))


def _literal(text: str) -> str:
    # Lark string literals use JSON's escapes for quotes, backslashes and newlines.
    return json.dumps(text)


def _alternatives(options: Iterable[str]) -> str:
    return " | ".join(_literal(option) for option in options)


def trace_grammar(
    tool_names: Sequence[str],
    image_tools: Sequence[str] = (),
    image_paths: Sequence[str] | None = None,
) -> str:
    """A Lark grammar for a GPT4Tools trace over exactly `tool_names`.

    `image_tools`: the tools whose whole input is one image path; with `image_paths` given, their
    `Action Input` must be one of those paths (with none given, such tools cannot be called at all:
    there is no image to call them on).
    """
    names = list(dict.fromkeys(tool_names))
    restricted = set(image_tools) & set(names) if image_paths is not None else set()
    free = [name for name in names if name not in restricted]
    calls = []
    if free:
        calls.append(f"({_alternatives(free)}) {_literal(chr(10) + 'Action Input: ')} LINE")
    if restricted and image_paths:
        calls.append(
            f"({_alternatives(n for n in names if n in restricted)}) {_literal(chr(10) + 'Action Input: ')} "
            f"({_alternatives(dict.fromkeys(image_paths))})"
        )
    rules = ["start: step* answer"]
    if calls:
        rules.append(f"step: {_literal(TOOL_STEP_START)} call {_literal(chr(10) + OBSERVATION_STOP + chr(10))} LINE {_literal(chr(10))}")
        rules.append("call: " + " | ".join(calls))
    else:
        rules[0] = "start: answer"
    rules.append(f"answer: {_literal(ANSWER_START)} LINE {_literal(chr(10))}?")
    rules.append("LINE: /[^\\n]*/")
    return "\n".join(rules) + "\n"
