"""The end-to-end demo: one GPT4Tools request answered by the trained full-prompt LoRA (reading every
tool definition) and by LoRA-Gen (reading none of them).

    system prompt (tools, format rules) ─► generator ─► adapter ─► merged into the edge model
    edge prompt (image turn + request)  ─► specialised edge model ─► answer

Run with `python -m agent` (what `make run` starts).
"""

from __future__ import annotations

import argparse

from loragen_core import AdapterService, CheckpointError, load_causal_lm, load_default_generator, load_full_prompt_lora, load_generator
from loragen_core.edge_runtime import EdgeModel
from tools import build_prompt, image_turn, seen_tools, split_prompt
from tools.gpt4tools_format import OBSERVATION_STOP
from loragen_core.tool_prior import default_retriever
from tools.gpt4tools_grammar import tool_call_grammar

DEMO_TOOLS = ("Get Photo Description", "Edge Detection On Image", "Detect the Give Object", "Segment the Image")
DEMO_IMAGE = ("image/kqgmvzxa.png", "A brown dog lying on a red couch next to a window.")
DEMO_REQUEST = "Detect the edges of this image."


def run_demo(generator_dir: str | None = None, request: str = DEMO_REQUEST, with_icl: bool = False) -> None:
    by_name = {tool["name"]: tool["description"] for tool in seen_tools()}
    tools = [(name, by_name[name]) for name in DEMO_TOOLS]
    prompt = build_prompt(tools, new_input=request, chat_history=image_turn(*DEMO_IMAGE))
    parts = split_prompt(prompt)
    # Both sides decode as the agent serves them: under the tool set's grammar (names can only be real,
    # inputs in each tool's format), steered by the tool prior, up to the tool call's "Observation:"
    # (the agent would run the tool there).
    decoding = {"grammar": tool_call_grammar(tools, [DEMO_IMAGE[0]]), "stop": (OBSERVATION_STOP,),
                "tool_prior": default_retriever().prior(request, tools, need=True)}

    generator, trained = (load_generator(generator_dir), True) if generator_dir else load_default_generator()
    edge = EdgeModel(load_causal_lm(generator.config.edge_model))
    service = AdapterService(generator)
    print(f"Tools: {', '.join(DEMO_TOOLS)}\nRequest: {request}\n")

    try:
        full_prompt_lora = load_full_prompt_lora()
    except CheckpointError as missing:
        full_prompt_lora, with_icl = None, True
        print(f"({missing} Comparing with the untrained in-context model instead.)\n")
    if full_prompt_lora is not None:
        edge.specialize(full_prompt_lora.adapter, full_prompt_lora.adapter_hash)
        baseline = edge.complete(prompt, **decoding)
        edge.reset()
        _show(f"Full-prompt LoRA: trained on the same data, reads every tool definition ({baseline.prompt_tokens} tokens)", baseline)
    if with_icl:
        baseline = edge.complete(prompt, **decoding)
        _show(f"Untrained in-context model: full prompt ({baseline.prompt_tokens} tokens), no adapter", baseline)

    result = service.adapter_for(parts.system_prompt)
    merge_seconds = edge.specialize(result.adapter)
    specialised = edge.complete(parts.edge_prompt, **decoding)
    edge.reset()
    _show(f"LoRA-Gen: edge prompt only ({specialised.prompt_tokens} tokens), generated adapter merged", specialised)
    print(
        f"   adapter {result.adapter_hash[:12]} {'from cache' if result.cache_hit else 'generated'} in "
        f"{result.seconds:.3f} s, merged in {merge_seconds * 1000:.0f} ms\n"
    )
    print(f"Prompt compression {baseline.prompt_tokens / specialised.prompt_tokens:.1f}x, "
          f"decoding latency: the baseline takes {baseline.seconds / max(specialised.seconds, 1e-9):.2f}x LoRA-Gen's")
    if not trained:
        print(
            "\nNote: no trained generator ships yet; this adapter comes from a seeded fresh generator and "
            "does not teach the edge model the tools, so the LoRA-Gen answer is not meaningful yet."
        )


def _show(title: str, completion) -> None:
    print(f"── {title}")
    print(completion.text.strip())
    print(f"   latency {completion.seconds:.2f} s, {completion.new_tokens} new tokens\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default=None, help="Generator checkpoint directory (default: the shipped one).")
    parser.add_argument("--request", default=DEMO_REQUEST, help="The user's request about the demo image.")
    parser.add_argument("--with-icl", action="store_true", help="Also show the untrained in-context model (full prompt, no adapter).")
    args = parser.parse_args(argv)
    from loragen_core.errors import user_errors

    with user_errors():
        run_demo(args.generator, args.request, args.with_icl)
    return 0
