"""One user's conversation: tool set, workspace, current image and chat history.

Everything a user can change lives in a `ChatSession`, one per browser tab (held in a `gr.State`) or
per API call, so two users never share a tool set, an image or a history. What they do share is the
process-wide `LoRAGenRuntime`: its adapter cache (the same tool set gets the same adapter) and its
edge model, whose lock merges a session's adapter and decodes with it before another session's
adapter can be merged.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from agent import Agent, AgentResult, LoRAGenRuntime
from agent.modes import MODES
from agent.streaming import stream_in_thread
from loragen_core.adapter_service import AdapterResult
from tools.registry import ToolRegistry, UnknownToolError
from tools.workspace import Workspace

# GPT4Tools tools with a real CPU implementation here, so a conversation shows real tool output.
DEFAULT_TOOLS = (
    "Edge Detection On Image",
    "Segment the Image",
    "Detect Face",
    "Assess the Image Quality",
    "Image Super-Resolution",
)


class UserError(ValueError):
    """Something the user can fix (an empty message, no tools chosen); the message is shown as is."""


class ChatSession:
    def __init__(
        self,
        runtime: LoRAGenRuntime,
        registry: ToolRegistry,
        workspace: Workspace,
        tools: Sequence[str] = DEFAULT_TOOLS,
        max_steps: int = 5,
        max_new_tokens: int = 128,
    ):
        self.runtime = runtime
        self.registry = registry
        self.workspace = workspace
        self.max_steps = max_steps
        self.max_new_tokens = max_new_tokens
        self.image: str | None = None  # workspace-relative: the image the conversation is about
        self.messages: list[dict] = []  # the LoRA-Gen chat, as Gradio message dicts
        self.baseline_messages: list[dict] = []  # the in-context baseline's chat
        self.tools: tuple[str, ...] = ()
        # Memory: each mode's finished (request, answer) turns; the agent keeps what fits its budget.
        self.turns: dict[str, list[tuple[str, str]]] = {mode: [] for mode in MODES}
        self._stop = threading.Event()  # set by the Stop button; cleared when a new message starts
        self.agent: Agent
        self.set_tools(tools)

    def set_tools(self, names: Sequence[str]) -> bool:
        """Use these tools from now on; True if the set changed (its adapter is another one).

        The tools are listed in the registry's order whatever order they were ticked in: a tool set,
        not a sequence, decides the system prompt and so the adapter."""
        order = {name: index for index, name in enumerate(self.registry.names())}
        names = tuple(sorted(set(names), key=lambda name: order.get(name, len(order))))
        if not names:
            raise UserError("Choose at least one tool: the agent needs a tool set to build its adapter from.")
        if names == self.tools:
            return False
        try:
            tools = self.registry.subset(names)
        except UnknownToolError as unknown:
            raise UserError(str(unknown)) from None
        self.agent = Agent(
            tools, runtime=self.runtime, workspace=self.workspace,
            max_steps=self.max_steps, max_new_tokens=self.max_new_tokens,
        )
        self.tools = names
        return True

    def prepare_adapter(self) -> AdapterResult:
        """This tool set's adapter, generated now (or found in the cache) rather than at the next message."""
        return self.agent.prepare()

    def attach(self, upload: str | Path) -> str:
        """Check an uploaded file and make it the conversation's image; raises `WorkspaceError`."""
        self.image = self.workspace.import_file(upload)
        return self.image

    def answer(self, message: str, mode: str = "loragen") -> Iterator[str | AgentResult]:
        """Run the agent on `message` about the current image: yields the text decoded so far every
        half second while it runs, then the `AgentResult`."""
        if not message.strip():
            raise UserError("Please type a message.")
        self._stop.clear()
        turns = self.turns[mode]

        def run(on_text: Callable[[str], None]) -> AgentResult:
            result = self.agent.run(
                message.strip(), image=self.image, mode=mode, history=list(turns), on_text=on_text, should_stop=self._stop.is_set
            )
            if result.answer:
                turns.append((message.strip(), result.answer))
            return result

        return stream_while_running(run)

    def stop(self) -> None:
        """End the running turn (between two tokens); it answers with what it has."""
        self._stop.set()

    def clear(self) -> None:
        self.image = None
        self.messages = []
        self.baseline_messages = []
        self.turns = {mode: [] for mode in MODES}

    def close(self) -> None:
        """Delete the session's files; called when Gradio drops the session."""
        shutil.rmtree(self.workspace.root, ignore_errors=True)


def stream_while_running(
    run: Callable[[Callable[[str], None]], AgentResult], every: float = 0.5
) -> Iterator[str | AgentResult]:
    """Call `run(on_text)` in a worker thread; yield the text so far at most every `every` seconds
    (a browser need not redraw for each token), then the result (or raise what `run` raised)."""
    text, shown_at = "", time.monotonic()
    for kind, value in stream_in_thread(run, name="agent-run", idle_every=every):
        if kind == "done":
            yield value
            return
        text += value or ""
        if time.monotonic() - shown_at >= every:  # also while nothing is written: the chat shows it is working
            shown_at = time.monotonic()
            yield text
