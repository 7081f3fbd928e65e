"""The tool prior: the shipped sentence embedder ranks a tool set's definitions against a request, and
the logits processor turns that into the constrained choice of `Action:` (product of experts), also
row by row in a batch."""

from __future__ import annotations

import math

import pytest
import torch

from agent.parsing import parse_turn
from loragen_core.edge_runtime import EdgeModel
from loragen_core.tool_prior import ToolPrior, default_retriever, tool_document
from tools.gpt4tools_grammar import trace_grammar
from tools.registry import default_registry

EDGE, FACE, SEGMENT = "Edge Detection On Image", "Detect Face", "Segment the Image"
PROMPT = "Please look at image/abc.png."


def test_mass_counts_the_names_a_prefix_can_still_become():
    prior = ToolPrior(("Detect Face", "Detection", "Segment the Image"), (0.5, 0.3, 0.2))
    assert prior.mass("") == pytest.approx(1.0)
    assert prior.mass(" Detect") == pytest.approx(0.8)
    assert prior.mass(" Detection") == pytest.approx(0.3)
    assert prior.mass(" Detect Face\nAction") == pytest.approx(0.5)  # a token may run past the name
    assert prior.mass(" Segmentation") is None
    hard = ToolPrior(prior.names, prior.probs, weight=float("inf"))  # the prior alone decides
    assert hard.mass(" Detect") == 1.0 and hard.mass(" Detection") == 0.0 and hard.mass(" Segment") == 0.0
    assert prior.best == "Detect Face"
    with pytest.raises(ValueError, match="2 names but 1"):
        ToolPrior(("a", "b"), (1.0,))
    with pytest.raises(ValueError, match="weight must be 0 or more"):
        ToolPrior(("a",), (1.0,), weight=-1.0)


def test_the_input_sentence_every_tool_shares_is_not_embedded():
    assert tool_document("Detect Face", "useful to find faces. The input to this tool should be a string, representing "
                         "the image_path") == "Detect Face: useful to find faces."


def _action(edge: EdgeModel, prior: ToolPrior | None, grammar: str) -> str:
    turn = parse_turn(edge.complete(PROMPT, max_new_tokens=40, grammar=grammar, tool_prior=prior).text)
    return turn.action if turn.kind == "tool" else f"<{turn.kind}>"


def test_a_confident_prior_decides_the_tool_and_a_flat_one_changes_nothing(edge):
    tools = [EDGE, FACE, SEGMENT]
    grammar = trace_grammar(tools)
    free_choice = _action(edge, None, grammar)
    assert free_choice in tools, "the seeded random model calls a tool here; the test needs that"
    flat = ToolPrior(tuple(tools), (1 / 3,) * 3)
    assert _action(edge, flat, grammar) == free_choice
    for wanted in tools:
        sharp = ToolPrior(tuple(tools), tuple(0.998 if t == wanted else 0.001 for t in tools))
        assert _action(edge, sharp, grammar) == wanted
        # weight 0 leaves the model alone; weight inf lets a barely preferred tool decide.
        assert _action(edge, ToolPrior(sharp.names, sharp.probs, weight=0.0), grammar) == free_choice
        slight = ToolPrior(tuple(tools), tuple(0.34 if t == wanted else 0.33 for t in tools), weight=float("inf"))
        assert _action(edge, slight, grammar) == wanted


def test_batch_rows_follow_their_own_priors_as_each_does_alone(edge):
    tools = [EDGE, FACE, SEGMENT]
    grammar = trace_grammar(tools)
    priors = [ToolPrior(tuple(tools), tuple(0.998 if t == wanted else 0.001 for t in tools)) for wanted in (FACE, SEGMENT)]
    priors.append(None)
    batched = edge.complete_batch([PROMPT] * 3, max_new_tokens=40, grammars=[grammar] * 3, tool_priors=priors)
    alone = [edge.complete(PROMPT, max_new_tokens=40, grammar=grammar, tool_prior=p) for p in priors]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [parse_turn(c.text).action for c in batched[:2]] == [FACE, SEGMENT]


def test_a_prior_needs_a_grammar(edge):
    prior = ToolPrior((EDGE,), (1.0,))
    with pytest.raises(ValueError, match="give the row a grammar"):
        edge.complete(PROMPT, max_new_tokens=5, tool_prior=prior)
    with pytest.raises(ValueError, match="give the rows grammars"):
        edge.complete_batch([PROMPT], max_new_tokens=5, tool_priors=[prior])


@pytest.mark.parametrize(
    "request_text, expected",
    [
        ("What is the quality score of this photo?", "Assess the Image Quality"),
        ("Make this blurry picture sharper and higher resolution.", "Image Super-Resolution"),
        ("Is there a face in this picture?", "Detect Face"),
        ("Detect the edges of image/dogpark.png.", "Edge Detection On Image"),
        ("Split the photo into its segments.", "Segment the Image"),
    ],
)
def test_the_shipped_embedder_ranks_the_ui_tools_by_their_definitions(request_text, expected):
    # The UI's five default tools; two of them (quality, super-resolution) are test-set tools that no
    # training data ever named, so only their definitions can say what they are for.
    names = ["Edge Detection On Image", "Detect Face", "Segment the Image", "Assess the Image Quality", "Image Super-Resolution"]
    prior = default_retriever().prior(request_text, default_registry().subset(names).descriptions())
    assert prior.best == expected
    assert math.isclose(sum(prior.probs), 1.0, rel_tol=1e-5)


def test_plain_requests_over_the_23_training_tools_hold_their_measured_level():
    # The served rule's choice of tool is the embedder's best match (weight inf). On 46 plainly worded
    # requests, two per training tool, with all 23 candidates, it picks the asked-for tool on 28
    # (results/README.md, "Agent: the UI's default tools asked in plain words"); a change to what is
    # embedded or how must not lose any without saying so.
    from eval_gpt4tools.default_tools_check import SEEN_TOOL_REQUESTS

    definitions = default_registry().subset(list(SEEN_TOOL_REQUESTS)).descriptions()
    right = sum(default_retriever().prior(request, definitions).best == tool
                for tool, requests in SEEN_TOOL_REQUESTS.items() for request in requests)
    assert right >= 28, f"{right}/46"


@pytest.mark.real_model
@pytest.mark.parametrize(
    "request_text, expected",
    [("How good is the quality of this photo?", "Assess the Image Quality"),
     ("Upscale this picture to a higher resolution.", "Image Super-Resolution")],
)
def test_the_served_agent_calls_tools_it_never_trained_on(tmp_path, request_text, expected):
    """The UI's default tools on the shipped generator: quality and super-resolution are test-set tools
    that no training row names; only their definitions, through the prior, tell the agent what they do.
    (Without the prior the agent called neither: results/default_tools_loragen.md of 2026-12-04.)"""
    import cv2
    import numpy as np

    from agent import Agent
    from tools.workspace import Workspace
    from ui import DEFAULT_TOOLS

    photo = np.full((120, 160, 3), 200, np.uint8)
    cv2.circle(photo, (80, 60), 30, (40, 80, 200), -1)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    workspace = Workspace(tmp_path / "workspace")
    agent = Agent(list(DEFAULT_TOOLS), workspace=workspace, max_steps=1)
    result = agent.run(request_text, image=workspace.import_file(tmp_path / "photo.png"))
    called = [s.action for s in result.steps if s.kind == "tool"]
    assert called[:1] == [expected], result.trace_text()
    assert result.tool_prior is not None and result.tool_prior.best == expected


def test_once_the_wanted_tool_has_run_another_step_is_unlikely(edge):
    # The step prior: P(another tool) = the prior mass of the tools not called yet.
    tools = [EDGE, FACE, SEGMENT]
    prior = ToolPrior(tuple(tools), (0.96, 0.02, 0.02))
    assert prior.more_steps([EDGE]) == pytest.approx(0.04) and prior.more_steps([FACE]) == pytest.approx(0.98)
    assert prior.more_steps([EDGE, FACE, SEGMENT]) == pytest.approx(0.02)  # never ruled out by the prior alone
    grammar = trace_grammar(tools)

    def first_thought(p: ToolPrior | None) -> str:
        return parse_turn(edge.complete(PROMPT, max_new_tokens=40, grammar=grammar, tool_prior=p).text).thought

    assert first_thought(ToolPrior(prior.names, prior.probs)) == first_thought(None)  # nothing called: the model decides
    assert first_thought(ToolPrior(prior.names, prior.probs, called=(EDGE,))) == "Do I need to use a tool? No"
    assert first_thought(ToolPrior(prior.names, prior.probs, called=(FACE,))) == "Do I need to use a tool? Yes"
    # The weight is the tool choice's alone: weight 0 frees the choice of tool, not "another step?".
    assert first_thought(ToolPrior(prior.names, prior.probs, weight=0.0, called=(EDGE,))) == "Do I need to use a tool? No"
    assert first_thought(ToolPrior(prior.names, prior.probs, weight=0.0, called=(FACE,))) == "Do I need to use a tool? Yes"


def test_the_need_prior_decides_a_doubtful_first_thought_and_is_fitted_by_likelihood(edge):
    from loragen_core.tool_prior import fit_need, needs_tool

    assert needs_tool(0.3, threshold=0.3, scale=0.05) == pytest.approx(0.5)
    assert needs_tool(0.6, threshold=0.3, scale=0.05) > 0.99 > 0.01 > needs_tool(0.0, threshold=0.3, scale=0.05)
    # Data drawn from a known logistic: the fit finds its threshold and scale again.
    generator = torch.Generator().manual_seed(0)
    cos = torch.rand(4000, generator=generator).tolist()
    needs = [bool(torch.rand(1, generator=generator) < needs_tool(c, 0.4, 0.05)) for c in cos]
    threshold, scale = fit_need(cos, needs)
    assert threshold == pytest.approx(0.4, abs=0.01) and scale == pytest.approx(0.05, rel=0.2)

    tools = [EDGE, FACE]
    grammar = trace_grammar(tools)

    def first_thought(needs_tool_: float | None, need_weight: float = 1.0) -> str:
        prior = ToolPrior(tuple(tools), (0.5, 0.5), needs_tool=needs_tool_, need_weight=need_weight)
        return parse_turn(edge.complete(PROMPT, max_new_tokens=40, grammar=grammar, tool_prior=prior).text).thought

    assert first_thought(0.999) == "Do I need to use a tool? Yes"
    assert first_thought(0.001) == "Do I need to use a tool? No"
    # The need weight: inf lets the prior alone decide, however weakly it leans; 0 leaves the model's choice.
    assert first_thought(0.45, float("inf")) == "Do I need to use a tool? No"
    assert first_thought(0.55, float("inf")) == "Do I need to use a tool? Yes"
    assert first_thought(0.001, 0.0) == first_thought(None) == first_thought(0.999, 0.0)
    with pytest.raises(ValueError, match="need prior's weight"):
        ToolPrior(tuple(tools), (0.5, 0.5), need_weight=-1.0)
