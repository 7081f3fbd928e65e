"""The FastAPI app: OpenAI's `POST /v1/chat/completions` and `GET /v1/models`, and `GET /health`.

Model work runs in Starlette's thread pool, so the event loop keeps accepting requests (and
answering /health) while the edge model decodes; `agent.serve` micro-batches tool-call requests
across tenants (`batching.py`), and the runtime's lock serialises everything else. Every refusal is
OpenAI's error object, never a traceback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from . import chat
from .errors import APIError, error_body
from .schema import MAX_BODY_BYTES, ChatCompletionRequest

log = logging.getLogger(__name__)

MODEL_ID = "loragen-smollm2-135m"
# An oversized body is still read (and dropped) up to this much, so the client gets the 413 instead
# of a reset connection while it is still sending; past it the connection is simply closed.
DRAIN_BYTES = 16 * MAX_BODY_BYTES


def create_app(runtime: chat.ChatRuntime, model_id: str = MODEL_ID, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI(title="LoRA-Gen OpenAI-compatible server", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())

    @app.exception_handler(APIError)
    async def refused(_: Request, failure: APIError) -> JSONResponse:
        return JSONResponse(failure.body(), status_code=failure.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, failure: HTTPException) -> JSONResponse:  # unknown route, wrong method
        code = "not_found" if failure.status_code == 404 else None
        return JSONResponse(error_body(str(failure.detail), "invalid_request_error", None, code), status_code=failure.status_code)

    @app.exception_handler(Exception)
    async def bug(_: Request, failure: Exception) -> JSONResponse:
        log.error("request failed", exc_info=failure)
        return JSONResponse(error_body("The server failed; the failure is in its log.", "server_error"), status_code=500)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_id}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(model_id, created)]}

    @app.get("/v1/models/{name}")
    def model(name: str) -> dict[str, Any]:
        if name != model_id:
            raise APIError(404, f"The model {name!r} does not exist; this server serves {model_id!r}.", param="model",
                           code="model_not_found")
        return _model_card(model_id, created)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        parsed = _validated(await _body(request, max_body_bytes))
        try:  # tokenizing takes the edge model's lock, so it waits for decoding: off the event loop
            prepared = await run_in_threadpool(chat.prepare, parsed, runtime, model_id)
            if parsed.stream:
                return StreamingResponse(_sse(chat.stream(prepared)), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            return JSONResponse(await run_in_threadpool(chat.complete, prepared))
        except Exception as failure:
            refused = chat.as_api_error(failure)
            if refused is None:
                raise
            raise refused from None

    return app


def _model_card(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "loragen"}


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length", "")
    too_large = APIError(413, f"The request body is over {limit:,} bytes.", code="request_too_large")
    if declared.isdigit() and int(declared) > DRAIN_BYTES:
        raise too_large
    received, chunks = 0, []
    async for chunk in request.stream():
        received += len(chunk)
        if received > DRAIN_BYTES:
            break
        if received <= limit:
            chunks.append(chunk)
    if received > limit:
        raise too_large
    return b"".join(chunks)


def _validated(body: bytes) -> ChatCompletionRequest:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as failure:
        raise APIError(400, f"The body is not valid JSON: {failure}.", code="invalid_json") from None
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as failure:
        first = failure.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        message = f"{where}: {first['msg']}" if where else first["msg"]
        more = failure.error_count() - 1
        raise APIError(422, message + (f" (and {more} more problems)" if more else ""), param=where,
                       code="invalid_request_body") from None


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Server-sent events as OpenAI writes them: `data: <json>` per chunk, then `data: [DONE]`."""
    for event in events:
        yield f"data: {json.dumps(event)}\n\n"
    yield "data: [DONE]\n\n"
