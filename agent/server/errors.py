"""OpenAI's error object, so OpenAI clients raise their usual typed errors (BadRequestError, ...)
instead of failing to parse a traceback."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """A refused request: HTTP status and the fields of OpenAI's `{"error": {...}}` object."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or ("server_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
