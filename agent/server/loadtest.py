"""`python -m agent.server.loadtest`: the server's throughput and latency under concurrent tenants.

    GPT4Tools test items ─► one OpenAI request each (its own tool set: its own adapter)
        ─► C client threads over HTTP ─► the server on a loopback port ─► requests/s, tokens/s, p50/p90

Three servers on the same edge model, one after the other:

    serialized  `LoRAGenRuntime`: each request takes the edge model's lock, merges its adapter, decodes
    batched     `BatchingRuntime`: requests arriving within a short window decode in one batch, each
                row under its own adapter applied functionally (nothing merged)
    full_prompt_prefix_cached  the competitor (`PrefixCachedFullPromptRuntime`): the tool definitions
                in the context, each system prompt's KV cached once, micro-batched the same way

The competitor runs on the base weights: the trained full-prompt LoRA does not ship, and a merged
LoRA costs nothing at decode, so only the lengths matter. Its replies are not the trained model's
(compare tokens/reply; tok/s is the fairer column when they differ).

At C clients the first C x R requests of a fixed list are sent, R per client, each client sending its
next request when the previous reply arrived. Every request has a different tool set, the worst case
for the serialized server (a merge per request; its merge time is reported on its own). Adapters are
generated, and the competitor's prefixes prefilled, before any timing, so neither the cloud LM nor a
first prefill is in the figures. The batched replies are compared
with the serialized ones, which are each decoded alone: `equal` counts identical text, tool calls and
token counts.

Run it on a quiet machine: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from loragen_core.atomic import write_json_and_markdown
from loragen_core.errors import say, user_errors
from tools.gpt4tools_prompt import split_prompt

from .app import MODEL_ID
from .live import live_server

DEFAULT_CLIENTS = (1, 4, 8, 16)
FULL_PROMPT = "full_prompt_prefix_cached"
IMAGE_TURN = re.compile(r"Human: Provide an image named (\S+?)\. Description: (.*?) Understand the image using tools\.\nAI: Received\.", re.DOTALL)
NEW_INPUT = re.compile(r"New input: (.*)$", re.DOTALL)
REQUEST_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class LoadConfig:
    data: Path | None = None  # GPT4Tools test JSON (default: ../shared/data/gpt4tools/)
    clients: tuple[int, ...] = DEFAULT_CLIENTS
    requests_per_client: int = 2
    max_tokens: int = 64
    batch_window_ms: float = 20.0
    max_batch: int = 16
    out: Path = Path("results/server_throughput")
    generator: Path | None = None

    def __post_init__(self) -> None:
        if not self.clients or min(self.clients) < 1:
            raise ValueError("--clients needs positive counts, e.g. 1 4 8 16.")
        if self.requests_per_client < 1 or self.max_tokens < 1:
            raise ValueError("--requests-per-client and --max-tokens must be at least 1.")


@dataclass
class Reply:
    index: int
    seconds: float
    content: str
    tool_calls: list[tuple[str, str]]
    prompt_tokens: int
    completion_tokens: int
    full_prompt_tokens: int
    merge_seconds: float | None

    def same_output(self, other: "Reply") -> bool:
        return (self.content, self.tool_calls, self.completion_tokens) == (other.content, other.tool_calls, other.completion_tokens)


@dataclass
class Level:
    server: str
    clients: int
    requests: int
    wall_seconds: float
    requests_per_s: float
    tokens_per_s: float
    p50_seconds: float
    p90_seconds: float
    mean_completion_tokens: float
    mean_prompt_tokens: float
    merge_seconds_total: float
    merges: int  # replies that merged an adapter first (a tiny model's merges can sum to under a millisecond)
    batch_sizes: list[int] = field(default_factory=list)
    equal_to_serialized: int | None = None


def openai_request(item: dict, max_tokens: int) -> dict:
    """A GPT4Tools item as a chat-completions body: its tools as functions, its conversation as messages."""
    parts = split_prompt(item["instruction"])
    image_turn, new_input = IMAGE_TURN.search(parts.user), NEW_INPUT.search(parts.user.strip())
    if image_turn is None or new_input is None:
        raise ValueError(f"item {item.get('id')}: not an image turn followed by a new input")
    path, caption = image_turn.groups()
    parameters = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}
    return {
        "model": MODEL_ID, "max_tokens": max_tokens,
        "tools": [{"type": "function", "function": {"name": n, "description": d, "parameters": parameters}}
                  for n, d in parts.tool_definitions],
        "messages": [
            {"role": "user", "content": f"Provide an image named {path}. Description: {caption.strip()} Understand the image using tools."},
            {"role": "assistant", "content": "Received."},
            {"role": "user", "content": new_input.group(1).strip()},
        ],
    }


def distinct_tool_sets(items: list[dict], count: int) -> list[dict]:
    """The first `count` items whose tool sets all differ (each request then needs its own adapter)."""
    chosen, seen = [], set()
    for item in items:
        tools = tuple(split_prompt(item["instruction"]).tool_definitions)
        if tools not in seen and IMAGE_TURN.search(item["instruction"]):
            seen.add(tools)
            chosen.append(item)
            if len(chosen) == count:
                return chosen
    raise ValueError(f"only {len(chosen)} items with distinct tool sets; {count} needed")


def _send(client: httpx.Client, url: str, index: int, body: dict) -> Reply:
    start = time.perf_counter()
    response = client.post(url + "/v1/chat/completions", json=body, timeout=REQUEST_TIMEOUT_SECONDS)
    seconds = time.perf_counter() - start
    if response.status_code != 200:  # the server's OpenAI-style error says what was wrong
        raise RuntimeError(f"request {index}: HTTP {response.status_code}: {response.text[:500]}")
    reply = response.json()
    message = reply["choices"][0]["message"]
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []]
    extension = reply.get("loragen", {})
    return Reply(index, seconds, message.get("content") or "", calls, reply["usage"]["prompt_tokens"],
                 reply["usage"]["completion_tokens"], extension.get("full_prompt_tokens", 0), extension.get("merge_seconds"))


def run_level(url: str, bodies: list[dict], clients: int, per_client: int) -> tuple[float, list[Reply]]:
    """C clients, R requests each, sent back to back; returns the wall time and the replies in order."""
    replies: list[Reply | None] = [None] * (clients * per_client)
    barrier = threading.Barrier(clients)

    def client_loop(c: int) -> None:
        with httpx.Client() as client:
            barrier.wait()
            for r in range(per_client):
                index = c * per_client + r
                replies[index] = _send(client, url, index, bodies[index])

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    return time.perf_counter() - start, [r for r in replies if r is not None]


def summarise(server: str, clients: int, wall: float, replies: list[Reply], batch_sizes: list[int]) -> Level:
    latencies = sorted(r.seconds for r in replies)
    tokens = sum(r.completion_tokens for r in replies)
    p90 = statistics.quantiles(latencies, n=10, method="inclusive")[-1] if len(latencies) > 1 else latencies[0]
    return Level(
        server=server, clients=clients, requests=len(replies), wall_seconds=round(wall, 3),
        requests_per_s=round(len(replies) / wall, 3), tokens_per_s=round(tokens / wall, 2),
        p50_seconds=round(statistics.median(latencies), 3), p90_seconds=round(p90, 3),
        mean_completion_tokens=round(tokens / len(replies), 1),
        mean_prompt_tokens=round(statistics.mean(r.prompt_tokens for r in replies), 1),
        merge_seconds_total=round(sum(r.merge_seconds or 0.0 for r in replies), 3),
        merges=sum(1 for r in replies if (r.merge_seconds or 0.0) > 0), batch_sizes=batch_sizes,
    )


def run_load(config: LoadConfig, base=None, write: bool = True) -> dict:
    """Both servers at every concurrency level. `base`: the runtime whose generator and edge model
    are served (default: the shipped generator or `config.generator`)."""
    from agent import LoRAGenRuntime
    from loragen_core.machine import machine_info
    from eval_gpt4tools.data import load_test_items

    from .batching import BatchingRuntime
    from .full_prompt import PrefixCachedFullPromptRuntime

    most = max(config.clients) * config.requests_per_client
    items = distinct_tool_sets(load_test_items(config.data), most)
    bodies = [openai_request(item, config.max_tokens) for item in items]
    say(f"{most} requests with distinct tool sets; loading the runtime")
    if base is None:
        base = LoRAGenRuntime.from_checkpoint(config.generator) if config.generator else LoRAGenRuntime.default()
    # Every adapter stays in memory (no disk reads in the timings); the prompt bound is the base's.
    runtime = LoRAGenRuntime(base.generator, base.edge, use_disk_cache=False, trained=base.trained,
                             max_prompt_tokens=base.max_prompt_tokens, memory_cache_size=most)
    window = config.batch_window_ms / 1000
    servers = {
        "serialized": runtime,
        "batched": BatchingRuntime(runtime, window_seconds=window, max_batch=config.max_batch),
        FULL_PROMPT: PrefixCachedFullPromptRuntime(runtime, window_seconds=window, max_batch=config.max_batch),
    }
    levels: list[Level] = []
    reference: dict[int, Reply] = {}
    for name, served in servers.items():
        with live_server(served) as url:
            if name != "batched":  # adapters generated, prefixes prefilled, the server warmed: not timed
                say("generating the adapters (not timed)" if name == "serialized" else "prefilling the system prompts (not timed)")
                with httpx.Client() as client:
                    for i, body in enumerate(bodies):
                        _send(client, url, i, {**body, "max_tokens": 1})
            for clients in config.clients:
                seen = len(getattr(served, "batch_sizes", []))
                wall, replies = run_level(url, bodies, clients, config.requests_per_client)
                level = summarise(name, clients, wall, replies, list(getattr(served, "batch_sizes", []))[seen:])
                if name == "serialized":
                    reference.update({r.index: r for r in replies})  # each decoded alone, under the lock
                elif name == "batched":
                    level.equal_to_serialized = sum(r.same_output(reference[r.index]) for r in replies if r.index in reference)
                levels.append(level)
                say(f"{name:>10} x{clients:<2} {level.requests_per_s:6.2f} req/s {level.tokens_per_s:7.1f} tok/s "
                     f"p50 {level.p50_seconds:.2f} s p90 {level.p90_seconds:.2f} s")
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "machine": machine_info(),
        "trained_generator": runtime.trained,
        "mean_full_prompt_tokens": round(statistics.mean(r.full_prompt_tokens for r in reference.values()), 1),
        "levels": [asdict(level) for level in levels],
        "speedup_batched_over_serialized": _speedups(levels, "serialized"),
        f"speedup_batched_over_{FULL_PROMPT}": _speedups(levels, FULL_PROMPT),
        "memory_per_tenant_bytes": {
            "adapter": runtime.adapter_for(split_prompt(items[0]["instruction"]).system_prompt).adapter.nbytes,
            f"{FULL_PROMPT}_kv": servers[FULL_PROMPT].cached_prefix_bytes // max(len(servers[FULL_PROMPT].store.caches), 1),
        },
    }
    if write:
        write_json_and_markdown(config.out, result, markdown(result))
    return result


def _speedups(levels: list[Level], other: str) -> dict[str, float]:
    """Batched LoRA-Gen's requests/s over `other`'s, per concurrency level."""
    by = {(level.server, level.clients): level for level in levels}
    return {str(c): round(by["batched", c].requests_per_s / by[other, c].requests_per_s, 2)
            for s, c in by if s == "batched" and (other, c) in by}





def markdown(result: dict) -> str:
    config, machine = result["config"], result["machine"]
    lines = [
        "# Server throughput: many tenants, one edge model",
        "",
        f"`python -m agent.server.loadtest` (max_tokens {config['max_tokens']}, {config['requests_per_client']} requests per client, "
        f"batch window {config['batch_window_ms']} ms, at most {config['max_batch']} rows), every request with its own tool set.",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, torch threads {machine.get('torch_default_threads', '?')}, "
        f"load average before the run {machine.get('load_average_at_start', '?')}.",
        f"The edge model read {_mean_prompt(result)} prompt tokens per request; the full GPT4Tools prompt would be "
        f"{result['mean_full_prompt_tokens']}.",
        "",
        "| server | clients | requests | req/s | tok/s | p50 s | p90 s | tokens/reply | merge s (sum) | batch sizes | equal to alone |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in result["levels"]:
        sizes = level["batch_sizes"]
        batches = f"{len(sizes)} decodes, max {max(sizes)}" if sizes else ""
        equal = "" if level["equal_to_serialized"] is None else f"{level['equal_to_serialized']}/{level['requests']}"
        lines.append(
            f"| {level['server']} | {level['clients']} | {level['requests']} | {level['requests_per_s']:.2f} | {level['tokens_per_s']:.1f} | "
            f"{level['p50_seconds']:.2f} | {level['p90_seconds']:.2f} | {level['mean_completion_tokens']} | {level['merge_seconds_total']:.2f} | "
            f"{batches} | {equal} |"
        )
    memory = result["memory_per_tenant_bytes"]
    for other in ("serialized", FULL_PROMPT):
        lines += ["", f"Batched LoRA-Gen over {other}, requests/s: "
                  + ", ".join(f"{c} clients {s}x" for c, s in result[f"speedup_batched_over_{other}"].items())]
    lines += [
        "",
        f"Memory per tenant: LoRA-Gen keeps its adapter, {memory['adapter'] / 2**20:.1f} MiB; the prefix-cached full prompt keeps "
        f"its system prompt's KV, {memory[f'{FULL_PROMPT}_kv'] / 2**20:.1f} MiB (fp32).",
        "",
        f"`{FULL_PROMPT}` runs on the base weights (the trained full-prompt LoRA does not ship; a merged LoRA costs "
        "nothing at decode), so its replies differ in length: compare tok/s as well as req/s.",
        "",
    ]
    return "\n".join(lines)


def _mean_prompt(result: dict) -> float:
    serialized = [level for level in result["levels"] if level["server"] == "serialized"]
    return serialized[-1]["mean_prompt_tokens"] if serialized else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.server.loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="GPT4Tools test JSON (default: ../shared/data/gpt4tools/).")
    parser.add_argument("--clients", type=int, nargs="+", default=list(DEFAULT_CLIENTS), help="Concurrency levels.")
    parser.add_argument("--requests-per-client", type=int, default=2, help="Requests each client sends, one after the other.")
    parser.add_argument("--max-tokens", type=int, default=64, help="Decoding budget per request.")
    parser.add_argument("--batch-window-ms", type=float, default=20.0, help="The batched server's window.")
    parser.add_argument("--max-batch", type=int, default=16, help="The batched server's rows per decode.")
    parser.add_argument("--generator", type=Path, default=None, help="Generator checkpoint (default: the shipped one).")
    parser.add_argument("--out", type=Path, default=Path("results/server_throughput"), help="Writes OUT.json and OUT.md.")
    args = parser.parse_args(argv)
    with user_errors():
        config = LoadConfig(args.data, tuple(args.clients), args.requests_per_client, args.max_tokens, args.batch_window_ms,
                            args.max_batch, args.out, args.generator)
        result = run_load(config)
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
