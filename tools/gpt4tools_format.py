"""The GPT4Tools trace, in one place: its words, how a step is written, how a turn is read, and when
an answer is complete. The agent's parser, the decoding grammar, the training-data builder and the
edge runtime's stop rule all read it from here. (The scorer keeps the authors' own regexes verbatim,
eval_gpt4tools/scorer.py, so that scores stay comparable with the paper's.)

    Thought: Do I need to use a tool? Yes          Thought: Do I need to use a tool? No
    Action: <tool name>                            AI: <response>
    Action Input: <arguments joined by ", ">
    Observation: <the tool's result>

The two turn shapes are the templates' LLM_RESPONSE_TOOL_FORMAT and LLM_RESPONSE_HUMAN_FORMAT
(tools/data/prompt_templates.json); the constants below are checked against them on import.
"""

from __future__ import annotations

import re

from .gpt4tools_prompt import prompt_templates

THOUGHT_START = "Thought: Do I need to use a tool?"  # how every step of a trace begins
TOOL_THOUGHT = "Do I need to use a tool? Yes"
ANSWER_THOUGHT = "Do I need to use a tool? No"
TOOL_STEP_START = f"Thought: {TOOL_THOUGHT}\nAction: "
ANSWER_START = f"Thought: {ANSWER_THOUGHT}\nAI: "
# Decoding stops here in the agent: the observation is the tool's to write, not the model's.
OBSERVATION_STOP = "Observation:"

# Lenient line readers for the model's own turns (leading blanks, missing space after the colon).
THOUGHT = re.compile(r"^\s*Thought:[ \t]*(.*)$", re.MULTILINE)
ACTION = re.compile(r"^\s*Action:[ \t]*(.*)$", re.MULTILINE)
ACTION_INPUT = re.compile(r"^\s*Action Input:[ \t]*(.*)$", re.MULTILINE)
FINAL_ANSWER = re.compile(r"^\s*AI:[ \t]*(.*)$", re.MULTILINE | re.DOTALL)
# A final answer is complete once its `AI: ...` line has ended: the edge runtime's stop rule.
FINAL_ANSWER_DONE = re.compile(r"(^|\n)AI: [^\n]*\n")

_TOOL_CALL_FORMAT = prompt_templates()["LLM_RESPONSE_TOOL_FORMAT"]
_ANSWER_FORMAT = prompt_templates()["LLM_RESPONSE_HUMAN_FORMAT"]
assert _TOOL_CALL_FORMAT.startswith(TOOL_STEP_START), "the templates' tool turn changed"
assert _ANSWER_FORMAT.startswith(ANSWER_START), "the templates' answer turn changed"


def tool_call_text(action: str, action_input: str) -> str:
    """A tool call as the model writes it, up to and including the empty `Observation:` line."""
    return _TOOL_CALL_FORMAT.format(tool_name=action, args=action_input)


def step_text(action: str, action_input: str, observation: str) -> str:
    """One finished step, its observation on the `Observation:` line (the training data's context
    samples, and what the agent appends to the edge prompt)."""
    return tool_call_text(action, action_input).removesuffix(f"{OBSERVATION_STOP}\n") + f"{OBSERVATION_STOP} {observation}\n"


def answer_text(response: str) -> str:
    """A final answer as the model writes it: the `No` thought, then the `AI:` line."""
    return _ANSWER_FORMAT.format(response=response)
