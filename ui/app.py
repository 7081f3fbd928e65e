"""The Gradio chat UI: talk to the LoRA-Gen agent and see what it did, for which adapter, how fast.

    browser tab ─► gr.State: ChatSession (tools, workspace, image, history) ─► Agent ─┐
    gradio_client ─► /chat (a throwaway session per call) ────────────────► Agent ─┤
                                   LoRAGenRuntime (one per process: adapters, locked edge model) ◄─┘

Layout: the chat (text + image upload, tool images inline) beside the in-context baseline's chat when
the comparison switch is on; under it a collapsible Thought / Action / Observation trace; on the right
the tool check boxes and the adapter panel (trained or fresh generator, adapter hash, generated or
cached, prompt tokens with and without the system prompt, this turn's latency).

Start with `python -m ui`; tests build it with `build_app(runtime)` on tiny models.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from agent import AgentResult, LoRAGenRuntime, RequestTooLongError
from loragen_core import AdapterResult
from loragen_core.model_loading import loragen_home
from tools.registry import ToolRegistry, default_registry
from tools.workspace import Workspace, WorkspaceError

from .session import DEFAULT_TOOLS, ChatSession, UserError

log = logging.getLogger(__name__)

TRACE_HINT = "The agent's Thought / Action / Observation steps appear here after each message."
# Fonts the machine has: the default theme would fetch Google Fonts, which an offline browser waits on.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


@dataclass
class ChatApp:
    """The Blocks plus what `launch` needs to serve them safely."""

    blocks: gr.Blocks
    workspace_root: Path  # every session's workspace is a folder in here
    max_image_bytes: int
    owns_workspace_root: bool  # created by build_app: removed on close

    def launch(self, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> str:
        """Serve on host:port (None: the first free port from 7860); returns the local URL."""
        self.blocks.queue(default_concurrency_limit=8)
        _, url, _ = self.blocks.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=not block,
            ssr_mode=False,
            theme=THEME,
            allowed_paths=[str(self.workspace_root)],
            # Above the workspace's own limit, so an oversized image reaches it and is refused in the
            # chat with a reason; this cap only stops absurd uploads before they fill the disk.
            max_file_size=4 * self.max_image_bytes,
            quiet=not block,
        )
        return url

    def close(self) -> None:
        self.blocks.close()
        if self.owns_workspace_root:
            shutil.rmtree(self.workspace_root, ignore_errors=True)


def sessions_base() -> Path:
    """Where the UI keeps its sessions' workspaces (uploads, tool outputs): `$LORAGEN_HOME/ui-sessions`."""
    return loragen_home() / "ui-sessions"


def new_sessions_root() -> Path:
    """A fresh folder for this process's sessions, named after its pid; folders of processes that no
    longer run (a killed UI never ran its cleanup) are removed first, with the users' files in them."""
    base = sessions_base()
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base)).resolve()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def build_app(
    runtime: LoRAGenRuntime,
    registry: ToolRegistry | None = None,
    default_tools: Sequence[str] = DEFAULT_TOOLS,
    workspace_root: str | Path | None = None,
    max_image_bytes: int = 20_000_000,
    max_image_pixels: int = 40_000_000,
    max_steps: int = 5,
    max_new_tokens: int = 128,
) -> ChatApp:
    registry = registry or default_registry()
    owns_root = workspace_root is None
    root = Path(workspace_root).resolve() if workspace_root else new_sessions_root()
    if owns_root:  # a normal exit removes the users' files; a killed process is cleaned by the next start
        atexit.register(shutil.rmtree, root, True)
    root.mkdir(parents=True, exist_ok=True)
    default_tools = tuple(default_tools)

    def new_session(tools: Sequence[str] = default_tools) -> ChatSession:
        workspace = Workspace(root / uuid.uuid4().hex, max_pixels=max_image_pixels, max_bytes=max_image_bytes)
        return ChatSession(runtime, registry, workspace, tools, max_steps=max_steps, max_new_tokens=max_new_tokens)

    # ── event handlers ──────────────────────────────────────────────────────────────────────────

    def send(message: dict | None, tools: list[str], compare: bool, more_tools: list[str], session: ChatSession | None):
        """One chat turn; yields while the agent runs (the UI streams), last the complete turn."""
        session = session or new_session()
        tools = [*tools, *(more_tools or [])]
        message = message or {}
        text = (message.get("text") or "").strip()
        box = {"text": "", "files": []}  # emptied once; later updates leave what the user types next
        trace, edge_prompt = gr.skip(), gr.skip()

        def outputs(panel=gr.skip(), loragen_latency=gr.skip(), baseline_latency=gr.skip()):
            nonlocal box
            first, box = box, gr.skip()
            return (first, session.messages, session.baseline_messages, trace, edge_prompt,
                    panel, loragen_latency, baseline_latency, session)

        # The baseline's chat takes part in a turn only while the comparison is on.
        chats = (session.messages, session.baseline_messages) if compare else (session.messages,)

        def say(note: str) -> None:
            for chat in chats:
                chat.append({"role": "assistant", "content": note})

        try:
            if session.set_tools(tools):
                say(f"Tool set changed to: {', '.join(session.tools)}. The next answer uses a new adapter.")
            for upload in message.get("files") or []:
                try:
                    image = session.attach(upload)
                except WorkspaceError as refused:
                    say(f"⚠️ Upload refused: {refused}")
                    continue
                for chat in chats:
                    chat.append({"role": "user", "content": {"path": str(session.workspace.resolve(image))}})
                if not text:
                    say(f"Received {image}. Ask me something about it.")
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
                baseline = yield from _run_into(session, text, "icl", session.baseline_messages, outputs)
            trace = render_trace(loragen, baseline)
            edge_prompt = loragen.edge_prompt
            yield outputs(
                render_panel(runtime.trained, session.tools, loragen, baseline),
                render_latency("LoRA-Gen", loragen),
                render_latency("In-context baseline", baseline) if baseline else "",
            )
        except (UserError, RequestTooLongError) as problem:
            say(f"⚠️ {problem}")
            yield outputs()
        except Exception as failure:  # the app must keep serving every other session
            log.exception("chat turn failed")
            say(f"⚠️ Something went wrong on the server ({type(failure).__name__}: {failure}). You can keep chatting.")
            yield outputs()

    def choose_tools(tools: list[str], more_tools: list[str], session: ChatSession | None):
        """A new tool set: generate (or fetch) its adapter now, so the panel shows it at once."""
        session = session or new_session()
        try:
            session.set_tools([*tools, *(more_tools or [])])
            adapter = session.prepare_adapter()
        except UserError as problem:
            return f"⚠️ {problem}", session
        return render_panel(runtime.trained, session.tools, prepared=adapter), session

    def clear(session: ChatSession | None):
        if session:
            session.clear()
        return [], [], TRACE_HINT, "", "", "", session

    def chat(message: str, tools: list[str] | None = None) -> str:
        """Answer one message with the LoRA-Gen agent (a fresh session: no image, no history) and
        return its final answer. `tools`: GPT4Tools tool names; default: the UI's default set."""
        session = None
        try:
            session = new_session(tools or default_tools)
            *_, result = session.answer(message)
        except (UserError, RequestTooLongError) as problem:
            raise gr.Error(str(problem), print_exception=False) from None
        finally:
            if session:
                session.close()
        if result.error:
            raise gr.Error(f"The agent could not answer: {result.error}", print_exception=False)
        return result.answer

    # ── layout ──────────────────────────────────────────────────────────────────────────────────

    available = [tool.name for tool in registry if tool.available]
    unavailable = [tool.name for tool in registry if not tool.available]
    with gr.Blocks(title="LoRA-Gen agent", analytics_enabled=False) as blocks:
        session_state = gr.State(None, delete_callback=lambda session: session and session.close())
        gr.Markdown(
            "## LoRA-Gen agent\nThe tools' system prompt is turned into a LoRA adapter merged into the edge "
            "model, which then answers **without** that prompt. Attach an image and ask about it."
        )
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row(equal_height=True):
                    with gr.Column():
                        loragen_chat = gr.Chatbot(label="LoRA-Gen (adapter, short prompt)", elem_id="chat", height=460)
                        loragen_latency = gr.Markdown(elem_id="loragen-latency")
                    with gr.Column(visible=False) as baseline_column:
                        baseline_chat = gr.Chatbot(label="In-context baseline (full prompt)", elem_id="baseline-chat", height=460)
                        baseline_latency = gr.Markdown(elem_id="baseline-latency")
                message_box = gr.MultimodalTextbox(
                    placeholder="Ask the agent; attach an image (PNG, JPEG, ...) with the clip.",
                    show_label=False, elem_id="message", sources=["upload"],
                )
                with gr.Accordion("Trace: Thought / Action / Observation", open=False, elem_id="trace-panel"):
                    trace = gr.Code(TRACE_HINT, language=None, show_label=False, elem_id="trace", interactive=False, wrap_lines=True)
                    edge_prompt = gr.Code(
                        label="Edge prompt: what the edge model read", language=None, elem_id="edge-prompt",
                        interactive=False, wrap_lines=True,
                    )
            with gr.Column(scale=1, min_width=300):
                panel = gr.Markdown(render_panel(runtime.trained, default_tools), elem_id="adapter-panel")
                compare = gr.Checkbox(False, label="Also answer with the in-context baseline, side by side", elem_id="compare")
                tools_box = gr.CheckboxGroup(
                    available, value=[t for t in default_tools if t in available],
                    label="Tools (a new set gets a new adapter)", elem_id="tools",
                )
                with gr.Accordion("More GPT4Tools tools (their models are not installed here)", open=False):
                    more_tools_box = gr.CheckboxGroup(
                        unavailable, value=[t for t in default_tools if t in unavailable], show_label=False,
                        info="The agent may call them; they answer which model they need.", elem_id="more-tools",
                    )
                with gr.Row():
                    stop_button = gr.Button("Stop", elem_id="stop", variant="stop")
                    new_chat = gr.Button("New conversation", elem_id="new-chat")

        outputs = [message_box, loragen_chat, baseline_chat, trace, edge_prompt, panel, loragen_latency, baseline_latency, session_state]
        message_box.submit(
            send, [message_box, tools_box, compare, more_tools_box, session_state], outputs,
            api_name="send", api_visibility="undocumented",
        )
        tool_inputs = [tools_box, more_tools_box, session_state]
        tools_box.change(choose_tools, tool_inputs, [panel, session_state], api_name="set_tools", api_visibility="undocumented")
        more_tools_box.change(choose_tools, tool_inputs, [panel, session_state], api_visibility="private")
        compare.change(lambda on: gr.Column(visible=on), compare, baseline_column, api_visibility="private")
        cleared = [loragen_chat, baseline_chat, trace, edge_prompt, loragen_latency, baseline_latency, session_state]
        new_chat.click(clear, session_state, cleared, api_visibility="private")
        # Not queued behind the running turn: it only sets the session's stop flag, which decoding polls.
        stop_button.click(lambda session: session and session.stop(), session_state, None, queue=False, api_visibility="private")
        loragen_chat.clear(clear, session_state, cleared, api_visibility="private")
        gr.api(chat, api_name="chat")

    return ChatApp(blocks, root, max_image_bytes, owns_root)


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


# ── rendering: plain functions of results, so they read (and test) without a server ─────────────


def render_answer(result: AgentResult, workspace: Workspace) -> list[dict]:
    """The assistant's messages for one turn: failed tools, the answer or why there is none, images."""
    notes = [
        f"⚠️ Tool **{step.action}** failed: {step.observation.removeprefix('error:').strip()}"
        for step in result.steps
        if step.kind == "tool" and step.observation and step.observation.startswith("error")
    ]
    if result.error:
        notes.append(f"⚠️ The agent could not finish: {result.error}")
    if result.answer:
        notes.append(result.answer)
    messages = [{"role": "assistant", "content": "\n\n".join(notes) or "(no answer)"}]
    for image in result.images:
        messages.append({"role": "assistant", "content": {"path": str(workspace.resolve(image)), "alt_text": image}})
    return messages


def render_trace(loragen: AgentResult, baseline: AgentResult | None = None) -> str:
    parts = [f"# LoRA-Gen (edge prompt, {loragen.prompt_tokens} tokens, + adapter)\n{loragen.trace_text()}"]
    if baseline:
        parts.append(f"# In-context baseline (full prompt, {baseline.prompt_tokens} tokens)\n{baseline.trace_text()}")
    return "\n\n".join(parts)


def render_latency(label: str, result: AgentResult) -> str:
    return f"**{label}**: {result.latency_s:.2f} s, {result.prompt_tokens}-token prompt, {result.model_calls} model call(s)"


def render_panel(
    trained: bool,
    tools: Sequence[str],
    loragen: AgentResult | None = None,
    baseline: AgentResult | None = None,
    prepared: AdapterResult | None = None,
) -> str:
    """The adapter panel. `prepared`: an `AdapterResult` from choosing tools, before any message."""
    lines = ["### Adapter"]
    if trained:
        lines.append("Generator: **trained** checkpoint.")
    else:
        lines.append(
            "Generator: ⚠️ **untrained** (a seeded fresh one): its adapters are valid LoRAs but do not "
            "teach the tools yet, so answers are not meaningful until a trained checkpoint ships."
        )
    lines.append(f"Tools ({len(tools)}): {', '.join(tools)}")
    if loragen is not None:
        how = "from cache" if loragen.adapter_cache_hit else "generated"
        merge = "already merged" if not loragen.merge_seconds else f"merged in {loragen.merge_seconds * 1000:.0f} ms"
        lines += [
            f"Adapter: `{loragen.adapter_hash[:16]}`, {how} in {loragen.adapter_seconds:.2f} s, {merge}",
            f"Prompt: {loragen.prompt_tokens} edge-prompt tokens vs {loragen.full_prompt_tokens} full-prompt "
            f"tokens ({loragen.compression:.1f}x shorter)",
            f"This turn: {loragen.latency_s:.2f} s",
        ]
        if baseline is not None:
            lines.append(f"In-context baseline: {baseline.latency_s:.2f} s")
    elif prepared is not None:
        how = "from cache" if prepared.cache_hit else "generated"
        lines.append(f"Adapter: `{prepared.adapter_hash[:16]}`, {how} in {prepared.seconds:.2f} s")
    else:
        lines.append("Adapter: generated for this tool set at the first message.")
    return "\n\n".join(lines)
