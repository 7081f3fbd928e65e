"""Multiple-choice scoring by option log-likelihood, and the summary statistics of Table 2.

The edge prompt is chat-formatted exactly as `EdgeModel.chat_input_ids` (and the trainer) does; each
option's text is the assistant's continuation, tokenised on its own as the trainer tokenises the
answer. Its log-likelihood is the sum of its tokens' log-probabilities. The prediction is the option
with the highest sum: lm-evaluation-harness's `acc` (unnormalised). `acc_norm` (the sum divided by the
option's length in characters, as lm-eval's `acc_norm`) comes from the same numbers and is reported
beside it. Nothing is decoded, so every mode is scored by the same rule and no answer parsing exists.

Cost: one forward pass over the prompt (its KV cache kept), then one batched pass over all options
on copies of that cache. The item's latency is the wall time of both.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from loragen_core.edge_runtime import EdgeModel


@dataclass(frozen=True)
class OptionScores:
    logliks: list[float]  # summed log-probability of each option's tokens
    prompt_tokens: int  # chat-formatted edge prompt, as the model reads it
    seconds: float


def _cache_arguments(model, cache: DynamicCache) -> dict:
    # transformers 5.x renames the forward argument `past_key_values` to `cache` (old name deprecated)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache, "use_cache": True}


@torch.inference_mode()
def score_options(edge: EdgeModel, user_text: str, options: Sequence[str]) -> OptionScores:
    tokenized = [edge.tokenizer(option, add_special_tokens=False)["input_ids"] for option in options]
    if not all(tokenized):
        raise ValueError(f"An option tokenises to nothing: {list(options)!r}")
    model = edge.model
    width = max(len(ids) for ids in tokenized) - 1  # every option's tokens but its last are fed
    pad = edge.tokenizer.pad_token_id if edge.tokenizer.pad_token_id is not None else edge.tokenizer.eos_token_id
    fed = torch.full((len(options), max(width, 1)), pad, dtype=torch.long)
    for row, ids in enumerate(tokenized):
        fed[row, : len(ids) - 1] = torch.tensor(ids[:-1])
    with edge.lock:
        prompt = edge.chat_input_ids(user_text).to(model.device)
        start = time.perf_counter()
        cache = DynamicCache(config=model.config)
        out = model(input_ids=prompt, logits_to_keep=1, **_cache_arguments(model, cache))
        first = out.logits[0, -1].float().log_softmax(-1)
        rest = None
        if width > 0:
            # All options in one batch on copies of the prompt's cache. Padding sits to the right of
            # each option's tokens, so causal attention never lets a scored token see it.
            cache.batch_repeat_interleave(len(options))
            rest = model(input_ids=fed.to(model.device), **_cache_arguments(model, cache)).logits.float().log_softmax(-1)
        logliks = []
        for row, ids in enumerate(tokenized):
            total = first[ids[0]]
            if len(ids) > 1:
                targets = torch.tensor(ids[1:], device=model.device)[:, None]
                total = total + rest[row, : len(ids) - 1].gather(1, targets).sum()
            logliks.append(float(total))
        seconds = time.perf_counter() - start
    return OptionScores(logliks, int(prompt.shape[1]), seconds)


def predict(scores: Sequence[float]) -> int:
    """The chosen option: argmax, ties to the first."""
    return max(range(len(scores)), key=scores.__getitem__)


def average(accuracies: Sequence[float]) -> float:
    """AVE: the arithmetic mean of per-task accuracies."""
    return statistics.fmean(accuracies)


def harmonic_mean(accuracies: Sequence[float]) -> float:
    """HAR: the harmonic mean of per-task accuracies (0 if any task is 0): it punishes a weak task
    more than AVE does."""
    return float(statistics.harmonic_mean(accuracies))
