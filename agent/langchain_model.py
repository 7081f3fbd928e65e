"""LoRA-Gen as a LangChain chat model: bound tools become a generated adapter, not prompt text.

    model.bind_tools(tools) ─► GPT4Tools system prompt of the tools ─► adapter (generated once, cached)
    messages ─► GPT4Tools edge prompt (history, new input, steps so far) ─► edge model ─► AIMessage

`LoRAGenChatModel()` runs the embedded default model with the shipped generator; it works as the
model of `langchain.agents.create_agent(model, tools)`. Conversion, both ways:

- The last human message is the GPT4Tools "New input"; earlier human / AI messages are the
  "Previous conversation" (`Human: ...` / `AI: ...` lines, so the image turn of GPT4Tools is a
  human message "Provide an image named image/x.png. Description: ... Understand the image using
  tools." answered "Received."). Tool calls after the last human message and their `ToolMessage`
  results become the trace: `Action:`, `Action Input:`, `Observation:` lines.
- A reply `Action: <tool>` + `Action Input: a, b` becomes one `AIMessage.tool_calls` entry; the input
  is split on commas over the tool's parameters (all of it for a one-parameter tool). A reply
  `AI: <text>` becomes the message content.
- System messages are task-level text: in mode "loragen" they are prepended to the system prompt the
  generator reads (so they shape the adapter and never reach the edge context); in mode "icl" they
  lead the full prompt.
- With tools bound, decoding is constrained (`constrained=True`, the default) by the GPT4Tools trace
  grammar of the bound tools: the model can only name one of them, and a tool whose definition states
  its input in GPT4Tools' words gets that many parts, its image parts paths the conversation mentions
  (when it mentions any). With `tool_prior=True` (the default) the choice of tool is steered by the
  tools' descriptions, matched with the last human message (loragen_core/tool_prior.py).
- A malformed reply (possible only unconstrained) gets one corrective retry (as in `Agent`); a second
  one is returned as plain content with `response_metadata["format_error"]`. `tool_choice` is accepted and ignored: the model
  always chooses between a tool call and an answer.

Every reply's `response_metadata` carries the adapter hash, whether it came from a cache, and the
generation, merge and decode times; `model.runtime.adapter_generations` counts cloud-LM passes.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS
from tools.gpt4tools_prompt import prompt_parts
from tools.registry import ToolDefinitionError, check_tool_definition

from loragen_core.tool_prior import ToolPrior, default_retriever
from tools.gpt4tools_grammar import tool_call_grammar

from tools.gpt4tools_format import ACTION, FINAL_ANSWER, OBSERVATION_STOP

from .parsing import IMAGE_PATH, ParsedTurn, grounded_answer, parse_turn, tool_step_text, with_format_hint
from .modes import DEFAULT_MODE, FULL_PROMPT_LORA, check_mode, edge_text, uses_adapter
from .runtime import LoRAGenRuntime, RuntimeCompletion
from .streaming import stream_in_thread

MAX_TOOLS = 32  # GPT4Tools prompts list 2-5 tools; 32 keeps the system prompt within the cloud LM's reading


@dataclass(frozen=True)
class _Request:
    prompt: str  # what the edge model reads
    system_prompt: str | None  # what the generator reads (None: no adapter)
    tools: dict[str, dict]  # tool name → OpenAI-style function spec; empty: plain chat
    conversation: str = ""  # every message's text: the files it names are the ones that exist
    last_result: tuple[str, str] | None = None  # (tool, result) of the last tool call since the human spoke


class LoRAGenChatModel(BaseChatModel):
    """A LangChain chat model served by a LoRA-Gen specialised edge model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    runtime: Any = Field(default=None, exclude=True, description="A LoRAGenRuntime; None: the process-wide default.")
    mode: str = Field(default=DEFAULT_MODE, description="What stays in context (agent/modes.py): loragen, loragen-names, icl or full-prompt-lora.")
    max_new_tokens: int = Field(default=DEFAULT_MAX_NEW_TOKENS, description="Decoding budget per model call.")
    constrained: bool = Field(default=True, description="Decode tool-bound replies under the bound tools' trace grammar.")
    tool_prior: bool = Field(default=True, description="With the grammar: steer the choice of tool by the tools' descriptions.")

    @property
    def _llm_type(self) -> str:
        return "loragen"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"mode": self.mode, "max_new_tokens": self.max_new_tokens, "constrained": self.constrained,
                "tool_prior": self.tool_prior}

    def get_runtime(self) -> LoRAGenRuntime:
        if self.runtime is None:  # loaded on first use, so constructing the model stays cheap
            self.runtime = LoRAGenRuntime.default()
        return self.runtime

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable:
        """Bind tools: their names and descriptions become the system prompt of the adapter.

        Raises `ToolDefinitionError` for a name or description that would corrupt the prompt (see
        `tools.registry.check_tool_definition`), duplicate names, or more than `MAX_TOOLS` tools."""
        specs = [convert_to_openai_tool(tool) for tool in tools]
        if len(specs) > MAX_TOOLS:
            raise ToolDefinitionError(f"{len(specs)} tools bound; at most {MAX_TOOLS} fit one generated adapter's system prompt.")
        # One-line descriptions, as the TOOLS block shows them (copies: the caller's dicts stay as they were).
        specs = [
            {**spec, "function": {**spec["function"], "description": " ".join(str(spec["function"].get("description") or "").split())}}
            for spec in specs
        ]
        for spec in specs:
            check_tool_definition(spec["function"]["name"], spec["function"]["description"])
        if len({spec["function"]["name"] for spec in specs}) < len(specs):
            raise ToolDefinitionError("Two bound tools have the same name; the model could not tell them apart.")
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=specs, **kwargs)

    # ---- LangChain entry points ---------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self._respond(messages, stop, kwargs.get("tools"), on_text=None)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Decode in a worker thread; stream an answer's text as it is written. A tool call arrives
        whole in the last chunk (its name and input are only known once its lines are complete), and
        so does an answer to a tool result (it is checked against that result first)."""
        tools = kwargs.get("tools")
        # After a tool result the answer may be replaced by that result (grounding), so it is not
        # shown before it is final: it arrives in one piece.
        hold = bool(tools) and _last_result(_after_last_human(messages)) is not None
        written, shown = "", ""
        for kind, value in stream_in_thread(lambda on_text: self._respond(messages, stop, tools, on_text=on_text)):
            if kind == "done":
                break
            written += value
            # Blanks at either end are held back: the finished reply is stripped.
            visible = None if hold else _answer_so_far(written) if tools else written.strip()
            if visible is not None and visible.startswith(shown) and len(visible) > len(shown):
                piece, shown = visible[len(shown) :], visible
                yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        final: AIMessage = value
        rest = final.content[len(shown) :] if final.content.startswith(shown) else final.content
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=rest,
                tool_call_chunks=[
                    {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i, "type": "tool_call_chunk"}
                    for i, c in enumerate(final.tool_calls)
                ],
                response_metadata=final.response_metadata,
                usage_metadata=final.usage_metadata,
                chunk_position="last",
            )
        )

    # ---- one reply ----------------------------------------------------------------------------

    def _respond(self, messages: list[BaseMessage], stop: list[str] | None, tools: list[dict] | None, on_text) -> AIMessage:
        check_mode(self.mode)
        request = self._request(messages, tools or [])
        runtime = self.get_runtime()
        stops = list(stop or []) + ([OBSERVATION_STOP] if request.tools else [])
        grammar = self._grammar(messages, request.tools)
        # The GPT4Tools stop rule (end once an "AI: ..." line is complete) is for tool-bound replies only.
        rule = {"grammar": grammar, "answer_line_ends": bool(request.tools),
                "tool_prior": self._tool_prior(messages, request.tools) if grammar else None}
        if self.mode == FULL_PROMPT_LORA:  # the trained baseline: the shipped full-prompt LoRA, full prompt
            rule["adapter"] = runtime.full_prompt_lora()
        completion = runtime.complete(request.prompt, request.system_prompt, self.max_new_tokens, stops, on_text, **rule)
        first = completion
        turn = parse_turn(completion.text) if request.tools else None
        if turn is not None and turn.kind == "malformed":
            retry = with_format_hint(request.prompt, list(request.tools))
            completion = runtime.complete(retry, request.system_prompt, self.max_new_tokens, stops, on_text, **rule)
            turn = parse_turn(completion.text)
        return self._message(turn, completion, first, request)

    def _grammar(self, messages: list[BaseMessage], tools: dict[str, dict]) -> str | None:
        if not (self.constrained and tools):
            return None
        images = list(dict.fromkeys(p for m in messages for p in IMAGE_PATH.findall(str(m.text))))
        return tool_call_grammar([(name, spec.get("description", "")) for name, spec in tools.items()], images or None)

    def _tool_prior(self, messages: list[BaseMessage], tools: dict[str, dict]) -> ToolPrior | None:
        humans = [m for m in messages if isinstance(m, HumanMessage)]
        if not (self.tool_prior and tools and humans):
            return None
        prior = default_retriever().prior(str(humans[-1].text), [(name, spec.get("description", "")) for name, spec in tools.items()],
                                          need=True)
        # The tools this request has run already (calls since the human spoke) set the odds of another step.
        called = tuple(c["name"] for m in _after_last_human(messages) if isinstance(m, AIMessage) for c in m.tool_calls)
        return dataclasses.replace(prior, called=called)

    def _request(self, messages: list[BaseMessage], tools: list[dict]) -> _Request:
        system_text = "\n\n".join(str(m.text) for m in messages if isinstance(m, SystemMessage) and str(m.text).strip())
        dialogue = [m for m in messages if not isinstance(m, SystemMessage)]
        last_human = max((i for i, m in enumerate(dialogue) if isinstance(m, HumanMessage)), default=None)
        if last_human is None:
            raise ValueError("LoRAGenChatModel needs at least one human message.")
        history = _history_text(dialogue[:last_human])
        new_input = str(dialogue[last_human].text)
        specs = {spec["function"]["name"]: spec["function"] for spec in tools}
        prefix = system_text + "\n\n" if system_text else ""
        if not specs:
            conversation = (history + "\nHuman: " + new_input) if history else new_input
            if not uses_adapter(self.mode):
                return _Request(prefix + conversation, None, {})
            return _Request(conversation, system_text or None, {})
        parts = prompt_parts([(name, spec.get("description", "")) for name, spec in specs.items()], new_input, history)
        parts = dataclasses.replace(parts, trace=_trace_text(dialogue[last_human + 1 :]))
        grounding = {"conversation": "\n".join(str(m.text) for m in messages), "last_result": _last_result(dialogue[last_human + 1 :])}
        if not uses_adapter(self.mode):
            return _Request(prefix + edge_text(parts, self.mode), None, specs, **grounding)
        return _Request(edge_text(parts, self.mode), prefix + parts.system_prompt, specs, **grounding)

    @staticmethod
    def _grounded(answer: str, request: _Request) -> str:
        """After a tool result, an answer true to it (see `parsing.grounded_answer`); before any, as written."""
        if request.last_result is None:
            return answer
        tool, result = request.last_result
        produced = IMAGE_PATH.findall(result)
        return grounded_answer(answer, tool, result, lambda path: path in request.conversation, produced)

    def _message(
        self, turn: ParsedTurn | None, completion: RuntimeCompletion, first: RuntimeCompletion, request: _Request
    ) -> AIMessage:
        metadata = {
            "model_name": "loragen",
            "mode": self.mode,
            "adapter_hash": first.adapter_hash,
            "adapter_cache_hit": first.adapter_cache_hit,
            "adapter_seconds": first.adapter_seconds,
            "merge_seconds": first.merge_seconds,
            "decode_seconds": completion.seconds,
            "raw": completion.text,
        }
        usage = {
            "input_tokens": completion.prompt_tokens,
            "output_tokens": completion.new_tokens,
            "total_tokens": completion.prompt_tokens + completion.new_tokens,
        }
        if turn is None:
            return AIMessage(content=completion.text.strip(), response_metadata=metadata, usage_metadata=usage)
        if turn.kind == "answer":
            return AIMessage(content=self._grounded(turn.answer, request), response_metadata=metadata, usage_metadata=usage)
        if turn.kind == "malformed":
            metadata["format_error"] = turn.problem
            return AIMessage(content=completion.text.strip(), response_metadata=metadata, usage_metadata=usage)
        name = _match_tool_name(turn.action, request.tools)
        call = {
            "name": name,
            "args": _arguments(turn.action_input, request.tools.get(name)),
            "id": f"call_{uuid.uuid4().hex[:16]}",
            "type": "tool_call",
        }
        return AIMessage(content="", tool_calls=[call], response_metadata=metadata, usage_metadata=usage)


# ---- conversions --------------------------------------------------------------------------------


def _history_text(messages: list[BaseMessage]) -> str:
    """Earlier turns as GPT4Tools' "Previous conversation": Human / AI lines (tool traffic left out)."""
    lines = []
    for message in messages:
        text = str(message.text).strip()
        if isinstance(message, HumanMessage):
            lines.append(f"Human: {text}")
        elif isinstance(message, AIMessage) and text:
            lines.append(f"AI: {text}")
    return "\n".join(lines)


def _trace_text(messages: list[BaseMessage]) -> str:
    """Tool calls since the last human message, with their results, as the context samples write them."""
    results = {m.tool_call_id: str(m.text) for m in messages if isinstance(m, ToolMessage)}
    trace = ""
    for message in messages:
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                action_input = ", ".join(str(v) for v in call["args"].values())
                trace += tool_step_text(call["name"], action_input, results.get(call["id"], ""))
    return trace


def _after_last_human(messages: list[BaseMessage]) -> list[BaseMessage]:
    last_human = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    return messages[last_human + 1 :]


def _last_result(messages: list[BaseMessage]) -> tuple[str, str] | None:
    """(tool name, result text) of the last tool message, if any."""
    names = {c["id"]: c["name"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    results = [m for m in messages if isinstance(m, ToolMessage)]
    return (names.get(results[-1].tool_call_id, results[-1].name or "the tool"), str(results[-1].text)) if results else None


def _answer_so_far(written: str) -> str | None:
    """While a tool-bound reply is decoded: its final answer so far, or None while it is not (yet)
    an answer. Decided as `parse_turn` decides: an `AI:` line with no `Action:` line before it."""
    action, answer = ACTION.search(written), FINAL_ANSWER.search(written)
    if answer is None or (action is not None and action.start() < answer.start()):
        return None
    return answer.group(1).strip()


def _match_tool_name(name: str, tools: dict[str, dict]) -> str:
    if name in tools:
        return name
    folded = {known.casefold(): known for known in tools}
    # An unknown name is passed on as is: LangChain's tool node answers it with the valid names.
    return folded.get(name.casefold(), name)


def _arguments(action_input: str, spec: dict | None) -> dict[str, Any]:
    """GPT4Tools' one "a, b" string → the tool's keyword arguments, in parameter order."""
    names = list(((spec or {}).get("parameters") or {}).get("properties") or {})
    if not names:
        return {} if spec is not None else {"input": action_input}
    if len(names) == 1:
        return {names[0]: action_input}
    values = [part.strip() for part in action_input.split(",", len(names) - 1)]
    return dict(zip(names, values))


def langchain_tools(tools: Sequence[Any], workspace: Any = None) -> list[BaseTool]:
    """GPT4Tools registry tools (names or `Tool`s) as LangChain tools that run in `workspace`."""
    from tools.registry import Tool, default_registry
    from tools.workspace import Workspace

    workspace = workspace if workspace is not None else Workspace()
    registry = default_registry()

    def convert(tool: Tool) -> BaseTool:
        def run(tool_input: str) -> str:
            return tool.run(tool_input, workspace)

        return StructuredTool.from_function(func=run, name=tool.name, description=tool.description)

    return [convert(registry.get(item) if isinstance(item, str) else item) for item in tools]
