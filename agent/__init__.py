"""The tool-using agent that serves requests with a LoRA-Gen specialised edge model.

    from agent import Agent                    # the GPT4Tools loop over a tool list
    from agent import LoRAGenChatModel         # the same model as a LangChain chat model
"""

from .core import Agent, AgentResult, Step
from .demo import run_demo
from .langchain_model import LoRAGenChatModel, langchain_tools
from .runtime import LoRAGenRuntime, RequestTooLongError, RuntimeCompletion

__all__ = ["Agent", "AgentResult", "LoRAGenChatModel", "LoRAGenRuntime", "RequestTooLongError", "RuntimeCompletion", "Step", "langchain_tools", "run_demo"]
