"""`python -m ui [--host 127.0.0.1] [--port N]`: serve the chat UI.

Loads the runtime (generator + edge model) before serving, so the first visitor does not wait for it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from loragen_core.compiled_decoding import EDGE_DECODERS, SERVED_EDGE_DECODER
from loragen_core.errors import user_errors
from loragen_core.int8 import WEIGHT_FORMATS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ui", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (0.0.0.0: every interface).")
    parser.add_argument("--port", type=int, default=None, help="Port (default: the first free one from 7860).")
    parser.add_argument("--generator", default=None, help="Generator checkpoint directory (default: the shipped one).")
    parser.add_argument("--edge-model", default=None, help="Edge model directory overriding the one the generator names.")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Tokens the edge model may write per model call.")
    parser.add_argument("--edge-weights", choices=WEIGHT_FORMATS, default="fp32",
                        help="fp32 (exact, default); int8: decode with an int8 copy of the edge model, faster on a "
                             "CPU, not the same tokens; int8-mlp: only the MLPs in int8; w8a16: int8 weights, bf16 "
                             "activations, the adapter quantised in (with the default fast-forward decoder 35.3 tok/s against fp32's 28.4 on a "
                             "2-core EPYC; with --edge-decoder compiled 44.4 against 24.4 on a 2-core Xeon; results/README.md has their SR).")
    parser.add_argument("--edge-decoder", choices=EDGE_DECODERS, default=SERVED_EDGE_DECODER,
                        help="fast-forward (default): the tokens the agent's grammar forces are written without a decode "
                             "step each (the same replies as dynamic on 100 test items, ~1.9x the tokens/s); dynamic: one "
                             "step per token, the exact reference; compiled: decode steps through torch.compile, faster per "
                             "token, not the same tokens; needs g++, and the first reply of each prompt length compiles (~30 s).")
    args = parser.parse_args(argv)
    if args.edge_model and not args.generator:
        parser.error("--edge-model needs --generator (the shipped generator is made for the default edge model)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup requests

    with user_errors():
        from agent import LoRAGenRuntime

        from .app import build_app

        print("Loading the generator and the edge model...", flush=True)
        if args.generator or args.edge_weights != "fp32" or args.edge_decoder != SERVED_EDGE_DECODER:
            runtime = LoRAGenRuntime.from_checkpoint(args.generator, args.edge_model, edge_weights=args.edge_weights,
                                                     edge_decoder=args.edge_decoder)
        else:
            runtime = LoRAGenRuntime.default()
        if not runtime.trained:
            print("Note: no trained generator ships yet; adapters come from a seeded fresh generator.", flush=True)
        build_app(runtime, max_new_tokens=args.max_new_tokens).launch(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
