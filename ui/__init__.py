"""The Gradio chat UI of the LoRA-Gen agent: `python -m ui`, or `build_app(runtime).launch()`."""

from .app import ChatApp, build_app
from .session import DEFAULT_TOOLS, ChatSession

__all__ = ["ChatApp", "ChatSession", "DEFAULT_TOOLS", "build_app"]
