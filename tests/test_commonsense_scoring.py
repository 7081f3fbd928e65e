"""Option log-likelihood scoring on a tiny model, checked against a direct computation; AVE and HAR."""

from __future__ import annotations

import pytest
import torch

from eval_commonsense.runner import task_metrics
from eval_commonsense.scoring import average, harmonic_mean, predict, score_options
from loragen_core import load_causal_lm
from loragen_core.edge_runtime import EdgeModel

PROMPT = "Answer the question with one word. Which tool finds faces?"
OPTIONS = ["Detect Face", "Segment the Image", "the lazy dog", "fox"]


@pytest.fixture(scope="module")
def edge(tiny_dirs) -> EdgeModel:
    return EdgeModel(load_causal_lm(str(tiny_dirs["edge"])))


def direct_logliks(edge: EdgeModel, prompt: str, options: list[str]) -> list[float]:
    """Each option scored on its own: one forward over prompt + option, no cache."""
    prompt_ids = edge.chat_input_ids(prompt)[0].tolist()
    values = []
    for option in options:
        ids = edge.tokenizer(option, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = edge.model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
        logprobs = logits[len(prompt_ids) - 1 : -1].log_softmax(-1)
        values.append(logprobs.gather(1, torch.tensor(ids)[:, None]).sum().item())
    return values


def test_cached_scoring_equals_one_forward_per_option(edge):
    scores = score_options(edge, PROMPT, OPTIONS)
    expected = direct_logliks(edge, PROMPT, OPTIONS)
    assert scores.logliks == pytest.approx(expected, abs=1e-4)
    assert scores.prompt_tokens == edge.count_prompt_tokens(PROMPT)
    assert scores.seconds > 0
    # options of different lengths share one padded batch: their order does not matter
    again = score_options(edge, PROMPT, OPTIONS[::-1])
    assert again.logliks[::-1] == pytest.approx(scores.logliks, abs=1e-4)


def test_the_chosen_option_is_the_one_the_model_prefers(edge):
    scores = score_options(edge, PROMPT, OPTIONS)
    assert scores.logliks[predict(scores.logliks)] == pytest.approx(max(direct_logliks(edge, PROMPT, OPTIONS)), abs=1e-4)
    # single-token options: the model's most likely next token must win, wherever it is placed
    with torch.no_grad():
        next_logits = edge.model(input_ids=edge.chat_input_ids(PROMPT)).logits[0, -1]
    ranked = next_logits.argsort(descending=True).tolist()
    words = []
    for token in ranked:
        text = edge.tokenizer.decode([token])
        if text.strip() and edge.tokenizer(text, add_special_tokens=False)["input_ids"] == [token]:
            words.append(text)
        if len(words) == 4:
            break
    favourite = words[0]
    for options in (words, words[::-1], words[1:3] + words[:1]):
        assert options[predict(score_options(edge, PROMPT, options).logliks)] == favourite


def test_predict_breaks_ties_to_the_first_option():
    assert predict([-1.0, -0.5, -0.5]) == 1
    assert predict([-2.0]) == 0


def test_an_empty_option_is_refused(edge):
    with pytest.raises(ValueError, match="tokenises to nothing"):
        score_options(edge, PROMPT, ["yes", ""])


def test_ave_and_har_on_a_hand_computed_case():
    accuracies = [0.5, 0.25, 1.0]
    assert average(accuracies) == pytest.approx(1.75 / 3)
    assert harmonic_mean(accuracies) == pytest.approx(3 / (2 + 4 + 1))  # = 0.428571...
    assert harmonic_mean([0.8, 0.0]) == 0.0
    assert harmonic_mean([0.6] * 8) == pytest.approx(0.6)


def test_acc_and_acc_norm_from_records():
    records = [
        # unnormalised: option 0 (-4 > -6); per character: option 1 (-6/12 > -4/4)
        {"logliks": [-4.0, -6.0], "option_chars": [4, 12], "gold": 1},
        {"logliks": [-1.0, -9.0], "option_chars": [5, 5], "gold": 0},
    ]
    metrics = task_metrics(records)
    assert metrics == {"acc": 0.5, "acc_norm": 1.0, "n": 2}
