"""Agents with different tool sets share one runtime across threads without seeing each other's adapter.

Every test compares concurrent calls with the same calls made one after another: the outputs must be
identical. The tiny generator is calibrated so each tool set gets its own adapter and the adapters
change the edge model's output (checked first, or the comparison would prove nothing).
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import time

import pytest

from agent import Agent, LoRAGenChatModel, LoRAGenRuntime
from loragen_core import load_causal_lm
from loragen_core.edge_runtime import EdgeModel
from tests.test_agent import calibrated_tiny_generator, system_prompt_of, workspace_with_image

TOOL_SETS = [
    ["Edge Detection On Image", "Detect Face"],
    ["Segment the Image", "Line Detection On Image", "Assess the Image Quality"],
    ["Get Photo Description"],
]
MESSAGES = ["Detect the edges of this image.", "What is in this picture?"]
MAX_NEW_TOKENS = 12
# Unconstrained: within 12 tokens the trace grammar makes every tool set write the same forced prefix,
# and identical outputs would not show that the adapters stay apart.


@pytest.fixture(scope="module")
def generator(tiny_dirs):
    return calibrated_tiny_generator(tiny_dirs, [system_prompt_of(tools) for tools in TOOL_SETS])


@pytest.fixture(scope="module")
def image_workspace(tmp_path_factory):
    return workspace_with_image(tmp_path_factory.mktemp("concurrency"))


def fresh_runtime(generator, tiny_dirs, tmp_path) -> LoRAGenRuntime:
    """Its own edge model and adapter cache: nothing carries over between the compared runs."""
    return LoRAGenRuntime(generator, EdgeModel(load_causal_lm(str(tiny_dirs["edge"]))), adapter_cache_dir=tmp_path, trained=False)


def fingerprint(result) -> tuple:
    return (result.answer, tuple(step.raw for step in result.steps), result.error, result.adapter_hash)


def sequential_results(generator, tiny_dirs, tmp_path, image_workspace) -> dict:
    workspace, image = image_workspace
    runtime = fresh_runtime(generator, tiny_dirs, tmp_path / "sequential")
    agents = [Agent(tools, runtime=runtime, workspace=workspace, max_new_tokens=MAX_NEW_TOKENS, constrained=False) for tools in TOOL_SETS]
    results = {(a, m): fingerprint(agent.run(MESSAGES[m], image=image)) for a, agent in enumerate(agents) for m in range(len(MESSAGES))}
    # Without distinct adapters and outputs, identical results would not show isolation.
    assert len({results[(a, 0)][3] for a in range(len(agents))}) == len(agents)
    assert len({results[(a, 0)][1] for a in range(len(agents))}) == len(agents)
    return results


class TakeTurns:
    """Runtime proxy for several threads: their model calls run strictly in rotation (A, B, C, A, ...),
    so every call follows another agent's call and the adapter must be swapped each time."""

    def __init__(self, runtime: LoRAGenRuntime, n_threads: int):
        self.runtime = runtime
        self.turn_of = list(range(n_threads))  # threads still running, in rotation order
        self.turn = 0
        self.condition = threading.Condition()
        self.adapters_used: list[str | None] = []

    def for_thread(self, index: int) -> "TakeTurns._Member":
        return TakeTurns._Member(self, index)

    class _Member:
        def __init__(self, shared: "TakeTurns", index: int):
            self.shared, self.index = shared, index

        def complete(self, *args, **kwargs):
            shared = self.shared
            with shared.condition:
                shared.condition.wait_for(lambda: shared.turn_of[shared.turn] == self.index)
            try:
                completion = shared.runtime.complete(*args, **kwargs)
                shared.adapters_used.append(completion.adapter_hash)
                return completion
            finally:
                with shared.condition:
                    shared.turn = (shared.turn + 1) % len(shared.turn_of)
                    shared.condition.notify_all()

        def count_prompt_tokens(self, prompt: str) -> int:
            return self.shared.runtime.count_prompt_tokens(prompt)

        def leave(self) -> None:
            shared = self.shared
            with shared.condition:
                position = shared.turn_of.index(self.index)
                shared.turn_of.remove(self.index)
                if position < shared.turn:
                    shared.turn -= 1
                if shared.turn_of:
                    shared.turn %= len(shared.turn_of)
                shared.condition.notify_all()


def test_interleaved_agents_match_sequential_runs(generator, tiny_dirs, tmp_path, image_workspace):
    expected = sequential_results(generator, tiny_dirs, tmp_path, image_workspace)
    workspace, image = image_workspace
    runtime = fresh_runtime(generator, tiny_dirs, tmp_path / "interleaved")
    turns = TakeTurns(runtime, len(TOOL_SETS))
    got = {}

    def serve(a: int) -> None:
        member = turns.for_thread(a)
        agent = Agent(TOOL_SETS[a], runtime=member, workspace=workspace, max_new_tokens=MAX_NEW_TOKENS, constrained=False)
        try:
            for m in range(len(MESSAGES)):
                got[(a, m)] = fingerprint(agent.run(MESSAGES[m], image=image))
        finally:
            member.leave()

    threads = [threading.Thread(target=serve, args=(a,)) for a in range(len(TOOL_SETS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert got == expected
    used = turns.adapters_used
    assert len(used) >= 2 * len(TOOL_SETS) and all(a != b for a, b in zip(used, used[1:]))  # swapped every call


def test_free_running_threads_match_sequential_runs(generator, tiny_dirs, tmp_path, image_workspace):
    expected = sequential_results(generator, tiny_dirs, tmp_path, image_workspace)
    workspace, image = image_workspace
    runtime = fresh_runtime(generator, tiny_dirs, tmp_path / "threads")  # adapters are generated concurrently too
    agents = [Agent(tools, runtime=runtime, workspace=workspace, max_new_tokens=MAX_NEW_TOKENS, constrained=False) for tools in TOOL_SETS]
    rng = random.Random(0)
    jobs = []
    for _ in range(2):  # every (agent, message) twice, in a shuffled order
        jobs += rng.sample(sorted(expected), len(expected))
    workers = 6
    start = threading.Barrier(workers)

    def run(index: int):
        if index < workers:
            start.wait(timeout=60)  # the first jobs all begin at once
        a, m = jobs[index]
        return fingerprint(agents[a].run(MESSAGES[m], image=image))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run, range(len(jobs))))

    assert results == [expected[job] for job in jobs]
    assert runtime.adapter_generations == len(TOOL_SETS)


def test_chat_models_with_different_tools_in_threads_match_sequential_calls(generator, tiny_dirs, tmp_path):
    from langchain_core.messages import HumanMessage

    from tools.registry import default_registry

    def tools_for(names):
        from agent import langchain_tools

        return langchain_tools([default_registry().get(n) for n in names])

    def replies(runtime):
        model = LoRAGenChatModel(runtime=runtime, max_new_tokens=MAX_NEW_TOKENS, constrained=False)
        return [model.bind_tools(tools_for(names)) for names in TOOL_SETS]

    request = [HumanMessage("Detect the edges of image/abcdefgh.png.")]
    sequential = [bound.invoke(request) for bound in replies(fresh_runtime(generator, tiny_dirs, tmp_path / "seq"))]
    expected = [(r.content, r.response_metadata["adapter_hash"]) for r in sequential]
    assert len({content for content, _ in expected}) == len(TOOL_SETS)  # each adapter answers differently

    bound = replies(fresh_runtime(generator, tiny_dirs, tmp_path / "par"))
    with ThreadPoolExecutor(max_workers=6) as pool:
        outputs = list(pool.map(lambda i: bound[i % 3].invoke(request), range(12)))
    assert [(r.content, r.response_metadata["adapter_hash"]) for r in outputs] == [expected[i % 3] for i in range(12)]


def test_stream_in_thread_yields_the_pieces_then_the_result_and_raises_what_the_worker_raised():
    from agent.streaming import stream_in_thread

    def writes(on_text):
        for piece in ("a", "b", "c"):
            on_text(piece)
        return "done"

    assert list(stream_in_thread(writes)) == [("text", "a"), ("text", "b"), ("text", "c"), ("done", "done")]

    def fails(on_text):
        on_text("partial")
        raise KeyError("worker failed")

    seen = []
    with pytest.raises(KeyError, match="worker failed"):
        for event in stream_in_thread(fails):
            seen.append(event)
    assert seen == [("text", "partial")]

    def slow(on_text):
        time.sleep(0.3)
        return "late"

    events = list(stream_in_thread(slow, idle_every=0.05))
    assert events[-1] == ("done", "late") and ("idle", None) in events  # a caller can refresh while nothing is written
