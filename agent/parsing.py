"""Read one GPT4Tools turn written by the edge model, and write the trace the model reads back.

A turn is either a tool call or a final answer; the format itself is tools/gpt4tools_format.py.

Steps already taken are appended to the edge prompt exactly as the training data's context samples
write them (eval_gpt4tools/builder.py): the tool-call lines followed by `Observation: <result>`. A
result that starts with the image a tool wrote is written as the training data writes it, `Result
saved as <path>`: shown the bare path, a trained edge model (120-step CPU checkpoint) answered with an
invented file name; shown the training phrasing, it copied the path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools.gpt4tools_format import (
    ACTION, ACTION_INPUT, ANSWER_THOUGHT, FINAL_ANSWER, OBSERVATION_STOP, THOUGHT, TOOL_THOUGHT, step_text,
)
from tools.gpt4tools_prompt import IMAGE_PATH

# What the training data writes where a tool's output goes ("[output_from_ocr_tool]", "[your response here]"):
# an answer containing one reports nothing real.
PLACEHOLDER = re.compile(r"\[[^\]\n]*(?:output|response|result)[^\]\n]*\]", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedTurn:
    kind: str  # "tool" | "answer" | "malformed"
    thought: str
    action: str | None = None
    action_input: str | None = None
    answer: str | None = None
    problem: str | None = None  # why a malformed turn is malformed


def parse_turn(text: str) -> ParsedTurn:
    """Classify one model turn. An `Action:` line before any `AI:` line makes a tool call (it needs
    an `Action Input:` line after it); otherwise an `AI:` line makes the final answer."""
    text = text.split(OBSERVATION_STOP, 1)[0]
    thought_match = THOUGHT.search(text)
    thought = thought_match.group(1).strip() if thought_match else ""
    action = ACTION.search(text)
    answer = FINAL_ANSWER.search(text)
    if action and (answer is None or action.start() < answer.start()):
        action_input = ACTION_INPUT.search(text, action.end())
        if action_input is None:
            return ParsedTurn("malformed", thought, problem="an 'Action:' line without an 'Action Input:' line")
        name = action.group(1).strip()
        if not name:
            return ParsedTurn("malformed", thought, problem="an empty 'Action:' line")
        return ParsedTurn("tool", thought, action=name, action_input=action_input.group(1).strip())
    if answer:
        return ParsedTurn("answer", thought, answer=answer.group(1).strip())
    return ParsedTurn("malformed", thought, problem="neither an 'Action:' nor an 'AI:' line")


def observation_for_model(observation: str) -> str:
    """A tool's output as the model reads it: one that starts with the image it wrote (a bare path, or
    a path and a note about it) gets the training data's "Result saved as " in front."""
    text = observation.strip()
    path = IMAGE_PATH.match(text)
    if path and (path.end() == len(text) or text[path.end()].isspace()):
        return f"Result saved as {text}"
    return observation


def tool_step_text(action: str, action_input: str, observation: str) -> str:
    """One finished step as the edge model reads it back (the builder's context-sample format)."""
    return step_text(action, action_input, observation_for_model(observation))


# Words too common in answers and observations to show that one repeats the other.
_COMMON_WORDS = frozenset(
    "the and for with this that these there are was were has have had not but you your can its it's image images "
    "picture photo result results saved tool".split()
)
_WORD = re.compile(r"[a-z]{3,}|\d+")


def _content_words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _COMMON_WORDS


def grounded_answer(answer: str, tool: str, observation: str, is_real: Callable[[str], bool], produced: Sequence[str]) -> str:
    """The final answer after `tool` returned `observation`, true to what it returned.

    The model's answer stands if it names only real files (`is_real`), holds no placeholder, names the
    images the tool produced (`produced`), if any, and, after a text result, shares a word with it.
    Otherwise the observation itself is the answer: a 135M model trained on placeholder observations
    otherwise reports files that do not exist, or a caption of its own ("The image is a selfie") where
    the tool said "No face found".
    """
    if observation.startswith("error"):
        return f"Sorry, {tool} did not work: {observation}"
    named = IMAGE_PATH.findall(answer)
    invented = [path for path in named if not is_real(path)]
    unrelated = not produced and not (_content_words(answer) & _content_words(observation))
    if PLACEHOLDER.search(answer) or invented or (produced and not set(produced) & set(named)) or not answer.strip() or unrelated:
        return observation_for_model(observation)
    return answer


def with_format_hint(prompt: str, tool_names: Sequence[str]) -> str:
    """The prompt of the one corrective retry after a malformed turn (the agent's and the LangChain
    model's): the same prompt, then the format restated with the tool names."""
    return prompt.rstrip("\n") + "\n" + format_hint(tool_names)


def format_hint(tool_names: Sequence[str]) -> str:
    """What `with_format_hint` appends."""
    return (
        "Your last reply did not follow the format. Reply with exactly one of:\n"
        f"Thought: {TOOL_THOUGHT}\nAction: one of [{', '.join(tool_names)}]\nAction Input: the input to the action\n"
        f"or\nThought: {ANSWER_THOUGHT}\nAI: your response\n"
    )
