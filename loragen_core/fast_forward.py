"""Grammar fast-forward for batch-1 greedy decoding: the tokens the grammar forces are written
without asking the model for them one at a time.

    prompt ─► forward ─► mask, argmax ─► t ─► grammar: forced continuation f_1..f_k ─► forward([t, f_1..f_k]) ─► …

Under the served GPT4Tools grammar much of a trace is fixed text ("Thought: Do I need to use a tool?",
"\\nAction: ", the rest of a tool name once its first token is chosen, a single image path): 59% of the
tokens of the served loragen outputs (120 test items) are the only token the grammar allows. Greedy
decoding would pick each of them whatever the model's scores, so they need no step of their own; they
only need their keys and values, and one forward over t and its forced tokens computes all of them at
once (on a memory-bound CPU, a forward over a few positions costs about what one position costs).
llguidance gives the forced tokens in the tokenizer's canonical split (`compute_ff_tokens`), so the
written ids are those step-by-step decoding writes.

Not bit-exact: keys and values computed for several positions in one matrix product round
differently from one position at a time, so a later greedy choice can flip where two tokens score
within rounding of each other (the same caveat as any change of kernel; results/README.md gives the
measured agreement: the same 100 outputs). `EdgeModel(decoder="fast-forward")`, the served runtime's
decoder (compiled_decoding.SERVED_EDGE_DECODER); rows without a grammar decode as the dynamic decoder
does.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import DynamicCache, LogitsProcessorList, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .constrained import GrammarLogitsProcessor
from .int8_weight_only import decoding_positions


@torch.inference_mode()
def fast_forward_generate(model, input_ids: torch.Tensor, max_new_tokens: int, processors: LogitsProcessorList,
                          stopping_criteria: StoppingCriteriaList, streamer: BaseStreamer | None = None) -> torch.Tensor:
    """Greedy decoding of one row (`input_ids`: (1, prompt)) under `processors`, whose first member
    is the row's `GrammarLogitsProcessor`; returns prompt + new ids as `generate` does. The stopping
    criteria see every written token, forced ones included, and decoding ends at the first that fires."""
    if input_ids.shape[0] != 1:
        raise ValueError(f"Fast-forward decodes one row at a time, not {input_ids.shape[0]}.")
    grammar = processors[0]
    if not isinstance(grammar, GrammarLogitsProcessor):
        raise ValueError("Fast-forward needs the row's grammar processor first in `processors`.")
    cache = DynamicCache(config=model.config)
    sequence, feed = input_ids, input_ids
    if streamer is not None:
        streamer.put(input_ids.cpu())  # `generate`'s protocol: the prompt first, then the new tokens
    budget = max_new_tokens
    while budget > 0:
        # After the prompt, the positions are written ones: on a w8a16 copy they take the decode path.
        written_positions = decoding_positions(model) if feed is not input_ids else contextlib.nullcontext()
        with written_positions:
            # logits of the last position only: the forced tokens' own scores are never read
            logits = model(input_ids=feed, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :].to(torch.float32)
        choice = processors(sequence, logits).argmax(dim=-1, keepdim=True)
        written = [choice]
        sequence = torch.cat([sequence, choice], dim=1)
        budget -= 1
        stopped = bool(stopping_criteria(sequence, logits).any())
        if not stopped and budget > 0:
            for token in grammar.forced_tokens(sequence)[:budget]:
                forced = torch.tensor([[token]], dtype=sequence.dtype, device=sequence.device)
                sequence = torch.cat([sequence, forced], dim=1)
                written.append(forced)
                budget -= 1
                if stopped := bool(stopping_criteria(sequence, logits).any()):
                    break
        if streamer is not None:
            streamer.put(torch.cat(written, dim=1).cpu())
        if stopped:
            break
        feed = torch.cat(written, dim=1)
    if streamer is not None:
        streamer.end()
    return sequence
