"""One chat completion on the shared runtime: a validated request in, OpenAI response bodies out.

`LoRAGenChatModel` does the GPT4Tools work (tools → system prompt → adapter; messages → edge prompt;
constrained decoding; reply → tool call or answer); this module only checks what it cannot honour
and writes its replies in OpenAI's format, whole (`chat.completion`) or in pieces
(`chat.completion.chunk`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable

from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS
from tools.registry import ToolDefinitionError

from ..langchain_model import LoRAGenChatModel
from ..modes import ICL
from ..runtime import RequestTooLongError
from .convert import openai_tool_calls, to_langchain, tool_dicts
from .errors import APIError
from .schema import MAX_COMPLETION_TOKENS, MAX_STOP_STRINGS, ChatCompletionRequest

log = logging.getLogger(__name__)


class ChatRuntime(Protocol):
    """What the server needs of a runtime (`LoRAGenRuntime`; tests pass scripted ones)."""

    def complete(self, prompt: str, system_prompt: str | None = None, *args: Any, **kwargs: Any) -> Any: ...
    def check_length(self, prompt: str) -> None: ...
    def count_prompt_tokens(self, prompt: str) -> int: ...


@dataclass
class PreparedChat:
    runtime: ChatRuntime
    model_id: str
    messages: list[BaseMessage]
    runnable: Runnable  # the chat model, with the request's tools bound unless tool_choice is "none"
    specs: list[dict]  # the bound tools as the model holds them (empty: plain chat)
    stop: list[str]
    max_new_tokens: int
    include_usage: bool
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))


def as_api_error(failure: BaseException) -> APIError | None:
    """The OpenAI error for a failure the caller caused; None for a bug (a 500 without details)."""
    if isinstance(failure, APIError):
        return failure
    if isinstance(failure, RequestTooLongError):
        return APIError(400, str(failure), param="messages", code="context_length_exceeded")
    if isinstance(failure, ToolDefinitionError):
        return APIError(400, str(failure), param="tools", code="invalid_tool")
    return None


def prepare(request: ChatCompletionRequest, runtime: ChatRuntime, model_id: str) -> PreparedChat:
    """Check everything that can be checked before decoding, so a stream is refused with a status
    code rather than failing after its headers are sent. Raises `APIError`."""
    if request.model != model_id:
        raise APIError(404, f"The model {request.model!r} does not exist; this server serves {model_id!r}.",
                       param="model", code="model_not_found")
    if request.n not in (None, 1):
        raise APIError(400, "Only n=1 is supported (decoding is greedy: more choices would be copies).", param="n")
    if request.tool_choice not in (None, "auto", "none"):
        raise APIError(400, 'tool_choice must be "auto" or "none": the model itself decides whether to call a tool.',
                       param="tool_choice", code="unsupported_value")
    max_new_tokens = request.max_completion_tokens or request.max_tokens or DEFAULT_MAX_NEW_TOKENS
    if max_new_tokens > MAX_COMPLETION_TOKENS:
        raise APIError(400, f"max_tokens is {max_new_tokens}; at most {MAX_COMPLETION_TOKENS} are served.", param="max_tokens")
    stop = request.stop_strings()
    if len(stop) > MAX_STOP_STRINGS:
        raise APIError(400, f"At most {MAX_STOP_STRINGS} stop strings are accepted.", param="stop")
    messages = to_langchain(request.messages)
    model = LoRAGenChatModel(runtime=runtime, max_new_tokens=max_new_tokens)
    try:
        # Bound even under tool_choice "none", so a bad definition is refused whatever the choice.
        bound = model.bind_tools(tool_dicts(request.tools)) if request.tools else None
        runnable, specs = (bound, bound.kwargs["tools"]) if bound is not None and request.tool_choice != "none" else (model, [])
        runtime.check_length(model._request(messages, specs).prompt)
    except (ToolDefinitionError, RequestTooLongError) as failure:
        raise as_api_error(failure) from None
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return PreparedChat(runtime, model_id, messages, runnable, specs, stop, max_new_tokens, include_usage)


def complete(chat: PreparedChat) -> dict[str, Any]:
    """The whole reply as a `chat.completion` body."""
    reply: AIMessage = chat.runnable.invoke(chat.messages, stop=chat.stop or None)
    calls = openai_tool_calls(reply)
    message: dict[str, Any] = {"role": "assistant", "content": (reply.content or None) if calls else reply.content}
    if calls:
        message["tool_calls"] = calls
    usage = _usage(reply.usage_metadata)
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(chat, bool(calls), usage)}
    return {
        **_envelope(chat, "chat.completion"), "choices": [choice], "usage": usage,
        "loragen": _extension(chat, reply.response_metadata),
    }


def stream(chat: PreparedChat) -> Iterator[dict[str, Any]]:
    """The reply as `chat.completion.chunk` bodies: the answer's text as it is decoded, a tool call
    whole once its lines are complete (see `LoRAGenChatModel._stream`). A failure after the first
    chunk becomes an error event, which OpenAI clients raise."""
    yield _chunk(chat, {"role": "assistant", "content": ""})
    called, metadata, usage = False, {}, _usage(None)
    try:
        for piece in chat.runnable.stream(chat.messages, stop=chat.stop or None):
            if piece.content:
                yield _chunk(chat, {"content": piece.content})
            for call in piece.tool_call_chunks:
                called = True
                yield _chunk(chat, {"tool_calls": [{
                    "index": call["index"], "id": call["id"], "type": "function",
                    "function": {"name": call["name"], "arguments": call["args"]},
                }]})
            if "adapter_hash" in piece.response_metadata:
                metadata = piece.response_metadata
            if piece.usage_metadata:
                usage = _usage(piece.usage_metadata)
    except Exception as failure:
        refused = as_api_error(failure)
        if refused is None:
            log.exception("streamed completion %s failed", chat.id)
            refused = APIError(500, "The server failed while decoding; the failure is in its log.")
        yield refused.body()
        return
    finish = _chunk(chat, {}, _finish_reason(chat, called, usage))
    yield {**finish, "loragen": _extension(chat, metadata)}
    if chat.include_usage:  # OpenAI's format: a last chunk with no choices, carrying the usage
        yield {**_envelope(chat, "chat.completion.chunk"), "choices": [], "usage": usage}


# ---- pieces of the bodies ---------------------------------------------------------------------------


def _envelope(chat: PreparedChat, kind: str) -> dict[str, Any]:
    return {"id": chat.id, "object": kind, "created": chat.created, "model": chat.model_id}


def _chunk(chat: PreparedChat, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return {**_envelope(chat, "chat.completion.chunk"), "choices": [choice]}


def _usage(usage: dict | None) -> dict[str, int]:
    """OpenAI's usage: the prompt tokens the edge model read (chat template included, tool
    definitions not: they reached it as the adapter) and the tokens it wrote."""
    prompt, completion = (usage or {}).get("input_tokens", 0), (usage or {}).get("output_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(chat: PreparedChat, called: bool, usage: dict[str, int]) -> str:
    if called:
        return "tool_calls"
    # The runtime does not say why decoding ended; a reply that used the whole budget was cut.
    return "length" if usage["completion_tokens"] >= chat.max_new_tokens else "stop"


def _extension(chat: PreparedChat, metadata: dict[str, Any]) -> dict[str, Any]:
    """LoRA-Gen's own fields: the adapter, its cache and timings, and what the in-context baseline
    (tool definitions in the prompt, no adapter) would have made the edge model read."""
    full_prompt = LoRAGenChatModel(runtime=chat.runtime, mode=ICL)._request(chat.messages, chat.specs).prompt
    keys = ("mode", "adapter_hash", "adapter_cache_hit", "adapter_seconds", "merge_seconds", "decode_seconds", "format_error")
    return {"full_prompt_tokens": chat.runtime.count_prompt_tokens(full_prompt), **{k: metadata[k] for k in keys if k in metadata}}
