"""Micro-batching across tenants: requests that arrive within a short window are decoded together in
one `EdgeModel.complete_batch`, each row under its own tenant's adapter (`GeneratedLoRA.stack`,
applied functionally, nothing merged) and its own grammar.

    request ─► adapter_for (caller's thread) ─► queue ─► worker: gather ≤ window ─► complete_batch ─► rows

`BatchingRuntime` wraps a `LoRAGenRuntime` and has its interface, so `LoRAGenChatModel` (and the
server) use it unchanged. What it cannot batch it passes to the wrapped runtime: streamed requests
(`complete_batch` has no per-row streaming), plain chat (`answer_line_ends=False`, a rule
`complete_batch` does not take) and early stops (`should_stop`). A batch of one is decoded as the
runtime decodes it (merged adapter, stop strings while decoding).

`complete_batch` has no stop strings, so a row that calls a tool would decode past `Observation:`
(an invented observation, then an answer) and hold the whole batch up. Its grammar is narrowed to end
right after `Observation:` instead (`_ending_at_observation`); the text is then cut at the stop string
as the runtime cuts it. Greedy decoding gives each row the text and token count it gets alone
(tests/test_server.py, on the tiny models; the count is one short for a tool call whose
`Observation:` took the budget's very last token; the adapter is applied functionally here and merged there,
so on a real model a near-tie between two tokens could in principle break differently). `seconds` is
the whole batch's wall time.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from loragen_core import AdapterResult, GeneratedLoRA
from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS, Completion, cut_at_stop
from loragen_core.tool_prior import ToolPrior
from tools.gpt4tools_format import OBSERVATION_STOP, TOOL_STEP_START

from ..runtime import LoRAGenRuntime, RuntimeCompletion

log = logging.getLogger(__name__)

BATCH_WINDOW_SECONDS = 0.02  # how long the first request of a batch waits for company
MAX_BATCH = 16  # rows per decode: bounds the padding and how long a short reply waits for the longest (measured at 16)

# The start rule of `tools.gpt4tools_grammar.trace_grammar` (any number of tool steps, then the answer),
# and its replacement for a row that stops at the first observation, as the runtime's stop string does.
_TRACE_START = "start: step* answer"
_FIRST_STEP_START = f"start: first_step | answer\nfirst_step: {json.dumps(TOOL_STEP_START)} call {json.dumps(chr(10) + OBSERVATION_STOP)}"


@dataclass
class _Job:
    prompt: str
    adapter: AdapterResult | None
    max_new_tokens: int
    stop: tuple[str, ...]
    grammar: str | None
    tool_prior: ToolPrior | None = None
    done: Future = field(default_factory=Future)


def _ending_at_observation(grammar: str | None, stop: Sequence[str]) -> str | None:
    """A trace grammar narrowed to one tool step ending at `Observation:` (or the answer), when the
    request stops there anyway; any other grammar as it is."""
    if grammar is None or OBSERVATION_STOP not in stop or _TRACE_START not in grammar.splitlines():
        return grammar
    return grammar.replace(_TRACE_START, _FIRST_STEP_START, 1)


class BatchingRuntime:
    """A `LoRAGenRuntime` whose concurrent `complete` calls are decoded in micro-batches."""

    def __init__(self, runtime: LoRAGenRuntime, window_seconds: float = BATCH_WINDOW_SECONDS, max_batch: int = MAX_BATCH):
        self.runtime = runtime
        self.window_seconds = window_seconds
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []  # one entry per decode the worker ran (1: decoded alone)
        self._queue: queue.Queue[_Job] = queue.Queue()
        threading.Thread(target=self._work, name="loragen-batcher", daemon=True).start()

    def __getattr__(self, name: str) -> Any:  # check_length, count_prompt_tokens, edge, trained, ...
        return getattr(self.runtime, name)

    def complete(
        self,
        prompt: str,
        system_prompt: str | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        stop: Sequence[str] | None = None,
        on_text: Callable[[str], None] | None = None,
        grammar: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        answer_line_ends: bool = True,
        tool_prior: ToolPrior | None = None,
    ) -> RuntimeCompletion:
        if on_text is not None or should_stop is not None or not answer_line_ends:
            return self._complete_unbatched(prompt, system_prompt, max_new_tokens, stop, on_text, grammar=grammar,
                                            should_stop=should_stop, answer_line_ends=answer_line_ends, tool_prior=tool_prior)
        job = self._job(prompt, system_prompt, max_new_tokens, tuple(s for s in stop or () if s), grammar, tool_prior)
        self._queue.put(job)
        return job.done.result()

    def _complete_unbatched(self, *args: Any, **kwargs: Any) -> RuntimeCompletion:
        """What cannot be batched is decoded by the wrapped runtime, alone."""
        return self.runtime.complete(*args, **kwargs)

    def _job(self, prompt: str, system_prompt: str | None, max_new_tokens: int, stop: tuple[str, ...], grammar: str | None,
             tool_prior: ToolPrior | None = None) -> _Job:
        self.runtime.check_length(prompt)  # refused here, before the adapter and the queue
        # In the caller's thread: one tenant's cloud-LM pass does not hold up the others' batches.
        adapter = self.runtime.adapter_for(system_prompt) if system_prompt is not None else None
        return _Job(prompt, adapter, max_new_tokens, stop, grammar, tool_prior)

    # ---- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.window_seconds
            while len(batch) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            # One decode per budget and kind: complete_batch takes one max_new_tokens, and rows on
            # the base weights cannot share a stacked adapter with adapted rows.
            groups: dict[tuple[int, bool], list[_Job]] = {}
            for job in batch:
                groups.setdefault((job.max_new_tokens, job.adapter is None), []).append(job)
            for group in groups.values():
                try:
                    results = self._decode(group) if len(group) > 1 else [self._decode_alone(group[0])]
                except Exception as failure:  # each caller gets the failure; the worker lives on
                    log.exception("a batch of %d failed", len(group))
                    for job in group:
                        job.done.set_exception(failure)
                    continue
                for job, result in zip(group, results):
                    job.done.set_result(result)

    def _decode_alone(self, job: _Job) -> RuntimeCompletion:
        """As `LoRAGenRuntime.complete` decodes: the adapter merged (kept for the tenant's next
        request), the stop strings applied while decoding."""
        result = self.runtime.decode(job.prompt, job.adapter, max_new_tokens=job.max_new_tokens, stop=job.stop, grammar=job.grammar,
                                     tool_prior=job.tool_prior)
        self.batch_sizes.append(1)
        return result

    def _decode_together(self, group: list[_Job], grammars: list[str | None]) -> list[Completion]:
        """One decode of the whole group, each row under its own adapter (applied functionally)."""
        edge = self.runtime.edge
        adapters = [job.adapter for job in group if job.adapter is not None]
        with edge.lock:
            if edge.active_adapter is not None:  # complete_batch applies adapters on top of the current weights
                edge.reset()
            return edge.complete_batch(
                [job.prompt for job in group],
                adapter=GeneratedLoRA.stack([a.adapter for a in adapters]) if adapters else None,
                max_new_tokens=group[0].max_new_tokens,
                grammars=grammars,
                tool_priors=[job.tool_prior for job in group],
            )

    def _decode(self, group: list[_Job]) -> list[RuntimeCompletion]:
        completions = self._decode_together(group, [_ending_at_observation(job.grammar, job.stop) for job in group])
        self.batch_sizes.append(len(group))
        results = []
        for job, c in zip(group, completions):
            new_tokens = c.new_tokens
            if _ending_at_observation(job.grammar, job.stop) != job.grammar and OBSERVATION_STOP in c.text:
                # The EOS the finished grammar forced; decoding alone stops before it. (Wrong by one
                # only when "Observation:" took the budget's very last token: then no EOS was written.)
                new_tokens -= 1
            results.append(self._result(job, cut_at_stop(c.text, job.stop), c, 0.0 if job.adapter else None, new_tokens))
        return results  # merge_seconds 0.0: applied functionally, nothing merged

    @staticmethod
    def _result(job: _Job, text: str, completion: Completion, merge_seconds: float | None, new_tokens: int | None = None) -> RuntimeCompletion:
        adapter = job.adapter
        new_tokens = completion.new_tokens if new_tokens is None else new_tokens
        return RuntimeCompletion(
            text=text, prompt_tokens=completion.prompt_tokens, new_tokens=new_tokens, seconds=completion.seconds,
            adapter_hash=adapter.adapter_hash if adapter else None, adapter_cache_hit=adapter.cache_hit if adapter else None,
            adapter_seconds=adapter.seconds if adapter else None, merge_seconds=merge_seconds,
        )
