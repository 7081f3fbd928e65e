"""The tool-using agent: a LoRA-Gen specialised edge model running the GPT4Tools loop.

    tools ─► GPT4Tools system prompt ─► adapter (generated once, cached) ─► merged into the edge model
    request ─► edge prompt ─► Thought / Action / Action Input ─► tool ─► Observation ─► ... ─► AI: answer

Each model call sees the edge prompt (the user's part of a GPT4Tools prompt) followed by the steps
taken so far, exactly as the training data's context samples write them; decoding stops before
`Observation:`, the tool runs, and its result is appended. `mode` says what else the edge model reads
(agent/modes.py): "loragen-names" adds one line naming the tools; "icl" runs the same loop on the
base model with the full prompt (the in-context baseline), for comparison.

Decisions:
- Constrained decoding (on by default): the edge model writes under the GPT4Tools trace grammar of
  the agent's tools (tools/gpt4tools_grammar.py), so `Action:` can only name a bound tool, and each
  tool's input has the parts its definition states, its image parts images the conversation has.
- Tool prior (on by default, with the grammar): the request is matched with the tools' definitions by
  a sentence embedder, and that prior steers the grammar's choice of tool (loragen_core/tool_prior.py):
  the definitions inform the choice without entering the edge model's context.
- Memory: earlier (request, answer) turns passed as `history` go into GPT4Tools' "Previous
  conversation" after the image turn, newest kept, oldest dropped first beyond `history_tokens`.
- A malformed turn (possible only unconstrained) gets one corrective retry: the same prompt plus a
  line restating the format and the tool names. A second malformed turn in a row ends the run with
  `AgentResult.error`; a good turn resets the allowance.
- A failed tool call (an `error: ...` observation, or an action naming no tool) is shown to the model,
  which gets one more try; a second failure in a row ends the run with an answer that says what failed.
- A tool that needs an image when the conversation has none is not run: the answer asks for one.
- The final answer is built from what the tools really returned: an answer naming a file no tool
  wrote, or a placeholder such as `[output from the tool]`, is replaced by the last observation.
- Each run is bounded by `max_steps` tool calls and `max_seconds` of wall time; `should_stop` (a Stop
  button) ends it between tokens.
- A call identical to the last successful one (same tool, same input) is not run again: its result
  would be the same, so the run ends with that result as the answer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loragen_core.adapter_service import AdapterResult
from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS
from tools import image_turn
from loragen_core.tool_prior import ToolPrior, default_retriever
from tools.gpt4tools_grammar import needs_an_image, tool_call_grammar
from tools.gpt4tools_prompt import PromptParts, prompt_parts, system_prompt_for
from tools.registry import Tool, ToolRegistry, default_registry
from tools.workspace import Workspace, WorkspaceError

from tools.gpt4tools_format import OBSERVATION_STOP

from .parsing import IMAGE_PATH, PLACEHOLDER, grounded_answer, parse_turn, tool_step_text, with_format_hint
from .modes import DEFAULT_MODE, FULL_PROMPT_LORA, check_mode, edge_text, reads_full_prompt, uses_adapter
from .runtime import LoRAGenRuntime, RuntimeCompletion

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
    tool_prior: ToolPrior | None = None  # what the tool definitions said of the request (None: not used)

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
        mode: str = DEFAULT_MODE,
        max_steps: int = 5,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        constrained: bool = True,
        max_seconds: float = 60.0,
        history_tokens: int = 256,
        tool_prior: bool = True,
    ):
        self.registry = _registry_of(tools)
        self.tools: list[Tool] = list(self.registry)
        self.tool_names = [tool.name for tool in self.tools]
        self.system_prompt = system_prompt_for([(tool.name, tool.description) for tool in self.tools])
        self._runtime = runtime
        # A path names the workspace folder; None makes a fresh temporary one.
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.mode = check_mode(mode)
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.max_steps = max_steps
        self.max_new_tokens = max_new_tokens
        self.constrained = constrained
        self.use_tool_prior = tool_prior
        self.max_seconds = max_seconds
        self.history_tokens = history_tokens

    @property
    def runtime(self) -> LoRAGenRuntime:
        if self._runtime is None:  # loaded on first use: building an Agent stays cheap
            self._runtime = LoRAGenRuntime.default()
        return self._runtime

    def prepare(self) -> AdapterResult:
        """Generate (or fetch) this agent's adapter now rather than on the first request."""
        return self.runtime.adapter_for(self.system_prompt)

    def prompt_parts(
        self, message: str, image: str | None = None, caption: str | None = None, history: Sequence[tuple[str, str]] = ()
    ) -> PromptParts:
        lines = [image_turn(image, caption or DEFAULT_CAPTION)] if image else []
        lines += self._kept_history(history)
        return prompt_parts([(t.name, t.description) for t in self.tools], message, "\n".join(lines))

    def _kept_history(self, history: Sequence[tuple[str, str]]) -> list[str]:
        """The newest earlier turns that fit in `history_tokens`, oldest first, as GPT4Tools writes them."""
        kept: list[str] = []
        used = 0
        for human, ai in reversed(list(history)):
            turn = f"Human: {' '.join(human.split())}\nAI: {' '.join(ai.split())}"
            cost = self.runtime.count_tokens(turn)
            if used + cost > self.history_tokens:
                break
            kept.insert(0, turn)
            used += cost
        return kept

    def grammar(self, images: Sequence[str]) -> str | None:
        """The trace grammar for this tool set: each tool's input in its stated format, image parts
        restricted to `images`. With no image yet, inputs stay free: a call to an image tool is then
        answered by asking for an image (`_Run._call`), not by a reply the model makes up instead."""
        if not self.constrained:
            return None
        return tool_call_grammar([(t.name, t.description) for t in self.tools], list(images) if images else None)

    def tool_prior(self, message: str) -> ToolPrior | None:
        """The prior over this agent's tools for `message` (None when off, or unconstrained)."""
        if not (self.constrained and self.use_tool_prior and self.tools):
            return None
        return default_retriever().prior(message, [(t.name, t.description) for t in self.tools], need=True)

    def run(
        self,
        message: str,
        image: str | None = None,
        caption: str | None = None,
        mode: str | None = None,
        *,
        history: Sequence[tuple[str, str]] = (),
        on_text: Callable[[str], None] | None = None,
        on_step: Callable[[Step], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> AgentResult:
        """Answer one request. `image`: a workspace-relative path, introduced with the GPT4Tools image
        turn; `history`: earlier (request, answer) turns; `on_text` receives the model's text as it is
        decoded, `on_step` each finished step; `should_stop` returning True ends the run early."""
        mode = check_mode(mode or self.mode)
        run = _Run(self, mode, self.prompt_parts(message, image, caption, history), image, on_step, should_stop,
                   self.tool_prior(message))
        while run.error is None and run.answer is None:
            run.take_turn(on_text)
        return run.result()

    def _run_tool(self, tool: Tool, action_input: str) -> str:
        try:
            return str(tool.run(action_input, self.workspace))
        except Exception as failure:  # a tool bug must not end the conversation; the model sees it
            return f"error: {tool.name} failed: {failure}"

    def _find_tool(self, name: str) -> Tool | None:
        if name in self.registry:
            return self.registry.get(name)
        folded = {tool.name.casefold(): tool for tool in self.tools}
        return folded.get(name.casefold())

    def _existing_images(self, text: str) -> list[str]:
        """The image paths named in `text` that are files of the workspace, in order, once each."""
        found: list[str] = []
        for path in IMAGE_PATH.findall(text or ""):
            if path in found:
                continue
            try:
                if self.workspace.resolve(path).is_file():
                    found.append(path)
            except WorkspaceError:
                continue
        return found


class _Run:
    """One request's loop state: the steps so far, and what ends it (an answer or an error)."""

    def __init__(self, agent: Agent, mode: str, parts: PromptParts, image: str | None, on_step, should_stop,
                 tool_prior: ToolPrior | None = None):
        self.agent, self.mode, self.parts, self.image = agent, mode, parts, image
        self.tool_prior = tool_prior
        self.on_step = on_step
        self.start = time.perf_counter()
        self.deadline = self.start + agent.max_seconds
        self.user_stop = should_stop
        self.steps: list[Step] = []
        self.completions: list[RuntimeCompletion] = []
        self.trace, self.retrying = "", False  # retrying: the last turn was malformed
        self.failures = 0  # failed tool calls in a row
        self.images = [image] if image else []  # what the conversation has: the user's, then the tools'
        self.answer: str | None = None
        self.error: str | None = None

    def should_stop(self) -> bool:
        return (self.user_stop is not None and self.user_stop()) or time.perf_counter() > self.deadline

    def _prior_now(self) -> ToolPrior | None:
        """The tool prior for the next model call, knowing which tools this request has run already."""
        if self.tool_prior is None:
            return None
        ran = tuple(s.action for s in self.steps if s.kind == "tool" and s.observation is not None)
        return dataclasses.replace(self.tool_prior, called=ran)

    def record(self, step: Step) -> None:
        self.steps.append(step)
        if self.on_step:
            self.on_step(step)

    def take_turn(self, on_text) -> None:
        if self.should_stop():
            self.error = self._stopped_reason()
            return
        agent = self.agent
        completion = agent.runtime.complete(
            _prompt_for(self.parts, self.trace, self.mode, agent.tool_names if self.retrying else None),
            agent.system_prompt if uses_adapter(self.mode) else None,
            agent.max_new_tokens,
            stop=(OBSERVATION_STOP,),
            on_text=on_text,
            grammar=agent.grammar(self.images),
            tool_prior=self._prior_now() if agent.constrained else None,
            should_stop=self.should_stop,
            adapter=agent.runtime.full_prompt_lora() if self.mode == FULL_PROMPT_LORA else None,
        )
        self.completions.append(completion)
        turn = parse_turn(completion.text)
        if turn.kind == "malformed":
            self.record(Step(turn.thought, None, None, None, completion.text, "malformed", completion.seconds))
            if self.should_stop():
                self.error = self._stopped_reason()
            elif self.retrying:
                self.error = (
                    f"The model's reply did not follow the tool-use format twice in a row ({turn.problem}); "
                    f"it wrote: {completion.text.strip()[:200]!r}"
                )
            self.retrying = True
            return
        self.retrying = False
        if turn.kind == "answer":
            self.record(Step(turn.thought, None, None, None, completion.text, "answer", completion.seconds))
            if not any(s.kind == "tool" for s in self.steps) and PLACEHOLDER.search(turn.answer):
                # No tool ran, so there is no real output to put in its place: say so instead.
                self.error = f"The model answered with a placeholder ({turn.answer.strip()[:80]!r}) instead of an answer, without running a tool."
                return
            self.answer = self._grounded(turn.answer)
            return
        step = Step(turn.thought, turn.action, turn.action_input, None, completion.text, "tool", completion.seconds)
        if sum(s.kind == "tool" for s in self.steps) >= agent.max_steps:
            self.record(step)
            self.error = f"No final answer after {agent.max_steps} tool calls (the step limit); the model asked for another one."
            return
        self._call(step)

    def _call(self, step: Step) -> None:
        agent = self.agent
        last = next((s for s in reversed(self.steps) if s.kind == "tool" and s.observation is not None), None)
        if last is not None and not last.observation.startswith("error") and (step.action, step.action_input) == (
            last.action, last.action_input
        ):
            # The same call again would return the same result: the model is done, it just did not say so
            # (the small edge model sometimes writes one step twice). Answer from the result instead.
            self.record(dataclasses.replace(step, observation=None))
            self.answer = self._grounded("")
            return
        tool = agent._find_tool(step.action)
        if tool is not None and needs_an_image(tool.description) and not agent._existing_images(step.action_input):
            if not self.images:  # nothing to run it on: ask, rather than let a made-up path through
                self.record(step)
                self.answer = f"{tool.name} needs an image, and this conversation has none yet. Please upload one."
                return
        if tool is None:
            observation = f"error: there is no tool named '{step.action}'. The tools are: {', '.join(agent.tool_names)}."
        else:
            step.action = tool.name
            observation = agent._run_tool(tool, step.action_input)
        step.observation = observation
        self.record(step)
        self.trace += tool_step_text(step.action, step.action_input, observation)
        if observation.startswith("error"):
            self.failures += 1
            if self.failures >= 2:  # the retry that saw the error failed too: say so, invent nothing
                self.answer = f"Sorry, I could not do that: {step.action} failed twice. The last error was: {observation}"
            return
        self.failures = 0
        self.images += [p for p in agent._existing_images(observation) if p not in self.images]

    def _grounded(self, answer: str) -> str:
        tool_steps = [s for s in self.steps if s.kind == "tool" and s.observation is not None]
        if not tool_steps:
            return answer
        last, workspace_images = tool_steps[-1], self.agent._existing_images
        produced = [p for p in workspace_images(last.observation) if p != self.image]
        return grounded_answer(answer, last.action, last.observation, lambda path: bool(workspace_images(path)), produced)

    def _stopped_reason(self) -> str:
        if self.user_stop is not None and self.user_stop():
            return "Stopped."
        return f"No final answer within the time budget of {self.agent.max_seconds:g} s."

    def result(self) -> AgentResult:
        agent, first = self.agent, self.completions[0] if self.completions else None
        full_prompt = self.parts.reassemble()
        edge_prompt = _prompt_for(self.parts, "", self.mode, None)
        prompt_tokens = first.prompt_tokens if first else agent.runtime.count_prompt_tokens(edge_prompt)
        produced = []
        for step in self.steps:
            produced += [p for p in agent._existing_images(step.observation or "") if p != self.image and p not in produced]
        return AgentResult(
            answer=self.answer or "",
            steps=self.steps,
            mode=self.mode,
            latency_s=time.perf_counter() - self.start,
            prompt_tokens=prompt_tokens,
            full_prompt_tokens=prompt_tokens if reads_full_prompt(self.mode) else agent.runtime.count_prompt_tokens(full_prompt),
            adapter_hash=first.adapter_hash if first else None,
            adapter_cache_hit=first.adapter_cache_hit if first else None,
            adapter_seconds=first.adapter_seconds if first else None,
            merge_seconds=first.merge_seconds if first else None,
            images=produced,
            error=None if self.answer is not None else self.error,
            edge_prompt=edge_prompt,
            model_calls=len(self.completions),
            tool_prior=self.tool_prior,
        )


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


def _prompt_for(parts: PromptParts, trace: str, mode: str, hint_tools: Sequence[str] | None) -> str:
    """What the edge model reads in `mode` (agent/modes.py), then the trace; `hint_tools`: the retry
    after a malformed turn, which restates the format with these tool names."""
    prompt = edge_text(dataclasses.replace(parts, trace=trace), mode)
    return with_format_hint(prompt, hint_tools) if hint_tools is not None else prompt

