"""The UI's event handlers: one chat turn, a new tool set, a new conversation, and the `/chat` API.

They are methods of one object that holds what every session is built from (the runtime, the tool
registry, the workspace folder and the limits), so `build_app` only lays out components and wires them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import gradio as gr

from agent import AgentResult, LoRAGenRuntime, RequestTooLongError
from agent.modes import BASELINE_LABELS, baseline_mode
from tools.registry import ToolRegistry
from tools.workspace import Workspace, WorkspaceError

from .render import render_answer, render_latency, render_panel, render_trace
from .session import ChatSession, UserError

log = logging.getLogger(__name__)

TRACE_HINT = "The agent's Thought / Action / Observation steps appear here after each message."


class _TurnOutputs:
    """The values of the chat components for one yield of a turn. The message box is emptied by the
    first yield only, so later updates leave alone what the user has started typing."""

    def __init__(self, session: ChatSession):
        self.session = session
        self.box = {"text": "", "files": []}
        self.trace = gr.skip()
        self.edge_prompt = gr.skip()

    def __call__(self, panel=gr.skip(), loragen_latency=gr.skip(), baseline_latency=gr.skip()) -> tuple:
        box, self.box = self.box, gr.skip()
        session = self.session
        return (box, session.messages, session.baseline_messages, self.trace, self.edge_prompt,
                panel, loragen_latency, baseline_latency, session)


class ChatHandlers:
    def __init__(self, runtime: LoRAGenRuntime, registry: ToolRegistry, root: Path, default_tools: Sequence[str],
                 max_image_bytes: int, max_image_pixels: int, max_steps: int, max_new_tokens: int):
        self.runtime = runtime
        self.registry = registry
        self.root = root
        self.default_tools = tuple(default_tools)
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels
        self.max_steps = max_steps
        self.baseline_mode = baseline_mode(runtime)
        self.baseline_label = BASELINE_LABELS[self.baseline_mode]
        self.max_new_tokens = max_new_tokens

    def new_session(self, tools: Sequence[str] | None = None) -> ChatSession:
        workspace = Workspace(self.root / uuid.uuid4().hex, max_pixels=self.max_image_pixels, max_bytes=self.max_image_bytes)
        return ChatSession(self.runtime, self.registry, workspace, tools or self.default_tools,
                           max_steps=self.max_steps, max_new_tokens=self.max_new_tokens)

    def send(self, message: dict | None, tools: list[str], compare: bool, more_tools: list[str], session: ChatSession | None):
        """One chat turn; yields while the agent runs (the UI streams), last the complete turn."""
        session = session or self.new_session()
        message = message or {}
        text = (message.get("text") or "").strip()
        outputs = _TurnOutputs(session)
        # The baseline's chat takes part in a turn only while the comparison is on.
        chats = (session.messages, session.baseline_messages) if compare else (session.messages,)

        def say(note: str) -> None:
            for chat in chats:
                chat.append({"role": "assistant", "content": note})

        try:
            if session.set_tools([*tools, *(more_tools or [])]):
                say(f"Tool set changed to: {', '.join(session.tools)}. The next answer uses a new adapter.")
            self._attach_uploads(session, message.get("files") or [], chats, say, ask_for_question=not text)
            if not text:
                if not message.get("files"):
                    say("⚠️ Please type a message.")
                yield outputs()
                return
            for chat in chats:
                chat.append({"role": "user", "content": text})
            loragen = yield from _run_into(session, text, "loragen", session.messages, outputs)
            baseline = None
            if compare:
                baseline = yield from _run_into(session, text, self.baseline_mode, session.baseline_messages, outputs)
            outputs.trace = render_trace(loragen, baseline, self.baseline_label)
            outputs.edge_prompt = loragen.edge_prompt
            yield outputs(
                render_panel(self.runtime.trained, session.tools, loragen, baseline, baseline_label=self.baseline_label),
                render_latency("LoRA-Gen", loragen),
                render_latency(self.baseline_label, baseline) if baseline else "",
            )
        except (UserError, RequestTooLongError) as problem:
            say(f"⚠️ {problem}")
            yield outputs()
        except Exception as failure:  # the app must keep serving every other session
            log.exception("chat turn failed")
            say(f"⚠️ Something went wrong on the server ({type(failure).__name__}: {failure}). You can keep chatting.")
            yield outputs()

    @staticmethod
    def _attach_uploads(session: ChatSession, uploads: list, chats: tuple, say, ask_for_question: bool) -> None:
        for upload in uploads:
            try:
                image = session.attach(upload)
            except WorkspaceError as refused:
                say(f"⚠️ Upload refused: {refused}")
                continue
            for chat in chats:
                chat.append({"role": "user", "content": {"path": str(session.workspace.resolve(image))}})
            if ask_for_question:
                say(f"Received {image}. Ask me something about it.")

    def choose_tools(self, tools: list[str], more_tools: list[str], session: ChatSession | None):
        """A new tool set: generate (or fetch) its adapter now, so the panel shows it at once."""
        session = session or self.new_session()
        try:
            session.set_tools([*tools, *(more_tools or [])])
            adapter = session.prepare_adapter()
        except UserError as problem:
            return f"⚠️ {problem}", session
        return render_panel(self.runtime.trained, session.tools, prepared=adapter), session

    @staticmethod
    def clear(session: ChatSession | None):
        if session:
            session.clear()
        return [], [], TRACE_HINT, "", "", "", session

    def chat(self, message: str, tools: list[str] | None = None) -> str:
        """Answer one message with the LoRA-Gen agent (a fresh session: no image, no history) and
        return its final answer. `tools`: GPT4Tools tool names; default: the UI's default set."""
        session = None
        try:
            session = self.new_session(tools)
            *_, result = session.answer(message)
        except (UserError, RequestTooLongError) as problem:
            raise gr.Error(str(problem), print_exception=False) from None
        finally:
            if session:
                session.close()
        if result.error:
            raise gr.Error(f"The agent could not answer: {result.error}", print_exception=False)
        return result.answer


def _run_into(session: ChatSession, text: str, mode: str, chat: list[dict], outputs) -> Iterator:
    """Run the agent in `mode`, showing its text as it is decoded in a placeholder message of `chat`,
    then the answer (tool failures, produced images); returns the `AgentResult`."""
    chat.append({"role": "assistant", "content": "_Thinking…_"})
    placeholder = len(chat) - 1
    try:
        for update in session.answer(text, mode):
            if isinstance(update, AgentResult):
                chat[placeholder:] = render_answer(update, session.workspace)
                return update
            if update.strip():
                chat[placeholder] = {"role": "assistant", "content": f"_Thinking…_\n```\n{update.strip()[-600:]}\n```"}
            yield outputs()
    except BaseException:
        del chat[placeholder:]  # the caller says what went wrong instead
        raise
    raise RuntimeError("the agent ended without a result")
