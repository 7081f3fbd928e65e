"""`python -m agent.serve [--host 127.0.0.1] [--port 8000] [--generator DIR]`: serve the LoRA-Gen
edge model behind OpenAI's chat-completions API (docs/server.md).

Loads the runtime (generator + edge model) before listening, so /health answering means ready.
SIGTERM or Ctrl-C stops it cleanly (uvicorn finishes open requests, up to a grace period), exit 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from loragen_core.errors import user_errors

# Open requests get this long to finish on SIGTERM; a stream still decoding after it is cut.
GRACEFUL_SHUTDOWN_SECONDS = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (0.0.0.0: every interface).")
    parser.add_argument("--port", type=int, default=8000, help="Port to listen on.")
    parser.add_argument("--generator", default=None, help="Generator checkpoint directory (default: the shipped one).")
    parser.add_argument("--edge-model", default=None, help="Edge model directory overriding the one the generator names.")
    parser.add_argument("--model-id", default=None, help="The model id clients send (default: loragen-smollm2-135m).")
    # Defaults None: the batcher's own (agent/server/batching.py), read only once the models load, so
    # that --help does not wait for torch.
    parser.add_argument("--batch-window-ms", type=float, default=None,
                        help="Decode tool-call requests that arrive within this window together, each under its own adapter "
                             "(micro-batching; default 20; 3.4x the requests/s of one-at-a-time at 16 tenants on a 2-core "
                             "CPU, results/server_throughput.md); 0: one request at a time.")
    parser.add_argument("--max-batch", type=int, default=None, help="Rows per batched decode (default 16).")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    if args.edge_model and not args.generator:
        parser.error("--edge-model needs --generator (the shipped generator is made for the default edge model)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s: %(message)s")

    with user_errors():
        import uvicorn

        from agent import LoRAGenRuntime
        from agent.server import MODEL_ID, create_app

        print("Loading the generator and the edge model...", flush=True)
        runtime = LoRAGenRuntime.from_checkpoint(args.generator, args.edge_model) if args.generator else LoRAGenRuntime.default()
        if not runtime.trained:
            print("Note: no trained generator ships yet; adapters come from a seeded fresh generator.", flush=True)
        from agent.server.batching import BATCH_WINDOW_SECONDS, MAX_BATCH, BatchingRuntime

        window_ms = BATCH_WINDOW_SECONDS * 1000 if args.batch_window_ms is None else args.batch_window_ms
        if window_ms > 0:
            runtime = BatchingRuntime(runtime, window_seconds=window_ms / 1000, max_batch=args.max_batch or MAX_BATCH)
        app = create_app(runtime, args.model_id or MODEL_ID)
        # uvicorn shuts down gracefully on SIGTERM / SIGINT, then raises the signal again under the
        # handler that was there before it: make that handler an ordinary exit, status 0 (by default
        # SIGTERM would end the process with -15 and SIGINT with a KeyboardInterrupt traceback).
        signal.signal(signal.SIGTERM, _exit_cleanly)
        signal.signal(signal.SIGINT, _exit_cleanly)
        try:
            uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
        except SystemExit as stop:
            if stop.code not in (0, None):  # uvicorn's own exit (e.g. the port is taken)
                raise
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
