"""The request body of `POST /v1/chat/completions`: the subset of OpenAI's schema the edge model can
honour, and the server's limits (docs/server.md lists them).

Unknown fields are ignored rather than refused: OpenAI clients send sampling options (temperature,
top_p, seed, ...) by default, and decoding here is greedy whatever they say.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_BODY_BYTES = 1 << 20  # 1 MiB: the edge prompt is capped at 2,048 tokens (~16k characters) anyway
MAX_COMPLETION_TOKENS = 512  # one request must not hold the shared edge model for minutes
MAX_STOP_STRINGS = 4  # OpenAI's own limit


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str  # only "text" is served; others are refused by name (convert.py)
    text: str | None = None


class FunctionCall(_Lenient):
    name: str
    arguments: str = "{}"  # a JSON object, as OpenAI writes it


class ToolCall(_Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _fields_of_the_role(self) -> "Message":
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.role in ("system", "developer", "user") and self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        return self


class FunctionSpec(_Lenient):
    name: str
    description: str | None = None  # optional for OpenAI; required here (it is what the generator reads)
    parameters: dict[str, Any] | None = None


class ToolSpec(_Lenient):
    type: Literal["function"]
    function: FunctionSpec


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None  # "auto" / "none"; anything else is refused with 400
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)

    def stop_strings(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
