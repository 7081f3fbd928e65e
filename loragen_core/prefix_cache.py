"""The strongest in-context baseline: keep the system prompt's KV cache, prefill only the rest.

Where the prompt is cut. A GPT4Tools prompt reads HEAD, USER, CLOSING (tools/gpt4tools_prompt.py): the
fixed closing line ("GPT4Tools needs to use tools ... Let's think step by step.") comes *after* the
user's part, so it cannot be cached ahead of a request. The cacheable prefix is therefore everything
before the user's part of the chat-formatted prompt:

    <chat header: template's system turn + "<|im_start|>user\\n"> HEAD | USER CLOSING <end of turn + assistant header>
    └──────────────────────── cached once per system prompt ────────┘ └──── prefilled for every request ──────────┘

The cut is made at a token boundary of the *full* prompt's tokenization (the last token that ends at or
before the end of HEAD), so a request continued from the cache sees exactly the tokens it would have
seen without it, and greedy decoding gives the same tokens (tested). Caches are keyed by the prefix's
token ids, so a request whose tokenization differs at the cut simply gets its own cache.

Reuse follows the transformers recipe (`generate(..., cache=copy.deepcopy(prefix_cache))`, the
kwarg `past_key_values` renamed `cache` in transformers 5): the stored cache is never mutated.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import Cache, DynamicCache, StaticCache

from tools import split_prompt

from .chat_format import chat_ids, chat_text

KV_CACHES = ("dynamic", "static")  # how a batch decode holds its keys and values (`EdgeModel.decode_rows`)


def check_kv_cache(kv_cache: str) -> None:
    if kv_cache not in KV_CACHES:
        raise ValueError(f"kv_cache must be one of {KV_CACHES}, not {kv_cache!r}.")


@torch.inference_mode()
def rewind(cache: StaticCache) -> StaticCache:
    """Empty a static cache for the next request without zeroing it: stale entries lie after the
    current position, where the causal mask already hides them."""
    cache.crop(-int(cache.get_seq_length()))
    return cache


class PrefixSplitError(ValueError):
    """The chat template does not reproduce the prompt verbatim, so no token boundary can be found."""


@dataclass(frozen=True)
class PrefixSplit:
    input_ids: torch.Tensor  # (1, n): the chat-formatted full prompt, exactly as EdgeModel tokenizes it
    prefix_length: int  # the first tokens, up to the end of HEAD: the cacheable part

    @property
    def prefix_key(self) -> tuple[int, ...]:
        return tuple(self.input_ids[0, : self.prefix_length].tolist())


def split_chat_prompt(tokenizer, instruction: str, verify: bool = True) -> PrefixSplit:
    """Tokenize `instruction` as a chat turn and find where its cacheable prefix ends. `verify` checks
    the tokens equal `apply_chat_template`'s (what EdgeModel feeds the model); a server checks once per
    system prompt and skips it per request."""
    text = chat_text(tokenizer, instruction)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    at = text.find(instruction)
    if at < 0 or (verify and list(encoded["input_ids"]) != chat_ids(tokenizer, instruction)):
        raise PrefixSplitError("The chat template does not embed the prompt verbatim; cannot cut it at the system prompt.")
    boundary = at + len(split_prompt(instruction).head)
    prefix_length = sum(1 for _, end in encoded["offset_mapping"] if end <= boundary)
    return PrefixSplit(torch.tensor([encoded["input_ids"]]), prefix_length)


def cache_nbytes(cache: Cache) -> int:
    """Bytes of the keys and values a cache holds."""
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers if layer.is_initialized)


class PrefixCacheStore:
    """One DynamicCache per distinct prefix (one per system prompt), computed on first use."""

    def __init__(self, model):
        self.model = model
        self.caches: dict[tuple[int, ...], DynamicCache] = {}

    @torch.inference_mode()
    def prefill(self, split: PrefixSplit) -> DynamicCache:
        """The stored cache for this prompt's prefix (computed now if new). Never pass it to generate
        directly: use `continuation` so it stays unchanged."""
        key = split.prefix_key
        if key not in self.caches:
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=split.input_ids[:, : split.prefix_length], cache=cache, use_cache=True, logits_to_keep=1)
            self.caches[key] = cache
        return self.caches[key]

    @staticmethod
    @torch.inference_mode()
    def continuation(prefix: DynamicCache, into: StaticCache | None = None) -> Cache:
        """A cache to continue generating from: a deep copy of the prefix, or the prefix written into
        a (rewound) static cache when decoding with one."""
        if into is None:
            return copy.deepcopy(prefix)
        rewind(into)
        for index, layer in enumerate(prefix.layers):
            into.update(layer.keys, layer.values, index)
        return into


def _padded_prefix_cache(model, prefixes: list[DynamicCache], width: int, static_length: int | None = None):
    """One batch cache from per-row prefix caches, each left-padded with zeros to `width` positions
    (the attention mask hides the padding, so its values never matter). `static_length`: a StaticCache
    of that many positions, the prefixes written into its first `width`, instead of a DynamicCache."""
    batch = StaticCache(config=model.config, max_cache_len=static_length) if static_length else DynamicCache(config=model.config)
    for index in range(len(prefixes[0].layers)):
        rows_keys = [prefix.layers[index].keys for prefix in prefixes]
        rows_values = [prefix.layers[index].values for prefix in prefixes]
        shape = (len(prefixes), rows_keys[0].shape[1], width, rows_keys[0].shape[3])
        keys = rows_keys[0].new_zeros(shape)
        values = rows_values[0].new_zeros(shape)
        for row, (k, v) in enumerate(zip(rows_keys, rows_values)):
            keys[row, :, width - k.shape[2] :] = k[0]
            values[row, :, width - v.shape[2] :] = v[0]
        batch.update(keys, values, index)
    return batch


@torch.inference_mode()
def complete_batch_from_prefixes(edge, store: PrefixCacheStore, instructions: list[str], max_new_tokens: int,
                                 grammars: list | None = None, exact_length: bool = False,
                                 tool_priors: list | None = None, kv_cache: str = "dynamic") -> list:
    """Full-prompt completions of several requests in one batch, each continuing from its own system
    prompt's cached KV (`store`), as a prefix-caching server decodes them.

    Each row is laid out as [pad][cached prefix][pad][rest of its prompt]: both parts are left-padded
    to the batch's longest, so every prefix ends at one column (one batch cache) and every prompt ends
    where decoding starts. Positions follow the attention mask, so each row's real tokens sit at the
    positions they have alone. Only the rest is prefilled; the stored caches are never changed.
    `exact_length`: every row writes `max_new_tokens` (`EdgeModel.decode_rows`). `tool_priors`: one
    `ToolPrior` (or None) per row, as `EdgeModel.decode_rows` takes them. `kv_cache`: "dynamic", or
    "static" (the batch cache preallocated for the whole decode, as `EdgeModel.decode_rows` explains).
    """
    check_kv_cache(kv_cache)
    splits = [split_chat_prompt(edge.tokenizer, text, verify=False) for text in instructions]
    with edge.lock:
        prefixes = [store.prefill(split) for split in splits]
        prefix_width = max(split.prefix_length for split in splits)
        rest_width = max(split.input_ids.shape[1] - split.prefix_length for split in splits)
        input_ids = torch.full((len(splits), prefix_width + rest_width), edge.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, split in enumerate(splits):
            ids, cut = split.input_ids[0], split.prefix_length
            input_ids[row, prefix_width - cut : prefix_width] = ids[:cut]
            input_ids[row, input_ids.shape[1] - (len(ids) - cut) :] = ids[cut:]
            attention_mask[row, prefix_width - cut : prefix_width] = 1
            attention_mask[row, input_ids.shape[1] - (len(ids) - cut) :] = 1
        static_length = input_ids.shape[1] + max_new_tokens if kv_cache == "static" else None
        cache = _padded_prefix_cache(edge.model, prefixes, prefix_width, static_length)
        return edge.decode_rows(input_ids, attention_mask, [s.input_ids.shape[1] for s in splits], max_new_tokens,
                                grammars, cache=cache, exact_length=exact_length, tool_priors=tool_priors)
