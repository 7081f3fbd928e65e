"""The end-to-end demo: one GPT4Tools request answered with the full prompt and with LoRA-Gen.

    system prompt (tools, format rules) ─► generator ─► adapter ─► merged into the edge model
    edge prompt (image turn + request)  ─► specialised edge model ─► answer

Run with `python -m agent` (what `make run` starts).
"""

from __future__ import annotations

import argparse

from loragen_core import AdapterService, load_causal_lm, load_default_generator, load_generator
from loragen_core.edge_runtime import EdgeModel
from tools import build_prompt, image_turn, seen_tools, split_prompt

DEMO_TOOLS = ("Get Photo Description", "Edge Detection On Image", "Detect the Give Object", "Segment the Image")
DEMO_IMAGE = ("image/kqgmvzxa.png", "A brown dog lying on a red couch next to a window.")
DEMO_REQUEST = "Detect the edges of this image."


def run_demo(generator_dir: str | None = None, request: str = DEMO_REQUEST) -> None:
    by_name = {tool["name"]: tool["description"] for tool in seen_tools()}
    tools = [(name, by_name[name]) for name in DEMO_TOOLS]
    prompt = build_prompt(tools, new_input=request, chat_history=image_turn(*DEMO_IMAGE))
    parts = split_prompt(prompt)

    generator, trained = (load_generator(generator_dir), True) if generator_dir else load_default_generator()
    edge = EdgeModel(load_causal_lm(generator.config.edge_model))
    service = AdapterService(generator)

    print(f"Tools: {', '.join(DEMO_TOOLS)}\nRequest: {request}\n")
    baseline = edge.complete(prompt)
    print(f"── In-context baseline: full prompt ({baseline.prompt_tokens} tokens), no adapter")
    print(baseline.text.strip())
    print(f"   latency {baseline.seconds:.2f} s, {baseline.new_tokens} new tokens\n")

    result = service.adapter_for(parts.system_prompt)
    merge_seconds = edge.specialize(result.adapter)
    specialised = edge.complete(parts.edge_prompt)
    edge.reset()
    print(f"── LoRA-Gen: edge prompt only ({specialised.prompt_tokens} tokens), generated adapter merged")
    print(specialised.text.strip())
    print(f"   latency {specialised.seconds:.2f} s, {specialised.new_tokens} new tokens")
    print(
        f"   adapter {result.adapter_hash[:12]} {'from cache' if result.cache_hit else 'generated'} in "
        f"{result.seconds:.3f} s, merged in {merge_seconds * 1000:.0f} ms\n"
    )
    print(f"Prompt compression {baseline.prompt_tokens / specialised.prompt_tokens:.1f}x, "
          f"latency ratio {baseline.seconds / max(specialised.seconds, 1e-9):.2f}x")
    if not trained:
        print(
            "\nNote: no trained generator ships yet; this adapter comes from a seeded fresh generator and "
            "does not teach the edge model the tools, so the LoRA-Gen answer is not meaningful yet."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default=None, help="Generator checkpoint directory (default: the shipped one).")
    parser.add_argument("--request", default=DEMO_REQUEST, help="The user's request about the demo image.")
    args = parser.parse_args(argv)
    from loragen_core.errors import user_errors

    with user_errors():
        run_demo(args.generator, args.request)
    return 0
