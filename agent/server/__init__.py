"""An OpenAI-compatible chat-completions server over one LoRAGenRuntime (docs/server.md).

    from agent.server import create_app       # a FastAPI app; `python -m agent.serve` runs it
"""

from .app import MODEL_ID, create_app

__all__ = ["MODEL_ID", "create_app"]
