"""The app served by uvicorn in a background thread on a free loopback port: for tests and the load
benchmark, which need a real HTTP server in the same process as the runtime they inspect."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from .app import create_app

STARTUP_SECONDS = 30


@contextmanager
def live_server(runtime, **app_options) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:<port>``) of `create_app(runtime, **app_options)`."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(runtime, **app_options), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
