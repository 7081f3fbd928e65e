"""A short concurrent load on the chat UI: 8 sessions at once, two tool sets, one shared edge model.

Each session must get its own tool set's adapter, merged while its own answer was decoded (the
scripted edge model names the adapter merged at decoding time), and an answer without errors.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client

from tests.test_ui_api import GRADIO_WARNINGS, OTHER_TOOLS, expected_adapter, send, serve_scripted_app, texts
from ui import DEFAULT_TOOLS

SESSIONS = 8
TURNS = 2

pytestmark = GRADIO_WARNINGS


@pytest.fixture(scope="module")
def app_url(tiny_dirs, tmp_path_factory):
    app, url, runtime = serve_scripted_app(tiny_dirs, tmp_path_factory.mktemp("ui_load"))
    yield url, runtime
    app.close()


def test_eight_concurrent_sessions_with_two_tool_sets(app_url):
    url, runtime = app_url
    tool_sets = [DEFAULT_TOOLS if i % 2 == 0 else OTHER_TOOLS for i in range(SESSIONS)]
    clients = [Client(url, verbose=False) for _ in range(SESSIONS)]  # one Gradio session each
    start = threading.Barrier(SESSIONS)

    def converse(i: int) -> list[dict]:
        start.wait()
        return [send(clients[i], f"hello from session {i}, turn {turn}", tools=tool_sets[i]) for turn in range(TURNS)]

    with ThreadPoolExecutor(SESSIONS) as pool:
        outcomes = list(pool.map(converse, range(SESSIONS)))

    adapters = {tuple(tools): expected_adapter(runtime, tools) for tools in (DEFAULT_TOOLS, OTHER_TOOLS)}
    assert len(set(adapters.values())) == 2
    for i, turns in enumerate(outcomes):
        adapter = adapters[tuple(tool_sets[i])]
        chat = texts(turns[-1]["chat"])
        # Only this session's own turns, each answered with its own adapter merged. A session
        # starts on the default tools, so the other set is announced once.
        expected = [] if tool_sets[i] is DEFAULT_TOOLS else [
            "Tool set changed to: Line Detection On Image, Detect Face. The next answer uses a new adapter."
        ]
        for turn in range(TURNS):
            expected += [f"hello from session {i}, turn {turn}", f"Hello [adapter {adapter}]"]
        assert chat == expected, f"session {i}"
        for out in turns:
            assert f"`{adapter}`" in out["panel"], f"session {i}"
            assert re.search(r"This turn: \d+\.\d\d s", out["panel"])
    # Two tool sets: the cloud LM ran at most twice; the rest came from the cache.
    assert runtime.adapter_generations <= 2
    assert runtime.merges >= 2
