"""LoRAGenChatModel: messages ⇄ GPT4Tools, tool calls, streaming, adapter caching, create_agent.

Conversions and the agent graph are checked on scripted replies (tiny models write gibberish);
caching and streaming run on the tiny models; one test runs the real default model with the shipped
generator (skipped until a trained one ships).
"""

from __future__ import annotations

import logging

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from agent import LoRAGenChatModel, LoRAGenRuntime, langchain_tools
from agent.parsing import IMAGE_PATH, format_hint, tool_step_text
from loragen_core.checkpoint import DEFAULT_CHECKPOINT, GENERATOR_WEIGHTS_FILE
from tests.test_agent import (
    ANSWER, EDGE, FACE, TOOL_CALL, ScriptedRuntime, calibrated_tiny_generator, workspace_with_image,
)
from tools import build_prompt, image_turn, split_prompt
from tools.gpt4tools_prompt import system_prompt_for
from tools.registry import Tool, default_registry

IMAGE = "image/kqgmvzxa.png"
IMAGE_TURN = f"Provide an image named {IMAGE}. Description: A dog on a couch. Understand the image using tools."


def recording_tools():
    """LangChain tools named and described as the GPT4Tools ones, recording how they are called."""
    calls = []

    @tool(EDGE, description=default_registry().get(EDGE).description)
    def edge_detection(image_path: str) -> str:
        calls.append((EDGE, {"image_path": image_path}))
        return "image/edgesxyz.png"

    @tool(FACE, description=default_registry().get(FACE).description)
    def detect_face(image_path: str) -> str:
        calls.append((FACE, {"image_path": image_path}))
        return "image/facesxyz.png"

    @tool("Replace Something From The Photo", description="useful to replace an object. The input should be three strings.")
    def replace(image_path: str, old: str, new: str) -> str:
        calls.append(("Replace", {"image_path": image_path, "old": old, "new": new}))
        return "image/replaced.png"

    return [edge_detection, detect_face, replace], calls


def conversation(request: str) -> list:
    return [HumanMessage(IMAGE_TURN), AIMessage("Received."), HumanMessage(request)]


def gpt4tools_prompt(tools, request: str) -> str:
    return build_prompt([(t.name, t.description) for t in tools], request, f"Human: {IMAGE_TURN}\nAI: Received.")


# ---- conversions, on scripted replies -----------------------------------------------------------


def test_bind_tools_turns_the_reply_into_a_tool_call():
    tools, _ = recording_tools()
    runtime = ScriptedRuntime([TOOL_CALL.format(name=EDGE, arg=IMAGE) + "Observation: invented\n"])
    reply = LoRAGenChatModel(runtime=runtime).bind_tools(tools).invoke(conversation("Detect the edges of this image."))

    assert reply.content == "" and len(reply.tool_calls) == 1
    assert {k: reply.tool_calls[0][k] for k in ("name", "args")} == {"name": EDGE, "args": {"image_path": IMAGE}}
    # A human "Provide an image named ..." message answered "Received." is GPT4Tools' image turn.
    assert f"Human: {IMAGE_TURN}\nAI: Received." == image_turn(IMAGE, "A dog on a couch.")
    parts = split_prompt(gpt4tools_prompt(tools, "Detect the edges of this image."))
    (call,) = runtime.calls
    assert call["system_prompt"] == parts.system_prompt == system_prompt_for([(t.name, t.description) for t in tools])
    assert call["prompt"] == parts.edge_prompt and "Observation:" in call["stop"]
    assert reply.response_metadata["adapter_hash"] == "scripted"


def test_create_agent_runs_the_tool_and_feeds_its_result_back():
    tools, calls = recording_tools()
    runtime = ScriptedRuntime([
        TOOL_CALL.format(name=EDGE, arg=IMAGE),
        lambda prompt: ANSWER.format(text="Here are the edges: " + prompt.rsplit("Observation: ", 1)[1].strip()),
    ])
    graph = create_agent(LoRAGenChatModel(runtime=runtime), tools)
    messages = graph.invoke({"messages": conversation("Detect the edges of this image.")})["messages"]

    assert calls == [(EDGE, {"image_path": IMAGE})]
    assert [type(m) for m in messages[3:]] == [AIMessage, ToolMessage, AIMessage]
    assert messages[-1].content == "Here are the edges: Result saved as image/edgesxyz.png" and not messages[-1].tool_calls
    full = gpt4tools_prompt(tools, "Detect the edges of this image.")
    assert runtime.calls[1]["prompt"] == split_prompt(full + tool_step_text(EDGE, IMAGE, "image/edgesxyz.png")).edge_prompt
    assert runtime.calls[0]["system_prompt"] == runtime.calls[1]["system_prompt"]


def test_arguments_split_over_parameters_and_unknown_tools_come_back_as_errors():
    tools, calls = recording_tools()
    runtime = ScriptedRuntime([
        TOOL_CALL.format(name="Edge Finder", arg=IMAGE),
        TOOL_CALL.format(name="Replace Something From The Photo", arg=f"{IMAGE}, dog, cat, big"),
        ANSWER.format(text="Replaced."),
    ])
    messages = create_agent(LoRAGenChatModel(runtime=runtime), tools).invoke({"messages": conversation("Swap the dog.")})["messages"]

    assert calls == [("Replace", {"image_path": IMAGE, "old": "dog", "new": "cat, big"})]
    assert "Edge Finder is not a valid tool" in messages[4].content and EDGE in messages[4].content
    assert "Observation: Error: Edge Finder is not a valid tool" in runtime.calls[1]["prompt"]
    # "Replaced." names no file though the tool wrote one: the answer reports the tool's real result.
    assert messages[-1].content == "Result saved as image/replaced.png"


def test_system_messages_shape_the_adapter_not_the_edge_prompt():
    tools, _ = recording_tools()
    note = "Always answer in French."
    messages = [SystemMessage(note), *conversation("Detect the edges of this image.")]
    loragen = ScriptedRuntime([ANSWER.format(text="ok")])
    LoRAGenChatModel(runtime=loragen).bind_tools(tools).invoke(messages)
    assert loragen.calls[0]["system_prompt"].startswith(note + "\n\n") and note not in loragen.calls[0]["prompt"]

    icl = ScriptedRuntime([ANSWER.format(text="ok")])
    LoRAGenChatModel(runtime=icl, mode="icl").bind_tools(tools).invoke(messages)
    assert icl.calls[0]["system_prompt"] is None
    assert icl.calls[0]["prompt"] == note + "\n\n" + gpt4tools_prompt(tools, "Detect the edges of this image.")


def test_malformed_reply_is_retried_once_then_returned_as_text():
    tools, _ = recording_tools()
    runtime = ScriptedRuntime(["Edges are lines.", "Still no format."])
    reply = LoRAGenChatModel(runtime=runtime).bind_tools(tools).invoke(conversation("Edges?"))
    assert runtime.calls[1]["prompt"] == runtime.calls[0]["prompt"] + "\n" + format_hint([t.name for t in tools])
    assert reply.content == "Still no format." and not reply.tool_calls
    assert reply.response_metadata["format_error"]


def test_streaming_matches_invoke_for_answers_and_tool_calls():
    tools, _ = recording_tools()
    answer = ANSWER.format(text="  The edges are in image/edgesxyz.png.  ")
    streamed = list(LoRAGenChatModel(runtime=ScriptedRuntime([answer])).bind_tools(tools).stream(conversation("Edges?")))
    invoked = LoRAGenChatModel(runtime=ScriptedRuntime([answer])).bind_tools(tools).invoke(conversation("Edges?"))
    assert len([c for c in streamed if c.content]) > 3  # the answer arrives piece by piece
    assert "".join(c.content for c in streamed) == invoked.content == "The edges are in image/edgesxyz.png."
    assert "Thought" not in "".join(c.content for c in streamed)

    call = TOOL_CALL.format(name=EDGE, arg=IMAGE)
    chunks = list(LoRAGenChatModel(runtime=ScriptedRuntime([call])).bind_tools(tools).stream(conversation("Edges?")))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == "" and [(c["name"], c["args"]) for c in merged.tool_calls] == [(EDGE, {"image_path": IMAGE})]


def test_create_agent_streams_tool_calls_results_and_the_answer():
    tools, calls = recording_tools()
    runtime = ScriptedRuntime([TOOL_CALL.format(name=EDGE, arg=IMAGE), ANSWER.format(text="The edges are in image/edgesxyz.png.")])
    graph = create_agent(LoRAGenChatModel(runtime=runtime), tools)
    events = [message for message, _ in graph.stream({"messages": conversation("Edges?")}, stream_mode="messages")]

    assert calls == [(EDGE, {"image_path": IMAGE})]
    tool_chunks = [m for m in events if getattr(m, "tool_call_chunks", None)]
    assert [c["name"] for m in tool_chunks for c in m.tool_call_chunks] == [EDGE]
    assert [m.content for m in events if isinstance(m, ToolMessage)] == ["image/edgesxyz.png"]
    after_tool = events[events.index(next(m for m in events if isinstance(m, ToolMessage))) + 1 :]
    pieces = [m.content for m in after_tool if m.content]
    # An answer to a tool result is checked against it before it is shown: one piece.
    assert pieces == ["The edges are in image/edgesxyz.png."]


def test_default_constructor_loads_the_default_runtime_on_first_use(monkeypatch):
    runtime = ScriptedRuntime(["hello"])
    monkeypatch.setattr(LoRAGenRuntime, "default", classmethod(lambda cls: runtime))
    model = LoRAGenChatModel()
    assert model.runtime is None
    assert model.invoke("Hi").content == "hello" and model.get_runtime() is runtime


def test_registry_tools_convert_to_langchain_tools(tmp_path):
    workspace, image = workspace_with_image(tmp_path)
    (edges,) = langchain_tools([EDGE], workspace)
    assert edges.name == EDGE and edges.description == default_registry().get(EDGE).description
    produced = edges.invoke({"tool_input": image})
    assert produced.startswith("image/") and workspace.resolve(produced).is_file()


# ---- the real runtime, on tiny models -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runtime(tiny_dirs, tmp_path_factory):
    tools, _ = recording_tools()
    prompts = [system_prompt_for([(t.name, t.description) for t in tools[:n]]) for n in (1, 2, 3)]
    generator = calibrated_tiny_generator(tiny_dirs, prompts)
    return LoRAGenRuntime(generator, adapter_cache_dir=tmp_path_factory.mktemp("adapters"), trained=False)


def test_first_call_with_a_tool_set_generates_the_adapter_later_calls_reuse_it(tiny_runtime, caplog):
    tools, _ = recording_tools()
    model = LoRAGenChatModel(runtime=tiny_runtime, max_new_tokens=8)
    before = tiny_runtime.adapter_generations
    with caplog.at_level(logging.INFO, logger="agent.runtime"):
        first = model.bind_tools(tools[:2]).invoke(conversation("Edges?"))
        second = model.bind_tools(tools[:2]).invoke(conversation("Faces?"))
        other = model.bind_tools(tools[:1]).invoke(conversation("Edges?"))
    assert first.response_metadata["adapter_cache_hit"] is False and second.response_metadata["adapter_cache_hit"] is True
    assert first.response_metadata["adapter_hash"] == second.response_metadata["adapter_hash"]
    assert other.response_metadata["adapter_hash"] != first.response_metadata["adapter_hash"]
    assert tiny_runtime.adapter_generations == before + 2
    assert sum("generated" in r.getMessage() for r in caplog.records) == 2


def test_streaming_on_tiny_models_adds_up_to_invoke(tiny_runtime):
    model = LoRAGenChatModel(runtime=tiny_runtime, max_new_tokens=16)
    chunks = [c.content for c in model.stream("Describe a dog.")]
    assert len([c for c in chunks if c]) > 1 and "".join(chunks) == model.invoke("Describe a dog.").content
    tools, _ = recording_tools()
    bound = model.bind_tools(tools)
    assert "".join(c.content for c in bound.stream(conversation("Edges?"))) == bound.invoke(conversation("Edges?")).content


def test_create_agent_streams_messages_on_tiny_models(tiny_runtime):
    tools, _ = recording_tools()
    graph = create_agent(LoRAGenChatModel(runtime=tiny_runtime, max_new_tokens=8), tools)
    events = [message for message, _ in graph.stream({"messages": conversation("Edges?")}, stream_mode="messages")]
    invoked = graph.invoke({"messages": conversation("Edges?")})["messages"][len(conversation("Edges?")):]

    # Message by message, the stream adds up to what invoke returns: each AI message's chunks (one id)
    # join to its text and tool calls, and the tool results come in the same order.
    streamed_ai: dict[str, list] = {}
    for message in events:
        if message.type == "AIMessageChunk":
            streamed_ai.setdefault(message.id, []).append(message)
    joined = [sum(chunks[1:], chunks[0]) for chunks in streamed_ai.values()]
    assert [m.content for m in joined] == [m.content for m in invoked if m.type == "ai"]
    assert [[c["name"] for c in m.tool_calls] for m in joined] == [[c["name"] for c in m.tool_calls] for m in invoked if m.type == "ai"]
    assert [m.content for m in events if m.type == "tool"] == [m.content for m in invoked if m.type == "tool"]
    assert any(m.content for m in joined), "the tiny model writes something"


# ---- the real default model with the shipped generator -----------------------------------------


@pytest.mark.real_model
@pytest.mark.skipif(
    not (DEFAULT_CHECKPOINT / GENERATOR_WEIGHTS_FILE).is_file(),
    reason="no trained generator shipped yet (loragen_core/checkpoints/default)",
)
@pytest.mark.parametrize(
    "request_text, tool_name",
    [("Detect the edges of this image.", EDGE), ("Segment all the objects in this image.", "Segment the Image")],
)
def test_create_agent_on_the_default_model_calls_the_right_tool_and_uses_its_result(tmp_path, request_text, tool_name):
    """Two requests that need different tools: a model that always calls one tool fails one of them."""
    workspace, image = workspace_with_image(tmp_path)
    registry = default_registry()
    called = []

    def recorded(name: str) -> Tool:
        real = registry.get(name)
        return Tool(real.name, real.description, lambda text, ws: called.append((name, text)) or real.func(text, ws))

    # With "Get Photo Description" first in this list, the shipped 120-step generator sends the
    # segmentation request to Edge Detection On Image; these three it tells apart.
    names = [FACE, "Segment the Image", EDGE]
    graph = create_agent(LoRAGenChatModel(), langchain_tools([recorded(n) for n in names], workspace))
    turn = f"Provide an image named {image}. Description: A white square on a black background. Understand the image using tools."
    messages = graph.invoke(
        {"messages": [HumanMessage(turn), AIMessage("Received."), HumanMessage(request_text)]},
        {"recursion_limit": 8},
    )["messages"]

    assert called and called[0] == (tool_name, image), f"expected {tool_name} on {image}, got {called}"
    observation = next(m.content for m in messages if isinstance(m, ToolMessage))
    produced = IMAGE_PATH.match(observation).group(0)  # the image the tool wrote (a note may follow)
    assert workspace.resolve(produced).is_file()
    final = messages[-1]
    # The answer comes after the tool's result, without another call, and reports it in GPT4Tools' form.
    assert isinstance(final, AIMessage) and not final.tool_calls and messages.index(final) > messages.index(
        next(m for m in messages if isinstance(m, ToolMessage))
    )
    assert final.content.startswith("Result saved as ")
    # The shipped generator copies the output's 8 random letters only some of the time; an answer
    # naming another file is replaced by the tool's real result, so the name is always the real one.
    assert produced in final.content
    replies = [m for m in messages if isinstance(m, AIMessage) and m.response_metadata.get("adapter_hash")]
    assert replies[-1].response_metadata["adapter_cache_hit"] is True  # generated once, then reused
    assert len({m.response_metadata["adapter_hash"] for m in replies}) == 1


@pytest.mark.real_model
@pytest.mark.skipif(
    not (DEFAULT_CHECKPOINT / GENERATOR_WEIGHTS_FILE).is_file(),
    reason="no trained generator shipped yet (loragen_core/checkpoints/default)",
)
def test_a_plain_user_message_calls_the_edge_tool_with_its_path_on_the_default_model():
    """The first-contact example: no GPT4Tools image turn, a path inside the request. Unconstrained,
    the shipped generator wrote `image/dogpark.png, edges detected` (measured); the grammar keeps an
    image-only tool's input to a path the conversation names."""
    tools = langchain_tools([EDGE, "Get Photo Description"])
    reply = LoRAGenChatModel().bind_tools(tools).invoke(
        [HumanMessage("Here is an image named image/dogpark.png. Please detect the edges of image/dogpark.png.")]
    )
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [(EDGE, {"tool_input": "image/dogpark.png"})]


def test_the_gpt4tools_stop_rule_applies_to_tool_bound_replies_only():
    tools, _ = recording_tools()
    runtime = ScriptedRuntime(["AI: a line of a plain reply\nand more", ANSWER.format(text="ok")])
    plain = LoRAGenChatModel(runtime=runtime).invoke([HumanMessage("Write a dialogue.")])
    LoRAGenChatModel(runtime=runtime).bind_tools(tools).invoke(conversation("Edges?"))
    assert [call["answer_line_ends"] for call in runtime.calls] == [False, True]
    assert plain.content == "AI: a line of a plain reply\nand more"
