"""Stream a decode that reports its text through a callback: the one worker thread behind the UI's
live chat and LoRAGenChatModel's `stream`.

    for kind, value in stream_in_thread(lambda on_text: agent.run(..., on_text=on_text)):
        "text": a piece as it is decoded;  "done": the result, last;  "idle": nothing new (opt-in)

What the worker raises is raised in the consumer's thread, after the pieces it wrote.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

Result = TypeVar("Result")


def stream_in_thread(
    run: Callable[[Callable[[str], None]], Result], name: str = "loragen-stream", idle_every: float | None = None
) -> Iterator[tuple[Literal["text"], str] | tuple[Literal["idle"], None] | tuple[Literal["done"], Result]]:
    """`idle_every`: also yield ("idle", None) after that many seconds without an event, so a caller
    that shows progress (the UI) can refresh while nothing is written (adapter generation, a slow tool)."""
    events: queue.Queue = queue.Queue()

    def work() -> None:
        try:
            events.put(("done", run(lambda text: events.put(("text", text)))))
        except BaseException as failure:  # re-raised in the consumer's thread below
            events.put(("error", failure))

    threading.Thread(target=work, name=name, daemon=True).start()
    while True:
        try:
            kind, value = events.get(timeout=idle_every)
        except queue.Empty:
            yield "idle", None
            continue
        if kind == "error":
            raise value
        yield kind, value
        if kind == "done":
            return
