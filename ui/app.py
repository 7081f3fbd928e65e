"""The Gradio chat UI: talk to the LoRA-Gen agent and see what it did, for which adapter, how fast.

    browser tab ─► gr.State: ChatSession (tools, workspace, image, history) ─► Agent ─┐
    gradio_client ─► /chat (a throwaway session per call) ────────────────► Agent ─┤
                                   LoRAGenRuntime (one per process: adapters, locked edge model) ◄─┘

Layout: the chat (text + image upload, tool images inline) beside the baseline's chat when the
comparison switch is on (the shipped full-prompt LoRA, trained on the generator's data and reading
every tool definition; the untrained in-context model where a checkout lacks it); under it a collapsible Thought / Action / Observation trace; on the right
the tool check boxes and the adapter panel (trained or fresh generator, adapter hash, generated or
cached, prompt tokens with and without the system prompt, this turn's latency).

Start with `python -m ui`; tests build it with `build_app(runtime)` on tiny models. The event handlers
are in handlers.py, what they render in render.py; this file lays out the components and wires them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from agent import LoRAGenRuntime
from loragen_core.model_loading import loragen_home
from tools.registry import ToolRegistry, default_registry

from .handlers import TRACE_HINT, ChatHandlers
from .render import render_panel
from .session import DEFAULT_TOOLS
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
    handlers = ChatHandlers(runtime, registry, root, default_tools, max_image_bytes, max_image_pixels, max_steps, max_new_tokens)
    return ChatApp(_layout(handlers), root, max_image_bytes, owns_root)


def _layout(handlers: ChatHandlers) -> gr.Blocks:
    registry, default_tools = handlers.registry, handlers.default_tools
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
                        baseline_chat = gr.Chatbot(label=handlers.baseline_label, elem_id="baseline-chat", height=460)
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
                panel = gr.Markdown(render_panel(handlers.runtime.trained, default_tools), elem_id="adapter-panel")
                compare = gr.Checkbox(False, label=f"Also answer with the {handlers.baseline_label[0].lower() + handlers.baseline_label[1:]}, side by side",
                                      elem_id="compare")
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
            handlers.send, [message_box, tools_box, compare, more_tools_box, session_state], outputs,
            api_name="send", api_visibility="undocumented",
        )
        tool_inputs = [tools_box, more_tools_box, session_state]
        tools_box.change(handlers.choose_tools, tool_inputs, [panel, session_state], api_name="set_tools", api_visibility="undocumented")
        more_tools_box.change(handlers.choose_tools, tool_inputs, [panel, session_state], api_visibility="private")
        compare.change(lambda on: gr.Column(visible=on), compare, baseline_column, api_visibility="private")
        cleared = [loragen_chat, baseline_chat, trace, edge_prompt, loragen_latency, baseline_latency, session_state]
        new_chat.click(handlers.clear, session_state, cleared, api_visibility="private")
        # Not queued behind the running turn: it only sets the session's stop flag, which decoding polls.
        stop_button.click(lambda session: session and session.stop(), session_state, None, queue=False, api_visibility="private")
        loragen_chat.clear(handlers.clear, session_state, cleared, api_visibility="private")
        gr.api(handlers.chat, api_name="chat")

    return blocks
