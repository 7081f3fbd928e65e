"""The chat UI end to end through `gradio_client`, against the app served on a free local port.

The app runs on the tiny random models with a real (fresh) generator: adapters are generated, cached
and merged for real. Only the edge model's text is scripted (`ScriptedEdge`), so a test knows which
tool the agent calls; each scripted answer names the adapter that was merged while it was decoded.
The helpers here are shared by the browser and load tests.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from agent import Agent, LoRAGenRuntime
from loragen_core import LoRAGenConfig, build_generator, load_causal_lm, save_generator
from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS, Completion, EdgeModel
from tools.registry import default_registry
from ui import DEFAULT_TOOLS, build_app

REPO = Path(__file__).resolve().parents[1]
OTHER_TOOLS = ["Detect Face", "Line Detection On Image"]  # ticked in another order than the registry's
MAX_IMAGE_BYTES = 300_000  # small, so an "oversized" test image is quick to make
# Gradio's queue calls pandas in a deprecated way; not this project's to fix.
GRADIO_WARNINGS = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
pytestmark = GRADIO_WARNINGS


class ScriptedEdge(EdgeModel):
    """The tiny edge model, decoding one real token, then replying from a script keyed on the request:
    "#edges" calls Edge Detection on the conversation's image, "#missing" calls it on a file that does
    not exist, "#slow" decodes until stopped, "#recall" repeats the previous request from the memory,
    anything else is answered at once. Replies name the adapter merged while decoding."""

    def complete(self, user_text, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, stop=None, on_text=None, grammar=None, should_stop=None,
                 answer_line_ends=True, tool_prior=None) -> Completion:
        with self.lock:
            real = super().complete(user_text, max_new_tokens=1)
            adapter = f"[adapter {self.active_adapter[:16] if self.active_adapter else 'none'}]"
        after = user_text.split("New input:", 1)[1]
        request = after.splitlines()[0]
        image = re.search(r"Provide an image named (\S+?)\. Description", user_text)
        observation = re.search(r"Observation: (.*)", after)
        if observation:
            text = f"Thought: Do I need to use a tool? No\nAI: Done {adapter}: {observation.group(1).strip()}\n"
        elif "#edges" in request and image:
            text = f"Thought: Do I need to use a tool? Yes\nAction: Edge Detection On Image\nAction Input: {image.group(1)}\n"
        elif "#slow" in request:  # decodes until stopped (at most 20 s), like a long generation
            deadline = time.monotonic() + 20
            while not (should_stop and should_stop()) and time.monotonic() < deadline:
                time.sleep(0.05)
            text = "Thought: Do I" if should_stop and should_stop() else "Thought: Do I need to use a tool? No\nAI: finished\n"
        elif "#recall" in request:  # answers from the conversation's memory
            earlier = re.findall(r"^Human: (.*)$", user_text.split("New input:", 1)[0], re.MULTILINE)
            text = f"Thought: Do I need to use a tool? No\nAI: You asked: {earlier[-1] if earlier else 'nothing'}\n"
        elif "#missing" in request:
            text = "Thought: Do I need to use a tool? Yes\nAction: Edge Detection On Image\nAction Input: image/missing.png\n"
        else:
            text = f"Thought: Do I need to use a tool? No\nAI: Hello {adapter}\n"
        if on_text:
            on_text(text)
        return Completion(text, real.prompt_tokens, len(text.split()), real.seconds)


def tiny_generator(tiny_dirs):
    config = LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, top_k=2, r=4,
        lora_alpha=8, router_hidden=16, cloud_lora_r=4, expert_b_init_std=0.02, seed=3,
    )
    return build_generator(config)


def scripted_runtime(tiny_dirs, cache_dir: Path) -> LoRAGenRuntime:
    edge = ScriptedEdge(load_causal_lm(str(tiny_dirs["edge"])))
    return LoRAGenRuntime(tiny_generator(tiny_dirs), edge, adapter_cache_dir=cache_dir, trained=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_scripted_app(tiny_dirs, root: Path):
    """(app, url, runtime): the UI on the scripted tiny runtime, served in this process."""
    runtime = scripted_runtime(tiny_dirs, root / "adapters")
    app = build_app(runtime, workspace_root=root / "workspaces", max_image_bytes=MAX_IMAGE_BYTES)
    return app, app.launch(port=free_port(), block=False), runtime


def expected_adapter(runtime: LoRAGenRuntime, tools) -> str:
    """The first 16 hex digits of the adapter a tool set must get, as the panel and answers show it:
    the adapter of its tools listed in the registry's order."""
    order = default_registry().names()
    return Agent(sorted(tools, key=order.index), runtime=runtime).prepare().adapter_hash[:16]


def square_png(path: Path, side: int = 64) -> Path:
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 255
    Image.fromarray(pixels).save(path)
    return path


def texts(chat: list[dict]) -> list[str]:
    """The text of each message of a chat as `gradio_client` returns it (a file: its path)."""
    return ["".join(part.get("text") or part.get("file") or "" for part in message["content"]) for message in chat]


def image_paths(chat: list[dict], role: str) -> list[str]:
    return [
        part["file"] for message in chat if message["role"] == role
        for part in message["content"] if part["type"] == "file"
    ]


@pytest.fixture(scope="module")
def served(tiny_dirs, tmp_path_factory):
    app, url, runtime = serve_scripted_app(tiny_dirs, tmp_path_factory.mktemp("ui_api"))
    yield url, runtime
    app.close()


def send(client: Client, text: str, files=(), tools=DEFAULT_TOOLS, compare=False) -> dict:
    """One turn through the UI's own event (as the browser sends it); its outputs by name."""
    outputs = client.predict(
        {"text": text, "files": [handle_file(str(f)) for f in files]}, list(tools), compare, [], api_name="/send"
    )
    names = ["box", "chat", "baseline_chat", "trace", "edge_prompt", "panel", "latency", "baseline_latency"]
    return dict(zip(names, outputs))


def test_chat_endpoint_returns_the_final_answer(served):
    url, runtime = served
    client = Client(url, verbose=False)
    assert client.predict("hello", api_name="/chat") == f"Hello [adapter {expected_adapter(runtime, DEFAULT_TOOLS)}]"
    # Another tool set answers with that tool set's adapter.
    assert client.predict("hello", OTHER_TOOLS, api_name="/chat") == f"Hello [adapter {expected_adapter(runtime, OTHER_TOOLS)}]"
    with pytest.raises(AppError, match="Please type a message"):
        client.predict("   ", api_name="/chat")
    with pytest.raises(AppError, match="No tool named 'Teleport'"):
        client.predict("hello", ["Teleport"], api_name="/chat")


def test_a_turn_with_an_image_runs_the_tool_and_shows_trace_panel_and_baseline(served, tmp_path):
    url, runtime = served
    out = send(Client(url, verbose=False), "#edges of this photo", files=[square_png(tmp_path / "square.png")], compare=True)
    adapter = expected_adapter(runtime, DEFAULT_TOOLS)

    assert len(image_paths(out["chat"], "user")) == 1  # the upload, shown in the chat
    [edges] = image_paths(out["chat"], "assistant")  # the tool's output, inline
    edge_map = np.asarray(Image.open(edges))
    assert edge_map.max() == 255 and edge_map.min() == 0  # Canny found the square's border
    answer = [t for t in texts(out["chat"]) if t.startswith("Done")]
    assert answer and re.fullmatch(rf"Done \[adapter {adapter}\]: Result saved as image/[a-z]{{8}}\.png", answer[0])

    assert "Action: Edge Detection On Image" in out["trace"] and "Observation: image/" in out["trace"]
    assert "# In-context baseline" in out["trace"]
    assert "Provide an image named image/" in out["edge_prompt"] and "TOOLS:" not in out["edge_prompt"]
    panel = out["panel"]
    assert "untrained" in panel and f"`{adapter}`" in panel
    tokens = re.search(r"(\d+) edge-prompt tokens vs (\d+) full-prompt tokens", panel)
    assert tokens and int(tokens.group(1)) < int(tokens.group(2))
    assert re.search(r"This turn: \d+\.\d\d s", panel) and re.search(r"In-context baseline \(untrained, full prompt\): \d+\.\d\d s", panel)
    # The baseline answered the same message on the base weights, and showed its own latency.
    assert any(t.startswith("Done [adapter none]") for t in texts(out["baseline_chat"]))
    assert out["baseline_latency"].startswith("**In-context baseline (untrained, full prompt)**")


def test_bad_input_gets_a_clear_message_and_the_app_keeps_running(served, tmp_path):
    url, runtime = served
    client = Client(url, verbose=False)
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all")
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    big = tmp_path / "big.png"
    Image.fromarray(noise).save(big)
    assert big.stat().st_size > MAX_IMAGE_BYTES

    chat = send(client, "", files=[fake])["chat"]
    assert texts(chat)[-1] == "⚠️ Upload refused: 'notes.png' is not a readable image (PNG, JPEG, BMP, WEBP, TIFF or GIF)."
    chat = send(client, "", files=[big])["chat"]
    assert re.fullmatch(r"⚠️ Upload refused: 'big\.png' is [\d,]+ bytes; images may be at most 300,000 bytes\.", texts(chat)[-1])
    assert texts(send(client, "  ")["chat"])[-1] == "⚠️ Please type a message."
    assert texts(send(client, "hi", tools=[])["chat"])[-1].startswith("⚠️ Choose at least one tool")

    asked = texts(send(client, "#missing file")["chat"])[-1]  # no image yet: nothing to run the tool on
    assert asked == "Edge Detection On Image needs an image, and this conversation has none yet. Please upload one."
    send(client, "", files=[square_png(tmp_path / "real.png")])
    failed = texts(send(client, "#missing file")["chat"])[-1]
    assert failed.startswith("⚠️ Tool **Edge Detection On Image** failed: There is no file 'image/missing.png'")
    # The model's "Done ..." after the failure is not shown as a success: the answer says what failed.
    assert "Sorry, Edge Detection On Image did not work: error: There is no file" in failed and "Done" not in failed

    assert texts(send(client, "still there?")["chat"])[-1].startswith("Hello [adapter")
    assert client.predict("and the API?", api_name="/chat").startswith("Hello")


def test_sessions_keep_their_own_tools_image_and_history(served, tmp_path):
    url, runtime = served
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    panel = first.predict(OTHER_TOOLS, [], api_name="/set_tools")  # choosing tools prepares their adapter
    assert f"`{expected_adapter(runtime, OTHER_TOOLS)}`" in panel and "Tools (2): Line Detection On Image, Detect Face" in panel
    assert expected_adapter(runtime, OTHER_TOOLS) != expected_adapter(runtime, DEFAULT_TOOLS)

    send(first, "", files=[square_png(tmp_path / "a.png")], tools=OTHER_TOOLS)
    out_second = send(second, "#edges without an image")
    # The second session has no image: no tool call, and its history holds only its own turn.
    assert texts(out_second["chat"]) == ["#edges without an image", f"Hello [adapter {expected_adapter(runtime, DEFAULT_TOOLS)}]"]
    out_first = send(first, "#edges now", tools=OTHER_TOOLS + ["Edge Detection On Image"])
    assert "Tool set changed to: Edge Detection On Image, Line Detection On Image, Detect Face." in texts(out_first["chat"])[-4]
    adapter = expected_adapter(runtime, OTHER_TOOLS + ["Edge Detection On Image"])
    assert re.fullmatch(rf"Done \[adapter {adapter}\]: Result saved as image/[a-z]{{8}}\.png", texts(out_first["chat"])[-2])


def test_python_m_ui_serves_the_chat_api(tiny_dirs, tmp_path):
    """The command itself, on a tiny generator checkpoint; the tiny model really decodes here."""
    checkpoint = save_generator(tiny_generator(tiny_dirs), tmp_path / "generator")
    port = free_port()
    env = {**os.environ, "LORAGEN_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(
        [sys.executable, "-m", "ui", "--port", str(port), "--generator", str(checkpoint), "--max-new-tokens", "8"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        client = connect(f"http://127.0.0.1:{port}/", server, timeout=120)
        # Random weights rarely write the GPT4Tools format: either an answer or the agent's reason.
        try:
            answer = client.predict("Describe the image.", api_name="/chat")
            assert isinstance(answer, str) and answer
        except AppError as refused:
            assert "The agent could not answer: The model's reply did not follow the tool-use format" in str(refused)
        with pytest.raises(AppError, match="Please type a message"):
            client.predict("", api_name="/chat")
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    assert "Running on local URL" in log and "Traceback" not in log


def connect(url: str, server: subprocess.Popen, timeout: float) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}:\n{server.stdout.read()}")
        try:
            return Client(url, verbose=False)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.real_model
def test_real_default_model_answers_in_the_ui(tmp_path):
    """Smoke test on the shipped generator and SmolLM2: a turn completes and the panel is filled in."""
    runtime = LoRAGenRuntime.default()
    app = build_app(runtime, workspace_root=tmp_path / "workspaces", max_new_tokens=24, max_steps=1)
    url = app.launch(port=free_port(), block=False)
    try:
        out = send(Client(url, verbose=False), "What is in this image?", files=[square_png(tmp_path / "sq.png")])
    finally:
        app.close()
    assert out["chat"][-1]["role"] == "assistant" and not texts(out["chat"])[-1].startswith("⚠️ Something went wrong")
    assert ("**trained**" in out["panel"]) == runtime.trained
    tokens = re.search(r"(\d+) edge-prompt tokens vs (\d+) full-prompt tokens \((\d+\.\d)x shorter\)", out["panel"])
    assert tokens and float(tokens.group(3)) > 3
