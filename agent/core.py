"""The tool-using agent: a LoRA-Gen specialised edge model running the GPT4Tools loop.

    tools ─► GPT4Tools system prompt ─► adapter (generated once, cached) ─► merged into the edge model
    request ─► edge prompt ─► Thought / Action / Action Input ─► tool ─► Observation ─► ... ─► AI: answer

Each model call sees the edge prompt (the user's part of a GPT4Tools prompt) followed by the steps
taken so far, exactly as the training data's context samples write them; decoding stops before
`Observation:`, the tool runs, and its result is appended. Mode "icl" runs the same loop on the base
model with the full prompt (the in-context baseline), for comparison.

Decisions:
- A malformed turn (no `Action:` + `Action Input:`, no `AI:`) gets one corrective retry: the same
  prompt plus a line restating the format and the tool names. A second malformed turn in a row ends
  the run with `AgentResult.error`; a good turn resets the allowance.
- An action naming no tool is answered with an observation listing the valid names, and counts as a
  step (the model sees its mistake in the trace, as with any failed tool). Names match exactly, else
  case-insensitively.
- `max_steps` bounds the tool calls; a model still asking for a tool after that many ends the run
  with an error, without running it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loragen_core.adapter_service import AdapterResult
from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS
from tools import build_prompt, image_turn, split_prompt
from tools.gpt4tools_prompt import PromptParts, system_prompt_for
from tools.registry import Tool, ToolRegistry, default_registry
from tools.workspace import Workspace, WorkspaceError

from .parsing import IMAGE_PATH, OBSERVATION_STOP, ParsedTurn, format_hint, parse_turn, tool_step_text
from .runtime import LoRAGenRuntime, RuntimeCompletion

MODES = ("loragen", "icl")
DEFAULT_CAPTION = "An image uploaded by the user."


@dataclass
class Step:
    """One model turn: a tool call with its observation, the final answer, or an unreadable reply."""

    thought: str
    action: str | None
    action_input: str | None
    observation: str | None
    raw: str  # what the model wrote
    kind: str = "tool"  # "tool" | "answer" | "malformed"
    seconds: float = 0.0  # decoding time of this turn


@dataclass
class AgentResult:
    answer: str  # "" when the run failed (see `error`)
    steps: list[Step]
    mode: str
    latency_s: float
    prompt_tokens: int  # edge-model prompt tokens of the first call
    full_prompt_tokens: int  # what the in-context baseline's first call needs
    adapter_hash: str | None
    adapter_cache_hit: bool | None
    adapter_seconds: float | None
    merge_seconds: float | None
    images: list[str] = field(default_factory=list)  # workspace-relative images the tools produced
    error: str | None = None
    edge_prompt: str = ""  # the first call's prompt, as the edge model read it
    model_calls: int = 0

    @property
    def compression(self) -> float:
        return self.full_prompt_tokens / max(self.prompt_tokens, 1)

    def trace_text(self) -> str:
        """The Thought / Action / Observation trace, readable as GPT4Tools writes it."""
        lines = []
        for step in self.steps:
            if step.kind == "tool":
                lines += [f"Thought: {step.thought}", f"Action: {step.action}", f"Action Input: {step.action_input}"]
                lines.append(f"Observation: {step.observation}" if step.observation is not None else "(not run)")
            elif step.kind == "answer":
                lines += [f"Thought: {step.thought}", f"AI: {self.answer}"]
            else:
                lines += ["(reply not in the tool-use format:)", step.raw.strip()]
        if self.error:
            lines.append(f"Error: {self.error}")
        return "\n".join(lines)


class Agent:
    """A GPT4Tools agent over `tools` (registry tool names, `Tool`s, LangChain tools or functions)."""

    def __init__(
        self,
        tools: Iterable[Any],
        runtime: LoRAGenRuntime | None = None,
        workspace: Workspace | str | Path | None = None,
        mode: str = "loragen",
        max_steps: int = 5,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ):
        self.registry = _registry_of(tools)
        self.tools: list[Tool] = list(self.registry)
        self.tool_names = [tool.name for tool in self.tools]
        self.system_prompt = system_prompt_for([(tool.name, tool.description) for tool in self.tools])
        self._runtime = runtime
        # A path names the workspace folder; None makes a fresh temporary one.
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.mode = _check_mode(mode)
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.max_steps = max_steps
        self.max_new_tokens = max_new_tokens

    @property
    def runtime(self) -> LoRAGenRuntime:
        if self._runtime is None:  # loaded on first use: building an Agent stays cheap
            self._runtime = LoRAGenRuntime.default()
        return self._runtime

    def prepare(self) -> AdapterResult:
        """Generate (or fetch) this agent's adapter now rather than on the first request."""
        return self.runtime.adapter_for(self.system_prompt)

    def prompt_parts(self, message: str, image: str | None = None, caption: str | None = None) -> PromptParts:
        history = image_turn(image, caption or DEFAULT_CAPTION) if image else ""
        return split_prompt(build_prompt([(t.name, t.description) for t in self.tools], message, history))

    def run(
        self,
        message: str,
        image: str | None = None,
        caption: str | None = None,
        mode: str | None = None,
        *,
        on_text: Callable[[str], None] | None = None,
        on_step: Callable[[Step], None] | None = None,
    ) -> AgentResult:
        """Answer one request. `image`: a workspace-relative path, introduced with the GPT4Tools image
        turn. `on_text` receives the model's text as it is decoded; `on_step` each finished step."""
        mode = _check_mode(mode or self.mode)
        start = time.perf_counter()
        parts = self.prompt_parts(message, image, caption)
        system_prompt = self.system_prompt if mode == "loragen" else None
        steps: list[Step] = []
        completions: list[RuntimeCompletion] = []
        trace, hint, error, answer = "", "", None, ""

        def record(step: Step) -> None:
            steps.append(step)
            if on_step:
                on_step(step)

        while True:
            prompt = _prompt_for(parts, trace, mode, hint)
            completion = self.runtime.complete(
                prompt, system_prompt, self.max_new_tokens, stop=(OBSERVATION_STOP,), on_text=on_text
            )
            completions.append(completion)
            turn = parse_turn(completion.text)
            if turn.kind == "malformed":
                record(Step(turn.thought, None, None, None, completion.text, "malformed", completion.seconds))
                if hint:
                    error = (
                        f"The model's reply did not follow the tool-use format twice in a row ({turn.problem}); "
                        f"it wrote: {completion.text.strip()[:200]!r}"
                    )
                    break
                hint = format_hint(self.tool_names)
                continue
            hint = ""
            if turn.kind == "answer":
                answer = turn.answer
                record(Step(turn.thought, None, None, None, completion.text, "answer", completion.seconds))
                break
            if sum(step.kind == "tool" for step in steps) >= self.max_steps:
                record(Step(turn.thought, turn.action, turn.action_input, None, completion.text, "tool", completion.seconds))
                error = f"No final answer after {self.max_steps} tool calls (the step limit); the model asked for another one."
                break
            observation = self._run_tool(turn)
            record(Step(turn.thought, turn.action, turn.action_input, observation, completion.text, "tool", completion.seconds))
            trace += tool_step_text(turn.action, turn.action_input, observation)

        first = completions[0]
        full_prompt = parts.reassemble()
        return AgentResult(
            answer=answer,
            steps=steps,
            mode=mode,
            latency_s=time.perf_counter() - start,
            prompt_tokens=first.prompt_tokens,
            full_prompt_tokens=first.prompt_tokens if mode == "icl" else self.runtime.count_prompt_tokens(full_prompt),
            adapter_hash=first.adapter_hash,
            adapter_cache_hit=first.adapter_cache_hit,
            adapter_seconds=first.adapter_seconds,
            merge_seconds=first.merge_seconds,
            images=self._produced_images(steps, exclude=image),
            error=error,
            edge_prompt=_prompt_for(parts, "", mode, ""),
            model_calls=len(completions),
        )

    def _run_tool(self, turn: ParsedTurn) -> str:
        tool = self._find_tool(turn.action)
        if tool is None:
            return f"error: there is no tool named '{turn.action}'. The tools are: {', '.join(self.tool_names)}."
        try:
            return str(tool.run(turn.action_input, self.workspace))
        except Exception as failure:  # a tool bug must not end the conversation; the model sees it
            return f"error: {tool.name} failed: {failure}"

    def _find_tool(self, name: str) -> Tool | None:
        if name in self.registry:
            return self.registry.get(name)
        folded = {tool.name.casefold(): tool for tool in self.tools}
        return folded.get(name.casefold())

    def _produced_images(self, steps: list[Step], exclude: str | None) -> list[str]:
        found: list[str] = []
        for step in steps:
            for path in IMAGE_PATH.findall(step.observation or ""):
                if path == exclude or path in found:
                    continue
                try:
                    if self.workspace.resolve(path).is_file():
                        found.append(path)
                except WorkspaceError:
                    continue
        return found


def _registry_of(tools: Iterable[Any]) -> ToolRegistry:
    if isinstance(tools, ToolRegistry):
        return tools
    registry = ToolRegistry()
    defaults = None
    for item in tools:
        if isinstance(item, str):
            defaults = defaults or default_registry()
            item = defaults.get(item)
        registry.register(item)
    return registry


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")
    return mode


def _prompt_for(parts: PromptParts, trace: str, mode: str, hint: str) -> str:
    """What the edge model reads: the edge prompt (loragen) or the full prompt (icl), then the trace."""
    parts = dataclasses.replace(parts, trace=trace)
    prompt = parts.edge_prompt if mode == "loragen" else parts.reassemble()
    return prompt.rstrip("\n") + "\n" + hint if hint else prompt

