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

`input_formats` goes further, for every tool whose description says what its input is (GPT4Tools
writes "a comma separated string of two, representing the image_path and the question"): the input
must have exactly that many comma-separated parts, each image part one of `image_paths` and each text
part free text without a comma. A comma inside a text part would split it into two arguments, for the
tool's own parser as for the benchmark's scorer, so it is the one thing the grammar forbids there.

The agent stops decoding at `Observation:` and writes the observation itself; in evaluation (the
authors' protocol) the model writes the whole trace, observations included, which the grammar allows
as one line, the format the templates and the test set's gold traces use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence

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


# "The input to this tool should be a comma separated string of two, representing the image_path, the
# text description of the object to be found" / "... a string, representing the image_path."
_INPUT_SENTENCE = re.compile(
    r"The input to this tool should be a (?:comma separated string of (?P<count>two|three|four)|string), representing (?P<parts>[^.]*)"
)
_COUNTS = {"two": 2, "three": 3, "four": 4}


def input_format(description: str) -> tuple[str, ...] | None:
    """The kinds ("image" or "text") of a tool's comma-separated input parts, as its description words
    them; None when the description does not say in GPT4Tools' words (its input is then left free)."""
    found = _INPUT_SENTENCE.search(description)
    if not found:
        return None
    count = _COUNTS[found["count"]] if found["count"] else 1
    first = "image" if found["parts"].strip().startswith("the image_path") else "text"
    if count == 1:
        return (first,)
    return (first,) + ("text",) * (count - 1)


def _literal(text: str) -> str:
    # Lark string literals use JSON's escapes for quotes, backslashes and newlines.
    return json.dumps(text)


def _alternatives(options: Iterable[str]) -> str:
    return " | ".join(_literal(option) for option in options)


def trace_grammar(
    tool_names: Sequence[str],
    image_tools: Sequence[str] = (),
    image_paths: Sequence[str] | None = None,
    input_formats: Mapping[str, tuple[str, ...] | None] | None = None,
) -> str:
    """A Lark grammar for a GPT4Tools trace over exactly `tool_names`.

    `image_tools`: the tools whose whole input is one image path; with `image_paths` given, their
    `Action Input` must be one of those paths (with none given, such tools cannot be called at all:
    there is no image to call them on). `input_formats` (with `image_paths` given): each tool's input
    parts (see `input_format`); a tool with a format is held to it, one whose format is None writes a
    free line, and a tool that needs an image cannot be called while there is none.
    """
    names = list(dict.fromkeys(tool_names))
    paths = list(dict.fromkeys(image_paths or ()))
    formats: dict[str, tuple[str, ...] | None] = {name: None for name in names}
    if image_paths is not None:
        formats.update({name: ("image",) for name in image_tools if name in formats})
        formats.update({name: fmt for name, fmt in (input_formats or {}).items() if name in formats and fmt})
    by_format: dict[tuple[str, ...] | None, list[str]] = {}
    for name in names:
        if formats[name] is None or "image" not in formats[name] or paths:
            by_format.setdefault(formats[name], []).append(name)
    image = f"({_alternatives(paths)})" if paths else None
    calls = [
        f"({_alternatives(group)}) {_literal(chr(10) + 'Action Input: ')} {_input_rule(fmt, image)}"
        for fmt, group in by_format.items()
    ]
    rules = ["start: step* answer"]
    if calls:
        rules.append(f"step: {_literal(TOOL_STEP_START)} call {_literal(chr(10) + OBSERVATION_STOP + chr(10))} LINE {_literal(chr(10))}")
        rules.append("call: " + " | ".join(calls))
    else:
        rules[0] = "start: answer"
    rules.append(f"answer: {_literal(ANSWER_START)} LINE {_literal(chr(10))}?")
    rules.append("LINE: /[^\\n]*/")
    if any(fmt and "text" in fmt for fmt in by_format):
        rules.append("TEXT: /[^,\\n]+/")
    return "\n".join(rules) + "\n"


def _input_rule(fmt: tuple[str, ...] | None, image: str | None) -> str:
    if fmt is None:
        return "LINE"
    return f" {_literal(', ')} ".join(image if kind == "image" else "TEXT" for kind in fmt)


def tool_call_grammar(definitions: Sequence[tuple[str, str]], image_paths: Sequence[str] | None = None,
                      arguments: bool = True) -> str:
    """The grammar for (name, description) tools: names only when `image_paths` is None; with the
    conversation's `image_paths`, image-only tools take one of them, and with `arguments` every tool
    whose description states its input format is held to it."""
    names = [name for name, _ in definitions]
    image_tools = [name for name, description in definitions if takes_only_an_image(description)]
    formats = {name: input_format(description) for name, description in definitions} if arguments else None
    return trace_grammar(names, image_tools, image_paths, formats)
