"""The OpenAI-compatible server (agent/server, `python -m agent.serve`) through real clients: the
official `openai` client and LangChain's `ChatOpenAI`, against a live uvicorn on a free loopback port.

Which tool is called is checked on a rule-scripted runtime (tiny random models write gibberish); the
real runtime on the tiny models runs generation, caching, constrained decoding, streaming and the
length bound for real; one test runs the shipped default model.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from agent import LoRAGenRuntime, RequestTooLongError
from agent.server import MODEL_ID
from agent.server.batching import BatchingRuntime
from agent.server.live import live_server
from loragen_core import save_generator
from loragen_core.checkpoint import DEFAULT_CHECKPOINT, GENERATOR_WEIGHTS_FILE
from tests.test_agent import ANSWER, EDGE, FACE, TOOL_CALL, ScriptedRuntime, calibrated_tiny_generator
from tools.gpt4tools_prompt import system_prompt_for
from tools.registry import default_registry

REPO = Path(__file__).resolve().parents[1]
IMAGE = "image/dogpark.png"
DESCRIBE = "Get Photo Description"


def spec(name: str) -> dict:
    """A GPT4Tools tool as an OpenAI function schema (name and description from the registry)."""
    parameters = {"type": "object", "properties": {"image_path": {"type": "string"}}, "required": ["image_path"]}
    return {"type": "function", "function": {"name": name, "description": default_registry().get(name).description,
                                             "parameters": parameters}}


TOOLS = [spec(EDGE), spec(FACE)]


class RuleRuntime(ScriptedRuntime):
    """A scripted runtime that answers by rule, so one server serves every test: after a tool result
    it reports it; a request naming edges or faces gets that tool on the image it names; anything
    else is answered "Hello"."""

    def __init__(self):
        super().__init__([])
        self.lock = threading.Lock()

    def complete(self, prompt, system_prompt=None, *args, **kwargs):
        with self.lock:
            self.replies = [self.reply]
            return super().complete(prompt, system_prompt, *args, **kwargs)

    @staticmethod
    def reply(prompt: str) -> str:
        request = prompt.rsplit("New input:", 1)[-1]
        if "#bug" in request:
            raise RuntimeError("a bug in the runtime")
        image = re.search(r"image/\w+\.png", request)
        if "Observation: " in request:
            return ANSWER.format(text="Done: " + request.rsplit("Observation: ", 1)[1].strip())
        for word, name in (("edges", EDGE), ("faces", FACE)):
            if word in request and image and "New input:" in prompt:
                return TOOL_CALL.format(name=name, arg=image.group(0))
        return ANSWER.format(text="Hello there, friend.") if "New input:" in prompt else "Hello there, friend."

    def check_length(self, prompt: str) -> None:
        if len(prompt) > 16_384:
            raise RequestTooLongError(f"The request is {len(prompt):,} characters long.")


@pytest.fixture(scope="module")
def scripted():
    runtime = RuleRuntime()
    with live_server(runtime) as url:
        yield url, runtime


@pytest.fixture(scope="module")
def tiny_runtime(tiny_dirs, tmp_path_factory) -> LoRAGenRuntime:
    prompts = [system_prompt_for(default_registry().subset(names).descriptions()) for names in ([EDGE, FACE], [EDGE, DESCRIBE])]
    generator = calibrated_tiny_generator(tiny_dirs, prompts)
    # 256 prompt tokens: the tiny edge model has 512 positions, and the bound itself is under test.
    return LoRAGenRuntime(generator, adapter_cache_dir=tmp_path_factory.mktemp("adapters"), trained=False, max_prompt_tokens=256)


@pytest.fixture(scope="module")
def tiny(tiny_runtime):
    with live_server(tiny_runtime) as url:
        yield url


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)


def ask(url: str, messages: list[dict], **kwargs):
    return client(url).chat.completions.create(model=MODEL_ID, messages=messages, **kwargs)


def reassemble(chunks: list) -> tuple[str, list[tuple[str, str]], str | None]:
    """(content, [(tool name, arguments)], finish_reason) of a stream, as a client rebuilds it."""
    content, calls, finish = "", {}, None
    for chunk in chunks:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                name, arguments = calls.get(call.index, ("", ""))
                calls[call.index] = (name + (call.function.name or ""), arguments + (call.function.arguments or ""))
            finish = choice.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish


def summary(choice) -> tuple:
    calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    return choice.message.content, calls, choice.finish_reason


# ---- the protocol, on the scripted runtime --------------------------------------------------------


def test_a_tool_call_then_the_answer_after_the_tool_message(scripted):
    url, runtime = scripted
    messages = [{"role": "user", "content": f"Here is an image named {IMAGE}. Please detect the edges of {IMAGE}."}]
    first = ask(url, messages, tools=TOOLS)
    (call,) = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and first.choices[0].message.content is None
    assert call.type == "function" and call.function.name == EDGE and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"image_path": IMAGE}
    # The tools reached the generator as the GPT4Tools system prompt, not the edge model's context.
    assert runtime.calls[-1]["system_prompt"] == system_prompt_for([(t["function"]["name"], t["function"]["description"]) for t in TOOLS])
    assert "Edge Detection On Image:" not in runtime.calls[-1]["prompt"]
    usage, extension = first.usage, first.model_extra["loragen"]
    assert usage.prompt_tokens == len(runtime.calls[-1]["prompt"].split()) and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert extension["full_prompt_tokens"] > 10 * usage.prompt_tokens and extension["adapter_hash"] == "scripted"
    assert extension["adapter_cache_hit"] is False

    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "image/edges123.png"}]
    second = ask(url, messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop" and not second.choices[0].message.tool_calls
    assert second.choices[0].message.content == "Done: Result saved as image/edges123.png"
    assert f"Action: {EDGE}\nAction Input: {IMAGE}\nObservation: Result saved as image/edges123.png" in runtime.calls[-1]["prompt"]


@pytest.mark.parametrize("request_text", [f"Detect the faces in {IMAGE}.", "Say hello."])
def test_streaming_reassembles_to_the_non_streamed_reply(scripted, request_text):
    url, _ = scripted
    messages = [{"role": "user", "content": request_text}]
    whole = ask(url, messages, tools=TOOLS).choices[0]
    chunks = list(ask(url, messages, tools=TOOLS, stream=True, stream_options={"include_usage": True}))
    content, calls, finish = reassemble(chunks)
    assert content == (whole.message.content or "") and finish == whole.finish_reason
    assert calls == [(c.function.name, c.function.arguments) for c in whole.message.tool_calls or []]
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0  # include_usage: the last chunk
    assert "adapter_hash" in chunks[-2].model_extra["loragen"]
    if not calls:
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2  # the answer arrives in pieces


def test_the_stream_is_server_sent_events_ending_with_done(scripted):
    url, _ = scripted
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Say hello."}], "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "stop"


def test_langchain_create_agent_over_chat_openai_calls_the_right_tool(scripted):
    url, _ = scripted
    called = []

    @tool(EDGE, description=default_registry().get(EDGE).description)
    def edges(image_path: str) -> str:
        called.append((EDGE, image_path))
        return "image/edgesabc.png"

    @tool(FACE, description=default_registry().get(FACE).description)
    def faces(image_path: str) -> str:
        called.append((FACE, image_path))
        return "image/facesabc.png"

    model = ChatOpenAI(base_url=url + "/v1", api_key="x", model=MODEL_ID, max_retries=0)
    messages = create_agent(model, [edges, faces]).invoke({"messages": [HumanMessage(f"Please find the faces in {IMAGE}.")]})["messages"]
    assert called == [(FACE, IMAGE)]
    assert [type(m) for m in messages[1:]] == [AIMessage, ToolMessage, AIMessage]
    assert messages[-1].content == "Done: Result saved as image/facesabc.png"


def test_tool_choice_none_decodes_plain_chat_without_tools(scripted):
    url, runtime = scripted
    reply = ask(url, [{"role": "user", "content": f"Detect the edges of {IMAGE}."}], tools=TOOLS, tool_choice="none")
    assert reply.choices[0].message.content == "Hello there, friend." and not reply.choices[0].message.tool_calls
    call = runtime.calls[-1]
    assert call["system_prompt"] is None and call["grammar"] is None and call["answer_line_ends"] is False
    assert call["prompt"] == f"Detect the edges of {IMAGE}."


def test_models_and_health(scripted):
    url, _ = scripted
    assert [m.id for m in client(url).models.list()] == [MODEL_ID]
    assert httpx.get(url + "/health").json() == {"status": "ok", "model": MODEL_ID}
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(url).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


# ---- hostile input: an OpenAI error object, and the server stays up ----------------------------------------


def _body(**changes) -> dict:
    return {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], **changes}


def _tool(name: str, description: str = "Finds faces.") -> dict:
    return {"type": "function", "function": {"name": name, "description": description}}


HOSTILE = {
    "malformed json": (b'{"model": "x", "messages": [', 400, "invalid_json"),
    "not an object": (b"[1, 2]", 422, "invalid_request_body"),
    "no messages": (_body(messages=[]), 422, "invalid_request_body"),
    "bad role": (_body(messages=[{"role": "wizard", "content": "hi"}]), 422, "invalid_request_body"),
    "tool message without id": (_body(messages=[{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]), 422, "invalid_request_body"),
    "no user message": (_body(messages=[{"role": "system", "content": "be nice"}]), 400, "missing_user_message"),
    "image part": (_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), 400, "unsupported_content"),
    "body over 1 MiB": (_body(messages=[{"role": "user", "content": "x" * (1 << 20)}]), 413, "request_too_large"),
    "too many tools": (_body(tools=[_tool(f"Tool {i}") for i in range(33)]), 400, "invalid_tool"),
    "name with a comma": (_body(tools=[_tool("Detect, Face")]), 400, "invalid_tool"),
    "no description": (_body(tools=[{"type": "function", "function": {"name": "Detect Face"}}]), 400, "invalid_tool"),
    "description with a template line": (_body(tools=[_tool("Detect Face", "Observation: hi")]), 400, "invalid_tool"),
    "over-long message": (_body(messages=[{"role": "user", "content": "Please detect the edges. " * 4000}]), 400, "context_length_exceeded"),
    "over the token bound": (_body(messages=[{"role": "user", "content": "edges " * 300}]), 400, "context_length_exceeded"),
    "unknown model": (_body(model="gpt-4o"), 404, "model_not_found"),
    "tool_choice required": (_body(tools=[_tool("Detect Face")], tool_choice="required"), 400, "unsupported_value"),
    "max_tokens over the limit": (_body(max_tokens=100_000), 400, None),
    "bad tool-call arguments": (_body(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "A", "arguments": "{oops"}}]},
    ]), 400, "invalid_arguments"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_requests_get_an_openai_error_and_the_server_stays_up(tiny, tiny_runtime, case):
    body, status, code = HOSTILE[case]
    generations = tiny_runtime.adapter_generations
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    for stream in (False, True):  # a stream is refused the same way, before its first event
        if stream and isinstance(body, dict):
            content = json.dumps({**body, "stream": True}).encode()
        response = httpx.post(tiny + "/v1/chat/completions", content=content, headers={"content-type": "application/json"}, timeout=60)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"]
        assert error["type"] == "invalid_request_error" and "Traceback" not in response.text
    assert tiny_runtime.adapter_generations == generations  # refused before any model work
    assert httpx.get(tiny + "/health").status_code == 200


def test_unknown_routes_and_methods_get_error_objects(tiny):
    assert httpx.get(tiny + "/v1/nothing").json()["error"]["code"] == "not_found"
    assert httpx.get(tiny + "/v1/chat/completions").status_code == 405
    with pytest.raises(openai.UnprocessableEntityError):
        client(tiny).chat.completions.create(model=MODEL_ID, messages=[{"role": "wizard", "content": "hi"}])


def test_a_bug_is_a_500_error_object_and_a_stream_ends_with_an_error_event(scripted):
    url, _ = scripted
    messages = [{"role": "user", "content": "#bug"}]
    with pytest.raises(openai.InternalServerError, match="the failure is in its log") as raised:
        ask(url, messages)
    assert "Traceback" not in raised.value.response.text and "a bug in the runtime" not in raised.value.response.text
    with pytest.raises(openai.APIError, match="failed while decoding"):
        list(ask(url, messages, stream=True))
    assert httpx.get(url + "/health").status_code == 200


# ---- the real runtime on the tiny models ------------------------------------------------------------------


def test_tiny_models_give_a_well_formed_reply_under_constrained_decoding(tiny, tiny_runtime):
    messages = [{"role": "user", "content": f"Here is an image named {IMAGE}. Please detect the edges of {IMAGE}."}]
    first = ask(tiny, messages, tools=[spec(EDGE), spec(DESCRIBE)], max_tokens=48)
    again = ask(tiny, messages, tools=[spec(EDGE), spec(DESCRIBE)], max_tokens=48)
    choice, extension = first.choices[0], first.model_extra["loragen"]
    # The grammar admits only a call to a bound tool on the named image, or an answer.
    if choice.message.tool_calls:
        (call,) = choice.message.tool_calls
        assert call.function.name in (EDGE, DESCRIBE) and json.loads(call.function.arguments) == {"image_path": IMAGE}
        assert choice.finish_reason == "tool_calls"
    else:
        assert choice.finish_reason in ("stop", "length") and isinstance(choice.message.content, str)
    assert re.fullmatch(r"[0-9a-f]{64}", extension["adapter_hash"]) and extension["adapter_cache_hit"] is False
    assert again.model_extra["loragen"]["adapter_cache_hit"] is True  # generated once, then reused
    assert summary(again.choices[0]) == summary(choice)  # greedy: the same reply
    edge_prompt = f"\n\nNew input: Here is an image named {IMAGE}. Please detect the edges of {IMAGE}."
    assert first.usage.prompt_tokens == tiny_runtime.count_prompt_tokens(edge_prompt) < extension["full_prompt_tokens"]


def test_tiny_models_stream_the_same_reply(tiny):
    for tools in (None, [spec(EDGE), spec(DESCRIBE)]):
        options = {"tools": tools} if tools else {}
        messages = [{"role": "user", "content": f"Describe {IMAGE}."}]
        whole = ask(tiny, messages, max_tokens=24, **options).choices[0]
        content, calls, finish = reassemble(list(ask(tiny, messages, max_tokens=24, stream=True, **options)))
        assert (content, finish) == (whole.message.content or "", whole.finish_reason)
        assert [name for name, _ in calls] == [c.function.name for c in whole.message.tool_calls or []]


def test_concurrent_tenants_with_different_tools_are_all_answered(tiny):
    """Eight requests at once over two tool sets: the runtime's lock serialises decoding, each gets
    its own tool set's adapter, and /health answers meanwhile."""
    tool_sets = [[spec(EDGE), spec(FACE)], [spec(EDGE), spec(DESCRIBE)]]

    def one(i: int):
        return ask(tiny, [{"role": "user", "content": f"Describe image/x{i}.png."}], tools=tool_sets[i % 2], max_tokens=16)

    with ThreadPoolExecutor(8) as pool:
        replies = pool.map(one, range(8))
        assert httpx.get(tiny + "/health", timeout=5).status_code == 200
        replies = list(replies)
    hashes = [r.model_extra["loragen"]["adapter_hash"] for r in replies]
    assert len(set(hashes[0::2])) == len(set(hashes[1::2])) == 1 and hashes[0] != hashes[1]


def test_micro_batched_rows_equal_each_request_decoded_alone(tiny, tiny_runtime):
    """Eight tenants at once over two tool sets, through the micro-batcher: each reply (text, tool
    call, token counts) is what the same request gets decoded alone, and rows really shared decodes."""
    tool_sets = [[spec(EDGE), spec(FACE)], [spec(EDGE), spec(DESCRIBE)]]
    requests = [
        (tool_sets[i % 2], f"Here is image/p{i}.png. Detect the edges of image/p{i}.png." if i % 3 else f"Describe image/p{i}.png.")
        for i in range(8)
    ]

    def one(url: str, request) -> tuple:
        tools, text = request
        reply = ask(url, [{"role": "user", "content": text}], tools=tools, max_tokens=48)
        return summary(reply.choices[0]), reply.usage.prompt_tokens, reply.usage.completion_tokens

    alone = [one(tiny, r) for r in requests]
    batching = BatchingRuntime(tiny_runtime, window_seconds=0.5)
    with live_server(batching) as url, ThreadPoolExecutor(8) as pool:
        batched = list(pool.map(lambda r: one(url, r), requests))
    assert max(batching.batch_sizes) > 1, batching.batch_sizes
    assert batched == alone
    # Tool calls among them: their rows' grammar was narrowed to stop at "Observation:".
    assert any(s[1] for s, _, _ in batched), "no row called a tool: the narrowed grammar went untested"


def test_sixteen_tenants_at_once_see_nothing_of_each_other(tiny, tiny_runtime):
    """A bounded 16-client load through the micro-batcher, each tenant with its own image and an
    earlier turn of its own: no reply names another tenant's image or history, each gets its own
    tool set's adapter, and the server answers /health afterwards."""
    tool_sets = [[spec(EDGE), spec(FACE)], [spec(EDGE), spec(DESCRIBE)]]

    def one(url: str, i: int):
        messages = [{"role": "user", "content": f"Here is image/t{i}x.png, tenant{i}word."},
                    {"role": "assistant", "content": "Noted."},
                    {"role": "user", "content": f"Detect the edges of image/t{i}x.png."}]
        return ask(url, messages, tools=tool_sets[i % 2], max_tokens=48)  # room for the longest name and a path

    batching = BatchingRuntime(tiny_runtime, window_seconds=0.3)
    with live_server(batching) as url:
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda i: one(url, i), range(16)))
        assert httpx.get(url + "/health", timeout=5).status_code == 200
    for i, reply in enumerate(replies):
        message = reply.choices[0].message
        text = (message.content or "") + "".join(c.function.arguments for c in message.tool_calls or [])
        others = [j for j in range(16) if j != i and (f"image/t{j}x.png" in text or f"tenant{j}word" in text)]
        assert not others, (i, text)
    hashes = [r.model_extra["loragen"]["adapter_hash"] for r in replies]
    assert len(set(hashes[0::2])) == len(set(hashes[1::2])) == 1 and hashes[0] != hashes[1]
    assert max(batching.batch_sizes) > 1
    # Under the agent's grammar a tool call can only name a file of its own conversation.
    assert all(f"image/t{i}x.png" in c.function.arguments for i, r in enumerate(replies) for c in r.choices[0].message.tool_calls or []), [(i, c.function.name, c.function.arguments) for i, r in enumerate(replies) for c in r.choices[0].message.tool_calls or []]


# ---- the command -------------------------------------------------------------------------------------------


def test_python_m_agent_serve_answers_and_exits_cleanly_on_sigterm(tiny_dirs, tmp_path):
    checkpoint = save_generator(calibrated_tiny_generator(tiny_dirs, ["x"]), tmp_path / "generator")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "LORAGEN_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "agent.serve", "--port", str(port), "--generator", str(checkpoint), "--edge-model", str(tiny_dirs["edge"])],  # micro-batching on: the default
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.5)
        reply = ask(url, [{"role": "user", "content": f"Detect the edges of {IMAGE}."}], tools=[spec(EDGE)], max_tokens=8)
        assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
        log = server.communicate(timeout=10)[0]
    assert "Traceback" not in log and "Finished server process" in log


# ---- the shipped default model --------------------------------------------------------------------------


@pytest.mark.real_model
@pytest.mark.skipif(
    not (DEFAULT_CHECKPOINT / GENERATOR_WEIGHTS_FILE).is_file(),
    reason="no trained generator shipped yet (loragen_core/checkpoints/default)",
)
def test_the_default_model_calls_the_edge_tool_through_the_openai_client():
    with live_server(LoRAGenRuntime.default()) as url:
        reply = ask(url, [{"role": "user", "content": f"Here is an image named {IMAGE}. Please detect the edges of {IMAGE}."}],
                    tools=[spec(EDGE), spec(DESCRIBE)])
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == EDGE and IMAGE in json.loads(call.function.arguments).values()


@pytest.mark.real_model
@pytest.mark.skipif(
    not (DEFAULT_CHECKPOINT / GENERATOR_WEIGHTS_FILE).is_file(),
    reason="no trained generator shipped yet (loragen_core/checkpoints/default)",
)
def test_the_default_model_drives_a_langchain_agent_over_chat_openai_to_the_edge_tool():
    called = []

    @tool(EDGE, description=default_registry().get(EDGE).description)
    def edges(image_path: str) -> str:
        called.append(image_path)
        return "image/edges_dogpark.png"

    @tool(DESCRIBE, description=default_registry().get(DESCRIBE).description)
    def describe(image_path: str) -> str:
        called.append(("describe", image_path))
        return "A dog park with two dogs."

    with live_server(LoRAGenRuntime.default()) as url:
        model = ChatOpenAI(base_url=url + "/v1", api_key="x", model=MODEL_ID, max_retries=0, timeout=300)
        agent = create_agent(model, [edges, describe])
        message = f"Here is an image named {IMAGE}. Please detect the edges of {IMAGE}."
        messages = agent.invoke({"messages": [HumanMessage(message)]}, {"recursion_limit": 6})["messages"]
    assert called[0] == IMAGE, called
    first_call = messages[1].tool_calls[0]
    assert first_call["name"] == EDGE and IMAGE in first_call["args"].values()
    assert isinstance(messages[2], ToolMessage) and messages[2].content == "image/edges_dogpark.png"
    assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls and messages[-1].content
