"""What the UI shows for a turn: plain functions of the agent's results, so they read (and test)
without a server."""

from __future__ import annotations

from collections.abc import Sequence

from agent import AgentResult
from loragen_core import AdapterResult
from tools.workspace import Workspace

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


def render_trace(loragen: AgentResult, baseline: AgentResult | None = None, baseline_label: str = "In-context baseline") -> str:
    parts = [f"# LoRA-Gen (edge prompt, {loragen.prompt_tokens} tokens, + adapter)\n{loragen.trace_text()}"]
    if baseline:
        parts.append(f"# {baseline_label} ({baseline.prompt_tokens}-token prompt)\n{baseline.trace_text()}")
    return "\n\n".join(parts)


def render_latency(label: str, result: AgentResult) -> str:
    return f"**{label}**: {result.latency_s:.2f} s, {result.prompt_tokens}-token prompt, {result.model_calls} model call(s)"


def render_panel(
    trained: bool,
    tools: Sequence[str],
    loragen: AgentResult | None = None,
    baseline: AgentResult | None = None,
    prepared: AdapterResult | None = None,
    baseline_label: str = "In-context baseline",
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
        if loragen.tool_prior is not None:
            ranked = sorted(zip(loragen.tool_prior.probs, loragen.tool_prior.names), reverse=True)[:3]
            need = "" if loragen.tool_prior.needs_tool is None else f"P(a tool is needed) {loragen.tool_prior.needs_tool:.2f}; "
            lines.append("Tool prior (the definitions, matched with the request; not in the edge prompt): " + need
                         + ", ".join(f"{name} {prob:.2f}" for prob, name in ranked))
        if baseline is not None:
            lines.append(f"{baseline_label}: {baseline.latency_s:.2f} s, {baseline.prompt_tokens}-token prompt")
    elif prepared is not None:
        how = "from cache" if prepared.cache_hit else "generated"
        lines.append(f"Adapter: `{prepared.adapter_hash[:16]}`, {how} in {prepared.seconds:.2f} s")
    else:
        lines.append("Adapter: generated for this tool set at the first message.")
    return "\n\n".join(lines)
