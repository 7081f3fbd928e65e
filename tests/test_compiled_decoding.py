"""The compiled batch-1 decoder (`EdgeModel(decoder="compiled")`, loragen_core/compiled_decoding.py)
and the adapter slots that keep its graph valid across adapters (loragen_core/adapter_slots.py):
slots compute what the hook path computes, swap adapters in place, and detach exactly; compiled
decoding writes what eager decoding writes on the tiny model, and a second adapter reuses the graph
compiled for the first."""

from __future__ import annotations

import shutil

import pytest
import torch

from loragen_core import load_causal_lm
from loragen_core.compiled_decoding import MIN_BUCKET, bucket_length
from loragen_core.edge_runtime import EdgeModel
from tests.test_int8_edge import BUDGET, PROMPTS, _logits

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile's CPU backend needs a C++ compiler (g++), not installed here")


def test_buckets_are_powers_of_two_from_the_minimum_and_stop_at_the_model_length():
    assert bucket_length(10, 8192) == MIN_BUCKET
    assert bucket_length(MIN_BUCKET + 1, 8192) == 2 * MIN_BUCKET
    assert bucket_length(5000, 8192) == 8192
    assert bucket_length(5000, 4096) is None  # the dynamic path takes it


def test_an_unknown_decoder_is_refused(tiny_dirs):
    with pytest.raises(ValueError, match="Unknown edge decoder 'fast'"):
        EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), decoder="fast")


def test_slots_compute_what_the_hooks_compute_and_swap_in_place(tiny_dirs, three_adapters):
    edge = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16")
    plain = _logits(edge.decode_model, edge, PROMPTS[0])
    for i in range(2):
        with three_adapters.row(i).applied_to(edge.decode_model):
            hooked = _logits(edge.decode_model, edge, PROMPTS[0])
        edge.specialize(three_adapters.row(i))
        if i == 0:
            module = dict(edge.decode_model.named_modules())[next(iter(three_adapters.lora_a))]
            addresses = (module._loragen_slot_a.data_ptr(), module._loragen_slot_b.data_ptr())
        slotted = _logits(edge.decode_model, edge, PROMPTS[0])
        edge.reset()
        assert not torch.equal(slotted, plain)
        assert torch.allclose(slotted, hooked, atol=2e-2, rtol=1e-2)  # scale folded into B: rounding only
    assert (module._loragen_slot_a.data_ptr(), module._loragen_slot_b.data_ptr()) == addresses
    assert torch.equal(_logits(edge.decode_model, edge, PROMPTS[0]), plain)


@needs_compiler
def test_compiled_decoding_writes_what_eager_writes_and_reuses_its_graph(tiny_dirs, three_adapters):
    """First without an adapter (so a graph exists before any hook), then two adapters: the compiled
    model must follow each adapter (a graph that ignored hooks installed after it was compiled would
    not), and the second adapter must reuse the first one's graph."""
    torch._dynamo.reset()
    eager = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16")
    compiled = EdgeModel(load_causal_lm(str(tiny_dirs["edge"])), weights="w8a16", decoder="compiled")
    text = PROMPTS[0]
    plain = compiled.complete(text, max_new_tokens=BUDGET).text
    assert plain == eager.complete(text, max_new_tokens=BUDGET).text
    graphs, answers = [], []
    for i in range(2):
        for edge in (eager, compiled):
            edge.specialize(three_adapters.row(i))
        answers.append(compiled.complete(text, max_new_tokens=BUDGET).text)
        assert answers[-1] == eager.complete(text, max_new_tokens=BUDGET).text
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert all(answer != plain for answer in answers), "each adapter changes what the model writes"
    assert graphs[0] > 0, "the decode step was compiled"
    assert graphs[1] == graphs[0], "the second adapter reused the first one's graph"
    compiled.reset()
    assert compiled.complete(text, max_new_tokens=BUDGET).text == plain
