"""The agent: turn parsing, the GPT4Tools loop, the shared runtime, and the edge model's stop strings.

The loop's logic (retries, unknown tools, step limit, prompt layout) is driven by scripted replies,
since tiny random models only write gibberish; the runtime, the edge model and one loop per mode run
on the tiny models for real.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from langchain_core.tools import tool as langchain_tool

from agent import Agent, AgentResult, LoRAGenRuntime, Step
from agent.core import DEFAULT_CAPTION
from agent.parsing import format_hint, observation_for_model, parse_turn, tool_step_text
from agent.runtime import RuntimeCompletion
from loragen_core import LoRAGenConfig, build_generator, load_causal_lm
from loragen_core.edge_runtime import EdgeModel, cut_at_stop
from tools import build_prompt, image_turn, split_prompt
from tools.gpt4tools_prompt import system_prompt_for
from tools.registry import Tool, default_registry
from tools.workspace import Workspace

EDGE, FACE = "Edge Detection On Image", "Detect Face"
TOOL_CALL = "Thought: Do I need to use a tool? Yes\nAction: {name}\nAction Input: {arg}\n"
ANSWER = "Thought: Do I need to use a tool? No\nAI: {text}\n"


# ---- helpers shared with the concurrency and LangChain tests ------------------------------------


class ScriptedRuntime:
    """Stands in for LoRAGenRuntime where the loop logic itself is under test: each call returns the
    next scripted reply (a string, or a function of the prompt), cut at stop strings like EdgeModel."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls: list[dict] = []

    def complete(self, prompt, system_prompt=None, max_new_tokens=128, stop=None, on_text=None, grammar=None, should_stop=None,
                 answer_line_ends=True, adapter=None, tool_prior=None):
        self.calls.append({"prompt": prompt, "system_prompt": system_prompt, "stop": list(stop or []), "grammar": grammar,
                           "answer_line_ends": answer_line_ends, "tool_prior": tool_prior})
        reply = self.replies.pop(0)
        text = cut_at_stop(reply(prompt) if callable(reply) else reply, tuple(stop or ()))
        for start in range(0, len(text), 3):  # streamed in small pieces, as decoding would
            if on_text:
                on_text(text[start : start + 3])
        adapted = system_prompt is not None
        return RuntimeCompletion(
            text, len(prompt.split()), len(text.split()), 0.01,
            "scripted" if adapted else None, False if adapted else None, 0.5 if adapted else None, 0.1 if adapted else None,
        )

    def count_prompt_tokens(self, prompt):
        return len(prompt.split())

    def count_tokens(self, text):
        return len(text.split())


def calibrated_tiny_generator(tiny_dirs, system_prompts: list[str]):
    """A tiny generator whose adapters depend clearly on the system prompt.

    A random cloud LM's meta-token states barely differ between prompts, and BatchNorm's initial
    running statistics (mean 0, variance 1) then give every prompt the same experts. One train-mode
    pass over the prompts sets the running statistics as training would, so each prompt gets its own
    experts; the non-zero expert init makes the adapters change the edge model's output.
    """
    config = LoRAGenConfig(
        cloud_model=str(tiny_dirs["cloud"]), edge_model=str(tiny_dirs["edge"]), n_experts=4, top_k=2, r=4,
        lora_alpha=8, router_hidden=16, cloud_lora_r=4, expert_b_init_std=0.5, seed=3,
    )
    generator = build_generator(config)
    for router in generator.routers:
        router.norm.momentum = 1.0
    generator.train()
    with torch.no_grad():
        generator(system_prompts)
    return generator.eval()


def system_prompt_of(names: list[str]) -> str:
    return system_prompt_for(default_registry().subset(names).descriptions())


def workspace_with_image(root: Path) -> tuple[Workspace, str]:
    image = np.zeros((48, 64, 3), np.uint8)
    cv2.rectangle(image, (16, 12), (48, 36), (255, 255, 255), -1)
    source = root / "upload.png"
    cv2.imwrite(str(source), image)
    workspace = Workspace(root / "workspace")
    return workspace, workspace.import_file(source)


@pytest.fixture
def workspace(tmp_path):
    return workspace_with_image(tmp_path)


# ---- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, action, action_input, answer",
    [
        (TOOL_CALL.format(name=EDGE, arg="image/abc.png"), "tool", EDGE, "image/abc.png", None),
        (TOOL_CALL.format(name=EDGE, arg="image/abc.png") + "Observation: invented\nAI: done\n", "tool", EDGE, "image/abc.png", None),
        (ANSWER.format(text="The sky is blue."), "answer", None, None, "The sky is blue."),
        ("AI: just the answer", "answer", None, None, "just the answer"),
        ("Thought: Do I need to use a tool? Yes\nAction: Detect Face\n", "malformed", None, None, None),
        ("Thought: Do I need to use a tool? No\nThe answer is 4.", "malformed", None, None, None),
        ("", "malformed", None, None, None),
    ],
)
def test_parse_turn(text, kind, action, action_input, answer):
    turn = parse_turn(text)
    assert (turn.kind, turn.action, turn.action_input, turn.answer) == (kind, action, action_input, answer)
    if kind == "malformed":
        assert turn.problem


@pytest.mark.parametrize(
    "observation, shown",
    [
        ("image/abcdefgh.png", "Result saved as image/abcdefgh.png"),
        (" image/abcdefgh.png\n", "Result saved as image/abcdefgh.png"),
        ("image/abcdefgh.png (3 regions)", "Result saved as image/abcdefgh.png (3 regions)"),
        ("Result saved as image/abcdefgh.png", "Result saved as image/abcdefgh.png"),
        ("image/abcdefgh.pngs", "image/abcdefgh.pngs"),
        ("2 faces: (3, 4, 10, 10), (20, 4, 10, 10)", "2 faces: (3, 4, 10, 10), (20, 4, 10, 10)"),
        ("error: There is no file 'x.png' in the workspace", "error: There is no file 'x.png' in the workspace"),
    ],
)
def test_an_image_result_is_shown_in_the_training_phrasing(observation, shown):
    assert observation_for_model(observation) == shown
    assert tool_step_text(EDGE, "a.png", observation).endswith(f"Observation: {shown}\n")


def test_trace_format_matches_the_training_context_samples():
    """The agent must show the model its steps exactly as the context samples it was trained on."""
    from eval_gpt4tools.builder import SampleBuilder

    builder = SampleBuilder(seed=5, answer_questions=lambda questions: ["ok"] * len(questions))
    checked = 0
    for _ in range(20):
        sample = builder.context_sample()
        parts = split_prompt(sample["instruction"])
        steps = sample["_steps"]
        prefixes = ["".join(tool_step_text(*step) for step in steps[:k]) for k in range(1, len(steps) + 1)]
        assert parts.trace in prefixes
        checked += 1
    assert checked == 20


# ---- the loop, on scripted replies --------------------------------------------------------------


def test_tool_call_then_answer(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([
        TOOL_CALL.format(name=EDGE, arg=image) + "Observation: an invented result\n",
        lambda prompt: ANSWER.format(text="Edges: " + prompt.rsplit("Observation: ", 1)[1].strip()),
    ])
    agent = Agent([EDGE, FACE], runtime=runtime, workspace=workspace)
    result = agent.run("Detect the edges of this image.", image=image)

    assert result.error is None and [s.kind for s in result.steps] == ["tool", "answer"]
    produced = result.steps[0].observation
    assert produced != image and workspace.resolve(produced).is_file()
    assert result.images == [produced] and result.answer == f"Edges: Result saved as {produced}"
    assert result.steps[0].raw == TOOL_CALL.format(name=EDGE, arg=image)  # cut before "Observation:"

    full = build_prompt([(t.name, t.description) for t in agent.tools], "Detect the edges of this image.", image_turn(image, DEFAULT_CAPTION))
    first, second = runtime.calls
    assert first["system_prompt"] == agent.system_prompt == split_prompt(full).system_prompt
    assert first["prompt"] == split_prompt(full).edge_prompt == result.edge_prompt
    assert second["prompt"] == split_prompt(full + tool_step_text(EDGE, image, produced)).edge_prompt
    assert second["prompt"].endswith(f"Observation: Result saved as {produced}\n")  # the training phrasing
    assert "Observation:" in first["stop"]
    assert result.adapter_hash == "scripted" and result.full_prompt_tokens > result.prompt_tokens
    assert result.trace_text() == (
        f"Thought: Do I need to use a tool? Yes\nAction: {EDGE}\nAction Input: {image}\nObservation: {produced}\n"
        f"Thought: Do I need to use a tool? No\nAI: Edges: Result saved as {produced}"
    )


def test_icl_mode_runs_the_same_loop_on_the_full_prompt(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([TOOL_CALL.format(name=FACE, arg=image), ANSWER.format(text="No faces.")])
    agent = Agent([EDGE, FACE], runtime=runtime, workspace=workspace)
    result = agent.run("Find the faces.", image=image, mode="icl")

    full = build_prompt([(t.name, t.description) for t in agent.tools], "Find the faces.", image_turn(image, DEFAULT_CAPTION))
    assert [c["system_prompt"] for c in runtime.calls] == [None, None]
    assert runtime.calls[0]["prompt"] == full
    assert runtime.calls[1]["prompt"] == full + tool_step_text(FACE, image, result.steps[0].observation)
    assert result.mode == "icl" and result.answer == "No faces."
    assert result.adapter_hash is None and result.prompt_tokens == result.full_prompt_tokens


def test_malformed_reply_gets_one_corrective_retry(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime(["I would look at the edges.", TOOL_CALL.format(name=EDGE, arg=image), ANSWER.format(text="Done.")])
    result = Agent([EDGE, FACE], runtime=runtime, workspace=workspace).run("Edges please.", image=image)

    # "Done." names no file, though the tool wrote one: the answer reports what the tool returned.
    assert result.error is None and result.answer == f"Result saved as {result.steps[1].observation}"
    assert [s.kind for s in result.steps] == ["malformed", "tool", "answer"]
    hinted, after = runtime.calls[1]["prompt"], runtime.calls[2]["prompt"]
    assert hinted == runtime.calls[0]["prompt"] + "\n" + format_hint([EDGE, FACE])
    assert "did not follow the format" not in after  # the hint is for the retry only


def test_second_malformed_reply_fails_clearly(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime(["Nice picture.", "Thought: Do I need to use a tool? Yes\nAction: Detect Face\n"])
    result = Agent([EDGE, FACE], runtime=runtime, workspace=workspace).run("Faces?", image=image)

    assert result.answer == "" and result.model_calls == 2
    assert "did not follow the tool-use format twice" in result.error and "Action Input" in result.error
    assert result.trace_text().endswith("Error: " + result.error)


def test_unknown_tool_is_answered_with_the_valid_names_and_counts_as_a_step(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([
        TOOL_CALL.format(name="Edge Finder", arg=image),
        TOOL_CALL.format(name="edge detection on image", arg=image),  # case differs: still runs
        ANSWER.format(text="ok"),
    ])
    result = Agent([EDGE, FACE], runtime=runtime, workspace=workspace, max_steps=2).run("Edges.", image=image)

    unknown, ran = result.steps[0].observation, result.steps[1].observation
    assert result.error is None and result.answer == f"Result saved as {ran}"
    assert unknown == f"error: there is no tool named 'Edge Finder'. The tools are: {EDGE}, {FACE}."
    assert "Observation: " + unknown in runtime.calls[1]["prompt"]
    assert workspace.resolve(ran).is_file() and result.images == [ran]


def test_step_limit_ends_the_run_without_running_another_tool(workspace):
    workspace, image = workspace
    calls = []
    counted = Tool("Count", "useful to count. The input to this tool should be a string.", lambda text, ws: calls.append(text) or f"{len(calls)}")
    runtime = ScriptedRuntime([TOOL_CALL.format(name="Count", arg=f"x{i}") for i in range(3)])  # never the same call twice
    result = Agent([counted], runtime=runtime, workspace=workspace, max_steps=2).run("Count forever.")

    assert calls == ["x0", "x1"] and result.model_calls == 3
    assert "2 tool calls" in result.error and result.answer == ""
    assert [s.observation for s in result.steps] == ["1", "2", None]


def test_tools_from_objects_functions_and_langchain(workspace):
    workspace, _ = workspace

    @langchain_tool("Shout")
    def shout(text: str) -> str:
        """useful when you want to shout a text. The input to this tool should be a string."""
        return text.upper()

    def whisper(text: str) -> str:
        return text.lower()

    whisper.name, whisper.description = "Whisper", "useful when you want to whisper. The input should be a string."
    runtime = ScriptedRuntime([
        TOOL_CALL.format(name="Shout", arg="hello"), TOOL_CALL.format(name="Whisper", arg="HUSH"), ANSWER.format(text="x"),
    ])
    seen = []
    agent = Agent(["Detect Face", shout, whisper], runtime=runtime, workspace=workspace)
    result = agent.run("Be loud, then quiet.", on_step=seen.append)

    assert agent.tool_names == ["Detect Face", "Shout", "Whisper"]
    assert "> Shout: useful when you want to shout a text." in agent.system_prompt
    assert [s.observation for s in result.steps[:2]] == ["HELLO", "hush"]
    assert seen == result.steps and all(isinstance(s, Step) for s in seen)


def test_on_text_streams_every_model_call(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([TOOL_CALL.format(name=EDGE, arg=image), ANSWER.format(text="fine")])
    pieces = []
    result = Agent([EDGE], runtime=runtime, workspace=workspace).run("Edges.", image=image, on_text=pieces.append)
    assert "".join(pieces) == "".join(step.raw for step in result.steps)


def test_bad_arguments_are_refused(workspace):
    workspace, _ = workspace
    with pytest.raises(ValueError, match="Unknown mode"):
        Agent([EDGE], runtime=ScriptedRuntime([]), workspace=workspace, mode="few-shot")
    with pytest.raises(KeyError, match="No tool named"):
        Agent(["Edge Detector"], runtime=ScriptedRuntime([]), workspace=workspace)
    with pytest.raises(ValueError, match="max_steps"):
        Agent([EDGE], runtime=ScriptedRuntime([]), workspace=workspace, max_steps=0)


# ---- the real runtime, on tiny models -----------------------------------------------------------

# ---- the loop's honesty: grammar, memory, failures, missing images, grounded answers, bounds ------


def test_each_call_carries_the_tool_sets_grammar_with_the_known_images(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([TOOL_CALL.format(name=EDGE, arg=image), ANSWER.format(text="x")])
    Agent([EDGE, "Crop the Given Object"], runtime=runtime, workspace=workspace).run("Edges.", image=image)
    first, second = (call["grammar"] for call in runtime.calls)
    assert f'"{EDGE}"' in first and '"Crop the Given Object"' in first and '"Detect Face"' not in first
    assert f'"{image}"' in first  # Edge Detection takes only an image: one the conversation has
    produced = runtime.calls[1]["prompt"].rsplit("Result saved as ", 1)[1].strip()
    assert f'"{produced}"' in second  # the image the tool wrote is now known too
    unconstrained = ScriptedRuntime([ANSWER.format(text="x")])
    Agent([EDGE], runtime=unconstrained, workspace=workspace, constrained=False).run("Hi")
    assert unconstrained.calls[0]["grammar"] is None


def test_history_reaches_the_edge_prompt_newest_first_within_the_budget(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([ANSWER.format(text="You asked for the edges.")])
    history = [("Hello there", "Hi."), ("Detect the edges of this image.", "Result saved as image/abc.png")]
    agent = Agent([EDGE], runtime=runtime, workspace=workspace, history_tokens=12)
    result = agent.run("What did I ask you before?", image=image, history=history)
    prompt = runtime.calls[0]["prompt"]
    assert "Human: Detect the edges of this image.\nAI: Result saved as image/abc.png" in prompt
    assert "Hello there" not in prompt  # the oldest turn did not fit in 12 tokens
    assert prompt.index("Received.") < prompt.index("Detect the edges") < prompt.index("New input: What did I ask")
    assert result.answer == "You asked for the edges."


def test_a_failed_tool_gets_one_retry_that_sees_the_error_then_an_honest_answer(workspace):
    workspace, image = workspace
    bad = TOOL_CALL.format(name=EDGE, arg="image/missing.png")
    runtime = ScriptedRuntime([bad, bad, ANSWER.format(text="Result saved as image/zzz.png")])
    result = Agent([EDGE], runtime=runtime, workspace=workspace, constrained=False).run("Edges.", image=image)
    assert result.model_calls == 2, "no third call after the retry failed as well"
    assert "error" in runtime.calls[1]["prompt"].rsplit("Observation:", 1)[1]  # the retry saw the error
    assert result.answer.startswith("Sorry, I could not do that: Edge Detection On Image failed twice")
    assert "zzz" not in result.answer and result.images == []


def test_the_same_call_twice_is_not_run_again_and_its_result_is_the_answer(workspace):
    workspace, image = workspace
    call = TOOL_CALL.format(name=EDGE, arg=image)
    runtime = ScriptedRuntime([call, call, ANSWER.format(text="never asked for")])
    result = Agent([EDGE, FACE], runtime=runtime, workspace=workspace).run("Detect the edges of this image.", image=image)
    assert result.model_calls == 2 and result.error is None
    assert [s.kind for s in result.steps] == ["tool", "tool"] and result.steps[1].observation is None  # not run
    produced = result.steps[0].observation
    assert result.images == [produced] and result.answer == f"Result saved as {produced}"


def test_an_image_tool_without_any_image_asks_for_one_and_runs_nothing(workspace):
    workspace, _ = workspace
    runtime = ScriptedRuntime([TOOL_CALL.format(name=FACE, arg="image/invented.png")])
    result = Agent([EDGE, FACE], runtime=runtime, workspace=workspace).run("Is there a face in this picture?")
    assert result.model_calls == 1 and result.steps[0].observation is None
    assert "needs an image" in result.answer and "upload" in result.answer


@pytest.mark.parametrize("answer", ["[output from the tool]", "Result saved as image/notthere.png", "Done."])
def test_an_answer_not_true_to_the_observations_is_replaced_by_them(workspace, answer):
    workspace, image = workspace
    runtime = ScriptedRuntime([TOOL_CALL.format(name=EDGE, arg=image), ANSWER.format(text=answer)])
    result = Agent([EDGE], runtime=runtime, workspace=workspace).run("Edges.", image=image)
    produced = result.steps[0].observation
    assert workspace.resolve(produced).is_file()
    assert result.answer == f"Result saved as {produced}"


@pytest.mark.parametrize(
    "answer, kept",
    [("The image is a selfie taken by a user.", False),  # measured: after "No face found"
     ("No face was found in the image.", True), ("There are no faces.", True)],
)
def test_after_a_text_result_an_answer_sharing_nothing_with_it_is_replaced(answer, kept):
    from agent.parsing import grounded_answer

    observation = "No face found (detector: OpenCV's LBP frontal-face cascade; it finds roughly frontal faces)"
    grounded = grounded_answer(answer, FACE, observation, lambda path: True, [])
    assert grounded == (answer if kept else observation)


def test_a_true_answer_is_kept(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([TOOL_CALL.format(name=EDGE, arg=image), lambda prompt: ANSWER.format(
        text="Here are the edges: " + prompt.rsplit("Result saved as ", 1)[1].strip())])
    result = Agent([EDGE], runtime=runtime, workspace=workspace).run("Edges.", image=image)
    assert result.answer == "Here are the edges: " + result.steps[0].observation


def test_stop_and_the_time_budget_end_a_run(workspace):
    workspace, image = workspace
    stopped = Agent([EDGE], runtime=ScriptedRuntime([]), workspace=workspace).run("Edges.", image=image, should_stop=lambda: True)
    assert stopped.error == "Stopped." and stopped.model_calls == 0 and stopped.answer == ""
    clock = iter([False, True, True, True])
    runtime = ScriptedRuntime([TOOL_CALL.format(name=EDGE, arg=image)])
    slow = Agent([EDGE], runtime=runtime, workspace=workspace).run("Edges.", image=image, should_stop=lambda: next(clock))
    assert slow.model_calls == 1 and slow.error == "Stopped."
    with pytest.raises(ValueError, match="max_seconds"):
        Agent([EDGE], runtime=runtime, workspace=workspace, max_seconds=0)


TOOLS_A, TOOLS_B = [EDGE, FACE], ["Segment the Image", "Line Detection On Image"]


@pytest.fixture(scope="module")
def tiny_runtime(tiny_dirs, tmp_path_factory):
    generator = calibrated_tiny_generator(tiny_dirs, [system_prompt_of(TOOLS_A), system_prompt_of(TOOLS_B)])
    return LoRAGenRuntime(generator, adapter_cache_dir=tmp_path_factory.mktemp("adapters"), trained=False)


def test_runtime_generates_once_and_merges_only_on_change(tiny_runtime):
    runtime, prompt = tiny_runtime, "New input: Detect the edges of this image."
    system_a, system_b = system_prompt_of(TOOLS_A), system_prompt_of(TOOLS_B)
    generations, merges = runtime.adapter_generations, runtime.merges

    first = runtime.complete(prompt, system_a, max_new_tokens=8)
    assert first.adapter_cache_hit is False and first.merge_seconds > 0
    assert runtime.edge.active_adapter == first.adapter_hash
    again = runtime.complete(prompt, system_a, max_new_tokens=8)
    assert again.adapter_cache_hit is True and again.merge_seconds == 0.0 and again.text == first.text
    other = runtime.complete(prompt, system_b, max_new_tokens=8)
    assert other.adapter_hash != first.adapter_hash and other.text != first.text
    base = runtime.complete(prompt, None, max_new_tokens=8)
    assert base.adapter_hash is None and runtime.edge.active_adapter is None
    back = runtime.complete(prompt, system_a, max_new_tokens=8)
    assert back.text == first.text and back.adapter_cache_hit is True
    assert runtime.adapter_generations == generations + 2 and runtime.merges == merges + 3


def test_full_prompt_lora_mode_merges_the_shipped_adapter_over_the_full_prompt(tiny_runtime, workspace, three_adapters,
                                                                               tiny_dirs, tmp_path, monkeypatch):
    """The trained baseline the UI compares with: the shipped peft LoRA merged, the whole prompt read."""
    import loragen_core.adapter_service as adapter_service
    from agent.modes import BASELINE_LABELS, FULL_PROMPT_LORA, ICL, baseline_mode
    from loragen_core import CheckpointError, GeneratedLoRA, load_full_prompt_lora
    from loragen_core.edge_runtime import EdgeModel

    workspace, image = workspace
    shipped = tmp_path / "full_prompt_lora"
    monkeypatch.setattr(adapter_service, "FULL_PROMPT_LORA_CHECKPOINT", shipped)
    runtime = LoRAGenRuntime(tiny_runtime.generator, tiny_runtime.edge, adapter_cache_dir=tmp_path / "adapters", trained=False)
    with pytest.raises(CheckpointError, match="lacks the shipped full-prompt LoRA"):
        load_full_prompt_lora()
    assert baseline_mode(runtime) == ICL  # a checkout without it still compares with something

    three_adapters.row(0).save_pretrained(shipped, tiny_dirs["edge"])
    expected = GeneratedLoRA.from_pretrained(shipped).content_hash()
    runtime = LoRAGenRuntime(tiny_runtime.generator, tiny_runtime.edge, adapter_cache_dir=tmp_path / "adapters", trained=False)
    assert baseline_mode(runtime) == FULL_PROMPT_LORA and "trained" in BASELINE_LABELS[FULL_PROMPT_LORA]
    agent = Agent(TOOLS_A, runtime=runtime, workspace=workspace, max_new_tokens=12, constrained=False)
    trained = agent.run("Detect the edges of this image.", image=image, mode=FULL_PROMPT_LORA)
    icl = agent.run("Detect the edges of this image.", image=image, mode=ICL)
    assert trained.adapter_hash == expected and runtime.edge.active_adapter in (expected, None)
    assert trained.prompt_tokens == trained.full_prompt_tokens == icl.prompt_tokens  # the same full prompt
    assert "TOOLS:" in trained.edge_prompt
    assert trained.steps[0].raw != icl.steps[0].raw, "the merged LoRA must change what the edge model writes"
    with pytest.raises(ValueError, match="not both"):
        runtime.complete("x", agent.system_prompt, adapter=runtime.full_prompt_lora())

    other_model = EdgeModel(load_causal_lm(str(tiny_dirs["cloud"])))  # another architecture: the adapter does not fit
    assert not LoRAGenRuntime(tiny_runtime.generator, other_model, adapter_cache_dir=tmp_path / "other",
                              trained=False).has_full_prompt_lora()


def test_agent_on_tiny_models_in_both_modes(tiny_runtime, workspace):
    workspace, image = workspace
    agent = Agent(TOOLS_A, runtime=tiny_runtime, workspace=workspace, max_new_tokens=12)
    loragen = agent.run("Detect the edges of this image.", image=image)
    assert isinstance(loragen, AgentResult) and loragen.mode == "loragen" and loragen.model_calls >= 1
    assert loragen.adapter_hash is not None and loragen.adapter_seconds is not None
    assert loragen.prompt_tokens < loragen.full_prompt_tokens
    assert loragen.prompt_tokens == tiny_runtime.count_prompt_tokens(loragen.edge_prompt)

    icl = agent.run("Detect the edges of this image.", image=image, mode="icl")
    assert icl.adapter_hash is None and icl.prompt_tokens == icl.full_prompt_tokens == loragen.full_prompt_tokens
    assert tiny_runtime.edge.active_adapter is None
    assert agent.run("Detect the edges of this image.", image=image).adapter_cache_hit is True


# ---- EdgeModel: stop strings and streaming (additive; the default decoding rule is unchanged) --


def test_edge_model_stop_strings_and_streaming(tiny_dirs):
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])))
    prompt = "Human: Provide an image named cache/xyzxyzxy.png."
    plain = edge.complete(prompt, max_new_tokens=24)
    reference = edge.model.generate(
        edge.chat_input_ids(prompt), max_new_tokens=24, do_sample=False, pad_token_id=edge.tokenizer.eos_token_id
    )
    assert plain.text == edge.tokenizer.decode(reference[0, plain.prompt_tokens :], skip_special_tokens=True)

    # A stop string first seen mid-text, without U+FFFD (a half-decoded character may show it early).
    stop = next(
        s for i in range(4, len(plain.text) - 2)
        if "\ufffd" not in (s := plain.text[i : i + 2]) and plain.text.find(s) == i
    )
    pieces: list[str] = []
    stopped = edge.complete(prompt, max_new_tokens=24, stop=[stop], on_text=pieces.append)
    assert stopped.text == plain.text[: plain.text.find(stop)] and stopped.new_tokens < plain.new_tokens
    assert "".join(pieces) == stopped.text

    streamed: list[str] = []
    assert edge.complete(prompt, max_new_tokens=24, on_text=streamed.append).text == plain.text
    assert "".join(streamed) == plain.text and len(streamed) > 1


def test_a_random_tiny_model_under_the_grammar_calls_only_real_tools(tiny_runtime, workspace):
    workspace, image = workspace
    agent = Agent(TOOLS_A, runtime=tiny_runtime, workspace=workspace, max_new_tokens=48, max_steps=2)
    result = agent.run("Detect the edges of this image.", image=image)
    assert all(step.kind != "malformed" for step in result.steps), result.trace_text()
    assert all(step.action in TOOLS_A for step in result.steps if step.kind == "tool")


def test_loragen_names_mode_adds_only_the_tool_names_line(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([ANSWER.format(text="x"), ANSWER.format(text="x")])
    agent = Agent([EDGE, FACE], runtime=runtime, workspace=workspace)
    agent.run("Edges.", image=image, mode="loragen-names")
    agent.run("Edges.", image=image)
    names, plain = runtime.calls[0]["prompt"], runtime.calls[1]["prompt"]
    assert names == f"Tools: {EDGE}, {FACE}\n" + plain
    assert runtime.calls[0]["system_prompt"] == runtime.calls[1]["system_prompt"] == agent.system_prompt
    with pytest.raises(ValueError, match="choose one of loragen, loragen-names, icl"):
        agent.run("Edges.", mode="lora")


def test_a_placeholder_answer_without_any_tool_is_an_error_not_an_answer(workspace):
    workspace, image = workspace
    runtime = ScriptedRuntime([ANSWER.format(text="[output from a tool]")])
    result = Agent([EDGE], runtime=runtime, workspace=workspace).run("Segment this image.", image=image)
    assert result.answer == "" and "placeholder" in result.error and "[output from a tool]" in result.error
