"""The chat UI in a real browser: Debian's headless Chromium, driven by Playwright.

`make test` installs Chromium first (`make browser`); Playwright never downloads a browser here. The
app is the scripted tiny-model one of test_ui_api.py, so the test knows what the agent will answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.test_ui_api import GRADIO_WARNINGS, expected_adapter, serve_scripted_app, square_png
from ui import DEFAULT_TOOLS

CHROMIUM = Path("/usr/bin/chromium")
# As on this project's machines: no sandbox as root, and no background connections to a closed network.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 60_000

pytestmark = GRADIO_WARNINGS


@pytest.fixture(scope="module")
def app_url(tiny_dirs, tmp_path_factory):
    app, url, runtime = serve_scripted_app(tiny_dirs, tmp_path_factory.mktemp("ui_browser"))
    yield url, runtime
    app.close()


@pytest.fixture
def page(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM}; `make browser` installs it")
    with sync_playwright() as playwright:
        # Playwright gives every launch a new, empty profile directory (--user-data-dir).
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)  # a loaded CI machine may take a while for a turn
            yield page
        finally:
            browser.close()


def test_chat_in_the_browser_with_image_trace_panel_and_baseline(app_url, page, tmp_path):
    url, runtime = app_url
    page.goto(url)
    chat, box = page.locator("#chat"), page.locator("#message textarea")

    page.locator("#message input[type=file]").set_input_files(str(square_png(tmp_path / "square.png")))
    thumbnail = page.locator("#message").get_by_role("listitem", name="File thumbnail")
    expect(thumbnail).to_have_count(1)  # the upload finished
    box.fill("#edges of this photo, please")
    box.press("Enter")

    adapter = expected_adapter(runtime, DEFAULT_TOOLS)
    expect(chat.get_by_text(f"Done [adapter {adapter}]: Result saved as image/")).to_be_visible()
    expect(chat.locator("img")).to_have_count(2)  # the upload and the edge map, inline
    expect(page.locator("#adapter-panel")).to_contain_text(f"{adapter}")
    expect(page.locator("#adapter-panel")).to_contain_text("untrained")
    expect(page.locator("#adapter-panel")).to_contain_text("full-prompt tokens")

    page.get_by_text("Trace: Thought / Action / Observation").click()
    expect(page.locator("#trace")).to_contain_text("Action: Edge Detection On Image")
    expect(page.locator("#trace")).to_contain_text("Observation: image/")

    # The comparison switch: the same message answered on the base weights, side by side.
    expect(page.locator("#baseline-chat")).to_be_hidden()
    page.locator("#compare input").check()
    expect(page.locator("#baseline-chat")).to_be_visible()
    box.fill("hello")
    box.press("Enter")
    expect(chat.get_by_text(f"Hello [adapter {adapter}]")).to_be_visible()
    expect(page.locator("#baseline-chat").get_by_text("Hello [adapter none]")).to_be_visible()
    expect(page.locator("#baseline-latency")).to_contain_text("In-context baseline")
    expect(page.locator("#loragen-latency")).to_contain_text("LoRA-Gen")

    # A file that is not an image is refused in the chat, and the page goes on working.
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.locator("#message input[type=file]").set_input_files(str(notes))
    expect(thumbnail).to_have_count(1)
    box.press("Enter")
    expect(chat.get_by_text("Upload refused: 'notes.txt' is not a readable image")).to_be_visible()

    screenshot = tmp_path / "chat_ui.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


def test_stop_memory_and_no_image_in_the_browser(app_url, page):
    url, _ = app_url
    page.goto(url)
    chat, box = page.locator("#chat"), page.locator("#message textarea")

    box.fill("#missing faces, is there one?")  # no image attached: the agent asks for one
    box.press("Enter")
    expect(chat.get_by_text("needs an image, and this conversation has none yet. Please upload one.")).to_be_visible()

    box.fill("#recall what did I ask you before?")  # the memory holds the previous turn
    box.press("Enter")
    expect(chat.get_by_text("You asked: #missing faces, is there one?")).to_be_visible()

    box.fill("#slow think hard")  # a long turn, ended by the Stop button
    box.press("Enter")
    expect(chat.get_by_text("Thinking")).to_be_visible()
    page.locator("#stop").click()
    expect(chat.get_by_text("The agent could not finish: Stopped.")).to_be_visible(timeout=10_000)


@pytest.mark.real_model
def test_each_default_tool_is_called_when_asked_in_plain_words_on_the_default_model(page, tmp_path):
    """Issue 15's bar in the browser, on the shipped generator and SmolLM2: with the UI's five default
    tools and a photo, two plain-words requests per tool, each phrased differently, call that tool
    (the trace shows the call). Two of the tools (quality, super-resolution) appear in no training row.

    The bar is 10 of 10 (results/default_tools_loragen.md). "Can you show me the outlines in this
    picture?" went to segmentation until the edge tool's description said "outlines"
    (tools/registry.py, DESCRIPTION_EDITS); the check's ten held-out requests score 8 of 10 with and
    without that edit, so this test guards the bar, not every phrasing."""
    from agent import LoRAGenRuntime
    from eval_gpt4tools.default_tools_check import REQUESTS
    from tests.test_ui_api import free_port
    from ui.app import build_app

    app = build_app(LoRAGenRuntime.default(), workspace_root=tmp_path / "workspaces", max_steps=1)
    url = app.launch(port=free_port(), block=False)
    misses = []
    try:
        page.goto(url)
        box, trace, edge_prompt = page.locator("#message textarea"), page.locator("#trace"), page.locator("#edge-prompt")
        page.get_by_text("Trace: Thought / Action / Observation").click()
        page.locator("#message input[type=file]").set_input_files(str(square_png(tmp_path / "photo.png", 96)))
        for phrasing in (0, 1):
            for tool, requests in REQUESTS.items():
                box.fill(requests[phrasing])
                box.press("Enter")
                # The turn's last update sets the trace and the edge prompt together; no earlier turn's
                # edge prompt holds this request, so once it shows, the trace is this turn's.
                expect(edge_prompt).to_contain_text(requests[phrasing])
                shown = " ".join(trace.inner_text().split())  # the code view's lines, however it wraps them
                if f"Action: {tool} Action Input:" not in shown:
                    misses.append((requests[phrasing], shown[-400:]))
    finally:
        app.close()
    print(f"{10 - len(misses)}/10 requests called their tool; misses: {misses}")
    assert not misses, misses
