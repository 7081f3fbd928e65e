"""OpenAI chat messages ⇄ LangChain messages, so `LoRAGenChatModel` does the GPT4Tools conversion
(tools → system prompt → adapter; history, tool calls and results → edge prompt) for the server too."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from .errors import APIError
from .schema import ContentPart, Message, ToolSpec


def to_langchain(messages: list[Message]) -> list[BaseMessage]:
    """OpenAI messages as LangChain messages; a tool message becomes the Observation of its call."""
    converted: list[BaseMessage] = []
    for i, message in enumerate(messages):
        text = _text(message.content, f"messages.{i}.content")
        if message.role in ("system", "developer"):
            converted.append(SystemMessage(text))
        elif message.role == "user":
            converted.append(HumanMessage(text))
        elif message.role == "tool":
            converted.append(ToolMessage(text, tool_call_id=message.tool_call_id, name=message.name))
        else:
            calls = [
                {"name": c.function.name, "args": _arguments(c.function.arguments, f"messages.{i}.tool_calls.{j}"),
                 "id": c.id, "type": "tool_call"}
                for j, c in enumerate(message.tool_calls or [])
            ]
            converted.append(AIMessage(text, tool_calls=calls))
    if not any(isinstance(m, HumanMessage) for m in converted):
        raise APIError(400, "The messages need at least one user message: it is the request the model answers.",
                       param="messages", code="missing_user_message")
    return converted


def tool_dicts(tools: list[ToolSpec] | None) -> list[dict[str, Any]]:
    """OpenAI function specs as `bind_tools` takes them. A missing description becomes "", which
    `check_tool_definition` refuses by name: the description is what the generator reads."""
    return [
        {"type": "function", "function": {
            "name": t.function.name, "description": t.function.description or "",
            "parameters": t.function.parameters or {"type": "object", "properties": {}},
        }}
        for t in tools or []
    ]


def openai_tool_calls(message: AIMessage) -> list[dict[str, Any]]:
    return [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
        for c in message.tool_calls
    ]


def _text(content: str | list[ContentPart] | None, param: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    for part in content:
        if part.type != "text":
            raise APIError(400, f"Content parts of type {part.type!r} are not supported; send text (GPT4Tools names "
                                "images by path, e.g. image/dog.png).", param=param, code="unsupported_content")
    return "".join(part.text or "" for part in content)


def _arguments(arguments: str, param: str) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise APIError(400, "A tool call's function.arguments must be a JSON object.", param=param, code="invalid_arguments")
    return parsed
