"""The tools an agent may call: the 31 of GPT4Tools, and any the user adds.

A tool is a name and a description (what the prompt's TOOLS block shows the model) and a function
from the model's "Action Input" text to the observation text, run against a `Workspace`. Running a
tool never raises for a user's mistake: a bad path or input becomes an "error: ..." observation the
model and the user can read, as the GPT4Tools loop expects text back from every step.

User tools are a plain function `str -> str` with a name and a description, or any LangChain
`BaseTool` (called with `tool.invoke(action_input)`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache
from typing import Callable, Iterable, Iterator

from langchain_core.tools import BaseTool, ToolException

from .gpt4tools_prompt import DATA_DIR, seen_tools
from .image_tools import IMPLEMENTATIONS
from .unavailable import NEEDED_MODEL, unavailable
from .workspace import Workspace

log = logging.getLogger(__name__)


MAX_NAME_CHARS = 64  # OpenAI's limit for a function name; GPT4Tools' longest is 51
MAX_DESCRIPTION_CHARS = 1024  # GPT4Tools' longest is ~370; the TOOLS block is read by the cloud LM
# Lines of the prompt template: a description containing one would move text between the prompt's
# parts (the system prompt the generator reads and the edge prompt the edge model reads).
TEMPLATE_MARKERS = ("Previous conversation:", "New input:", "GPT4Tools needs to use tools", "Observation:", "Action Input:")


class ToolDefinitionError(ValueError):
    """A tool name or description that would corrupt the GPT4Tools prompt."""


def check_tool_definition(name: str, description: str) -> None:
    """Refuse what would corrupt the TOOLS block, the Action line or the prompt's split."""
    if not name.strip() or any(c in name for c in ":,\n\r") or name != name.strip():
        raise ToolDefinitionError(
            f"Tool name {name[:80]!r} must be non-empty, on one line, without ':' or ',' or blanks at either end."
        )
    if len(name) > MAX_NAME_CHARS:
        raise ToolDefinitionError(f"Tool name {name[:40]!r}... is {len(name)} characters; at most {MAX_NAME_CHARS} are allowed.")
    if not description.strip() or any(c in description for c in "\n\r"):
        raise ToolDefinitionError(f"Tool {name!r} needs a non-empty, one-line description.")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ToolDefinitionError(
            f"Tool {name!r} has a {len(description)}-character description; at most {MAX_DESCRIPTION_CHARS} are allowed."
        )
    marker = next((m for m in TEMPLATE_MARKERS if m in description), None)
    if marker:
        raise ToolDefinitionError(f"Tool {name!r}'s description contains {marker!r}, a line of the prompt format; reword it.")


@dataclass(frozen=True)
class Tool:
    name: str  # exactly as the model must write it after "Action: "
    description: str  # one line, shown after "> name: " in the TOOLS block
    func: Callable[[str, Workspace], str]  # action input text -> observation text
    available: bool = True  # False: needs a model this machine lacks; running it says which

    def __post_init__(self):
        check_tool_definition(self.name, self.description)

    def run(self, action_input: str, workspace: Workspace) -> str:
        try:
            return str(self.func(action_input, workspace))
        except ValueError as exc:  # WorkspaceError or a bad input: the message is written for the user
            return f"error: {exc}"
        except Exception as exc:
            log.exception("tool %r failed on %r", self.name, action_input)
            return f"error: {self.name} failed: {str(exc) or type(exc).__name__}"


class UnknownToolError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ToolRegistry:
    """Tools by name, in the order they were registered (the order the prompt lists them)."""

    def __init__(self, tools: Iterable[Tool] = ()):
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool, *, replace: bool = False) -> Tool:
        """Add a Tool, a LangChain BaseTool or a function (see `as_tool`).

        `replace=True` swaps in a new implementation under an existing name, e.g. a real captioning
        model for the unavailable "Get Photo Description", keeping its place in the list.
        """
        tool = as_tool(tool)
        if tool.name in self._tools and not replace:
            raise ValueError(f"A tool named {tool.name!r} is already registered; pass replace=True to replace it.")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(f"No tool named {name!r}; known tools: {', '.join(self._tools)}.") from None

    def names(self) -> list[str]:
        return list(self._tools)

    def descriptions(self) -> list[tuple[str, str]]:
        """(name, description) pairs, what `build_prompt` and `system_prompt_for` take."""
        return [(tool.name, tool.description) for tool in self]

    def subset(self, names: Iterable[str]) -> ToolRegistry:
        """A registry of the named tools, in the order given."""
        return ToolRegistry(self.get(name) for name in names)

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools


def _one_line(text: str) -> str:
    return " ".join(text.split())


def tool_from_function(func: Callable[[str], str], name: str, description: str) -> Tool:
    """A user tool from a plain function of the action input text (it does not see the workspace)."""
    return Tool(name=name.strip(), description=_one_line(description), func=lambda text, workspace: func(text))


def tool_from_langchain(tool: BaseTool) -> Tool:
    def run(text: str, workspace: Workspace) -> str:
        try:
            return str(tool.invoke(text))
        except ToolException as exc:  # LangChain's way of saying the input was wrong
            raise ValueError(str(exc)) from exc

    return Tool(name=tool.name.strip(), description=_one_line(tool.description), func=run)


def as_tool(obj) -> Tool:
    """A Tool from a Tool, a LangChain BaseTool, a (name, description, func) triple, or a function
    with `name` and `description` attributes."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, BaseTool):
        return tool_from_langchain(obj)
    if isinstance(obj, tuple) and len(obj) == 3:
        name, description, func = obj
        return tool_from_function(func, name, description)
    if callable(obj) and isinstance(getattr(obj, "name", None), str) and isinstance(getattr(obj, "description", None), str):
        return tool_from_function(obj, obj.name, obj.description)
    raise TypeError(
        f"Cannot make a tool from {obj!r}: give a Tool, a LangChain BaseTool, a (name, description, func) "
        "tuple, or a function with `name` and `description` attributes."
    )


@cache
def unseen_tools() -> tuple[dict, ...]:
    """The 8 tools only the GPT4Tools test set uses (see the file's provenance note)."""
    return tuple(json.loads((DATA_DIR / "tools_unseen.json").read_text())["tools"])


# Words added to a GPT4Tools description where users ask for the tool in words its description lacks.
# The agent picks its tool by matching the request with the descriptions (loragen_core/tool_prior.py),
# and "Can you show me the outlines in this picture?" went to segmentation (issue 15's check): the
# embedder puts "outlines" nearer "segment all the part" than "detect the edge". The datasets (training,
# evaluation) read the GPT4Tools descriptions unchanged; only the tools an agent runs here carry these.
DESCRIPTION_EDITS = {
    "Edge Detection On Image": ("detect the edge of the image.", "detect the edges (the outlines of shapes) of the image."),
}


def gpt4tools_tool(spec: dict) -> Tool:
    name = spec["name"]
    if name in IMPLEMENTATIONS:
        description = spec["description"]
        if name in DESCRIPTION_EDITS:
            old, new = DESCRIPTION_EDITS[name]
            if old not in description:
                raise ToolDefinitionError(f"The GPT4Tools description of {name!r} no longer says {old!r}; update DESCRIPTION_EDITS.")
            description = description.replace(old, new)
        return Tool(name, description, IMPLEMENTATIONS[name])
    return Tool(name, spec["description"], unavailable(NEEDED_MODEL[name]), available=False)


def default_registry() -> ToolRegistry:
    """All 31 GPT4Tools tools: the 23 seen in training, then the 8 unseen, in data order."""
    return ToolRegistry(gpt4tools_tool(spec) for spec in (*seen_tools(), *unseen_tools()))
