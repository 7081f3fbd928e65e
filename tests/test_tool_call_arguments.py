"""The argument grammar: each tool's input follows the format its definition states (how many
comma-separated parts, which are images), read from GPT4Tools' own wording; a random tiny model held
to it writes only well-formed calls."""

from __future__ import annotations

import pytest

from agent.parsing import parse_turn
from tests.grammar_checks import grammar_accepts
from tools.gpt4tools_grammar import input_format, tool_call_grammar
from tools.registry import default_registry

CALL = "Thought: Do I need to use a tool? Yes\nAction: {name}\nAction Input: {args}\nObservation:\n"
IMAGE = "image/abcdefgh.png"


@pytest.mark.parametrize(
    "description, expected",
    [
        ("useful when you want to detect the edges. The input to this tool should be a string, representing the image_path", ("image",)),
        ("... The input to this tool should be a string, representing the text used to generate image.", ("text",)),
        ("... The input to this tool should be a comma separated string of two, representing the image_path and the question", ("image", "text")),
        ("... The input to this tool should be a comma separated string of three, representing the image_path, the object "
         "to be replaced, the object to be replaced with", ("image", "text", "text")),
        ("Counts words in a text.", None),
    ],
)
def test_the_input_format_is_read_from_gpt4tools_wording(description, expected):
    assert input_format(description) == expected


def test_every_registry_tool_states_its_input_format():
    # The 31 tools the agent ships: all of them say what they take, so all are held to it.
    assert all(input_format(description) for _, description in default_registry().descriptions())


def test_the_grammar_holds_each_tool_to_its_format(edge):
    tools = default_registry().subset(["Edge Detection On Image", "Answer Question About The Image",
                                       "Generate Image From User Input Text", "Replace Something From The Photo"]).descriptions()
    grammar = tool_call_grammar(tools, [IMAGE])
    good = [
        ("Edge Detection On Image", IMAGE),
        ("Answer Question About The Image", f"{IMAGE}, what is the man holding?"),
        ("Generate Image From User Input Text", "a red bicycle on a beach"),
        ("Replace Something From The Photo", f"{IMAGE}, the cat, a dog"),
    ]
    bad = [
        ("Edge Detection On Image", "image/zzzzzzzz.png"),  # not an image of the conversation
        ("Edge Detection On Image", f"{IMAGE}, edges"),  # one part too many
        ("Answer Question About The Image", IMAGE),  # the question is missing
        ("Answer Question About The Image", f"{IMAGE}, what, and why?"),  # a comma would split the question
        ("Generate Image From User Input Text", f"{IMAGE}, a red bicycle"),
        ("Replace Something From The Photo", f"{IMAGE}, the cat"),
    ]
    for name, args in good:
        assert grammar_accepts(edge, grammar, CALL.format(name=name, args=args)), (name, args)
    for name, args in bad:
        assert not grammar_accepts(edge, grammar, CALL.format(name=name, args=args)), (name, args)


def test_without_an_image_only_text_tools_can_be_called(edge):
    tools = default_registry().subset(["Answer Question About The Image", "Generate Image From User Input Text"]).descriptions()
    grammar = tool_call_grammar(tools, [])
    assert grammar_accepts(edge, grammar, CALL.format(name="Generate Image From User Input Text", args="a red bicycle"))
    assert not grammar_accepts(edge, grammar, "Thought: Do I need to use a tool? Yes\nAction: Answer Question")


def test_names_only_leaves_the_input_free(edge):
    tools = default_registry().subset(["Edge Detection On Image"]).descriptions()
    grammar = tool_call_grammar(tools, None)
    assert grammar_accepts(edge, grammar, CALL.format(name="Edge Detection On Image", args="anything, at all"))


def test_a_random_model_writes_only_well_formed_calls(edge):
    tools = default_registry().subset(["Answer Question About The Image", "Replace Something From The Photo"]).descriptions()
    grammar = tool_call_grammar(tools, [IMAGE])
    formats = {name: input_format(description) for name, description in tools}
    calls = 0
    for prompt in ("What is in image/abcdefgh.png?", "Replace the cat", "Hello there, a long request."):
        turn = parse_turn(edge.complete(prompt, max_new_tokens=60, grammar=grammar).text)
        if turn.kind == "tool":
            calls += 1
            parts = turn.action_input.split(",")
            assert len(parts) == len(formats[turn.action]) and parts[0] == IMAGE, turn
    assert calls, "the seeded random model calls a tool on these prompts; without a call the test checks nothing"
