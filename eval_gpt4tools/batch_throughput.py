"""`python -m eval_gpt4tools.batch_throughput`: decode throughput at batch 1, 8 and 16, LoRA-Gen against
the prefix-cached full prompt, at equal output length.

    loragen                    edge prompts (~135 tokens), each row under its own generated adapter,
                               applied functionally (`EdgeModel.complete_batch`)
    full_prompt_prefix_cached  full GPT4Tools prompts (~700 tokens), each row continuing from its own
                               system prompt's cached KV (`prefix_cache.complete_batch_from_prefixes`)

A batch of B holds the first B test items whose tool sets all differ (B tenants). Every row writes
exactly `--new-tokens` tokens (EOS suppressed, no end rule), so both sides do the same work per row
except for what the context costs. Adapters are generated and prefixes prefilled before any timing;
each batch is timed `--repeats` times, the two sides interleaved, and the median wall time is kept.

Two rates per side: end to end (rows x new tokens over the whole `generate`, prefill included) and
decode (rows x the tokens after the first, over the time after the first token came out: the decode
phase alone, which is what a server's steady state runs at). The prefill is the prompt's (LoRA-Gen) or
the rest after the cached prefix (full prompt); copying the prefixes into the batch's cache is not timed.

`--edge-weights w8a16` runs both sides on the int8 weight-only copy (bf16 activations and KV,
loragen_core/int8_weight_only.py); the default is the exact fp32 model.

KV per request is what one row holds at the end of its decode: layers x 2 x KV heads x head size x
bytes per value (4 fp32, 2 bf16) x (prompt + new tokens). For the prefix-cached side the prefix is stored once per
tenant (`prefix_kv_bytes`) and copied into the batch for each request.

Why the ratio is what it is. Both sides run the same weights over the same number of rows, so part
of every decode step is work they share; only the context (and LoRA-Gen's per-row adapters) differs.
A third, timed side measures that shared part: `weights_only`, the same batch decoding from a
one-token prompt with no adapter (no context to attend to, no KV to read). Its decode rate over the
full prompt's is the ceiling of the decode ratio: what LoRA-Gen would reach if its prompt and adapter
cost nothing. `bytes_per_decode_step` models a memory-bound step (the edge weights once, plus per row
its KV over the mean context and, for LoRA-Gen, its adapter's A and B); it explains batch 1, but at
batch 16 the weight GEMMs are compute-bound on a 2-core CPU, and the ceiling is the better guide.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from loragen_core.atomic import write_json_and_markdown
from loragen_core.errors import say, user_errors
from loragen_core.prefix_cache import KV_CACHES
from tools.gpt4tools_prompt import split_prompt

DEFAULT_BATCHES = (1, 8, 16)
DEFAULT_OUT = Path("results/batch_throughput")


@dataclass(frozen=True)
class ThroughputConfig:
    data: Path | None = None
    batches: tuple[int, ...] = DEFAULT_BATCHES
    new_tokens: int = 32
    repeats: int = 2
    out: Path = DEFAULT_OUT
    generator: Path | None = None
    edge_weights: str = "fp32"  # or w8a16 (both sides); the dynamic int8 formats couple a batch's rows
    kv_cache: str = "dynamic"  # or static (both sides): preallocated KV written in place, as a serving engine's

    def __post_init__(self) -> None:
        if self.kv_cache not in KV_CACHES:
            raise ValueError(f"--kv-cache must be one of {', '.join(KV_CACHES)}, not {self.kv_cache!r}.")
        if self.edge_weights not in ("fp32", "w8a16"):
            raise ValueError(f"--edge-weights must be fp32 or w8a16, not {self.edge_weights!r}.")
        if not self.batches or min(self.batches) < 1 or self.new_tokens < 1 or self.repeats < 1:
            raise ValueError("--batches, --new-tokens and --repeats must be positive.")


@dataclass
class Side:
    seconds: list[float]
    tokens_per_s: float  # end to end, prefill included
    prefill_seconds: float  # median time to the first new token
    decode_tokens_per_s: float  # after the first token
    mean_prompt_tokens: float
    kv_bytes_per_request: int
    bytes_per_decode_step: int  # weights + per-row KV (+ per-row adapter): what a memory-bound step reads


def kv_bytes_per_token(model_config, bytes_per_value: int = 4) -> int:
    heads = getattr(model_config, "num_key_value_heads", None) or model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // model_config.num_attention_heads
    return model_config.num_hidden_layers * 2 * heads * head_dim * bytes_per_value


def bytes_per_decode_step(weight_bytes: int, batch: int, kv_bytes_per_token: int, mean_context_tokens: float,
                          adapter_bytes: int = 0) -> int:
    """Bytes one decode step reads: the weights once, and each row's KV over its mean context and its own adapter."""
    return int(weight_bytes + batch * (kv_bytes_per_token * mean_context_tokens + adapter_bytes))


def run_throughput(config: ThroughputConfig, runtime=None, write: bool = True) -> dict:
    from agent import LoRAGenRuntime
    from agent.server.loadtest import distinct_tool_sets
    from loragen_core import GeneratedLoRA

    from loragen_core.machine import machine_info
    from .data import load_test_items
    from loragen_core.prefix_cache import PrefixCacheStore, cache_nbytes, complete_batch_from_prefixes, split_chat_prompt

    machine = machine_info()  # the load average before any work
    items = distinct_tool_sets(load_test_items(config.data), max(config.batches))
    if runtime is None:
        fp32_default = config.generator is None and config.edge_weights == "fp32"
        runtime = LoRAGenRuntime.default() if fp32_default else LoRAGenRuntime.from_checkpoint(config.generator, edge_weights=config.edge_weights)
    edge = runtime.edge
    parts = [split_prompt(item["instruction"]) for item in items]
    say(f"generating {len(items)} adapters and prefilling {len(items)} system prompts (not timed)")
    adapters = [runtime.adapter_for(p.system_prompt).adapter for p in parts]
    store = PrefixCacheStore(edge.decode_model)  # the KV of the model that decodes (bf16 under w8a16)
    with edge.lock:
        if edge.active_adapter is not None:
            edge.reset()  # both sides decode on the base weights; LoRA-Gen's adapters applied per row
        for item in items:
            store.prefill(split_chat_prompt(edge.tokenizer, item["instruction"]))
    per_token = kv_bytes_per_token(edge.model.config, next(edge.decode_model.parameters()).element_size())
    # parameters() lists a tied embedding once; the LM head reads all of it every step.
    weight_bytes = sum(p.numel() * p.element_size() for p in edge.decode_model.parameters())
    weight_bytes += sum(b.numel() * b.element_size() for b in edge.decode_model.buffers())  # int8 weights live in buffers

    levels = []
    for batch in config.batches:
        edge_prompts = [p.edge_prompt for p in parts[:batch]]
        full_prompts = [item["instruction"] for item in items[:batch]]
        stacked = GeneratedLoRA.stack(adapters[:batch])
        runs: dict[str, list] = {"loragen": [], "full_prompt_prefix_cached": [], "weights_only": []}
        one_token = edge.chat_input_ids("")[:, :1].repeat(batch, 1)  # the shared work: no context, no adapter
        for _ in range(config.repeats):
            with edge.lock:
                runs["loragen"].append(edge.complete_batch(edge_prompts, adapter=stacked, max_new_tokens=config.new_tokens,
                                                           exact_length=True, kv_cache=config.kv_cache))
                runs["full_prompt_prefix_cached"].append(complete_batch_from_prefixes(
                    edge, store, full_prompts, config.new_tokens, exact_length=True, kv_cache=config.kv_cache))
                runs["weights_only"].append(edge.decode_rows(one_token, torch.ones_like(one_token), [1] * batch, config.new_tokens,
                                                             exact_length=True, kv_cache=config.kv_cache))
        sides = {}
        for name, repeats in runs.items():
            seconds = [r[0].seconds for r in repeats]
            prefill = [r[0].first_token_seconds for r in repeats]
            decode = [total - first for total, first in zip(seconds, prefill)]
            prompt_tokens = [c.prompt_tokens for c in repeats[0]]
            assert all(c.new_tokens == config.new_tokens for r in repeats for c in r), "every row writes the same length"
            sides[name] = Side(
                seconds=[round(s, 3) for s in seconds],
                tokens_per_s=round(batch * config.new_tokens / statistics.median(seconds), 2),
                prefill_seconds=round(statistics.median(prefill), 3),
                decode_tokens_per_s=round(batch * (config.new_tokens - 1) / statistics.median(decode), 2)
                if config.new_tokens > 1 else float("nan"),
                mean_prompt_tokens=round(statistics.fmean(prompt_tokens), 1),
                kv_bytes_per_request=int(per_token * (statistics.fmean(prompt_tokens) + config.new_tokens)),
                bytes_per_decode_step=bytes_per_decode_step(
                    weight_bytes, batch, per_token, statistics.fmean(prompt_tokens) + config.new_tokens / 2,
                    adapters[0].nbytes if name == "loragen" else 0),
            )
        lg, fp, shared = sides["loragen"], sides["full_prompt_prefix_cached"], sides["weights_only"]
        ceiling = round(shared.decode_tokens_per_s / fp.decode_tokens_per_s, 2)
        ratio = round(lg.tokens_per_s / fp.tokens_per_s, 2)
        decode_ratio = round(lg.decode_tokens_per_s / fp.decode_tokens_per_s, 2)
        bytes_ratio = round(fp.bytes_per_decode_step / lg.bytes_per_decode_step, 2)
        levels.append({"batch": batch, "loragen_over_prefix_cached": ratio, "decode_loragen_over_prefix_cached": decode_ratio,
                       "decode_ratio_predicted_by_bytes": bytes_ratio, "decode_ratio_ceiling": ceiling,
                       **{k: asdict(v) for k, v in sides.items()}})
        say(f"batch {batch:>2}: end to end loragen {lg.tokens_per_s:.1f} tok/s, prefix-cached full prompt "
            f"{fp.tokens_per_s:.1f} tok/s ({ratio}x); decode phase {lg.decode_tokens_per_s:.1f} vs "
            f"{fp.decode_tokens_per_s:.1f} tok/s ({decode_ratio}x; the bytes read per step predict {bytes_ratio}x; "
            f"with no context and no adapter the same batch decodes at {shared.decode_tokens_per_s:.1f} tok/s, a ceiling of {ceiling}x)")
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "machine": machine,
        "trained_generator": runtime.trained,
        "kv_bytes_per_token": per_token,
        "weight_bytes": weight_bytes,
        "adapter_bytes": adapters[0].nbytes,
        "prefix_kv_bytes_mean": int(statistics.fmean(cache_nbytes(c) for c in store.caches.values())),
        "levels": levels,
    }
    if write:
        write_json_and_markdown(config.out, result, markdown(result))
    return result


def markdown(result: dict) -> str:
    config, machine = result["config"], result["machine"]
    lines = [
        "# Decode throughput at batch scale: LoRA-Gen vs the prefix-cached full prompt",
        "",
        f"`python -m eval_gpt4tools.batch_throughput{' --edge-weights ' + config['edge_weights'] if config.get('edge_weights', 'fp32') != 'fp32' else ''}"
        f"{' --kv-cache ' + config['kv_cache'] if config.get('kv_cache', 'dynamic') != 'dynamic' else ''}` "
        f"(edge weights {config.get('edge_weights', 'fp32')} and a {config.get('kv_cache', 'dynamic')} KV cache on both sides; "
        f"{config['new_tokens']} new tokens per row, exactly; median of "
        f"{config['repeats']} interleaved runs; every row a different tool set).",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, torch threads {machine.get('torch_default_threads', '?')}, "
        f"load average before the run {machine.get('load_average_at_start', '?')}.",
        "",
        "| batch | end to end tok/s: loragen | full prompt (prefix cached) | ratio | decode phase tok/s: loragen | "
        "full prompt | ratio | ratio the bytes per step predict | prefill s: loragen | full prompt (rest after the prefix) | "
        "decode tok/s with no context and no adapter (the shared work) | ceiling of the decode ratio | "
        "prompt tokens: loragen | full prompt | KV per request, loragen (MiB) | KV per request, full prompt (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in result["levels"]:
        lg, fp = level["loragen"], level["full_prompt_prefix_cached"]
        decode = (f"{lg['decode_tokens_per_s']:.1f} | {fp['decode_tokens_per_s']:.1f} | {level['decode_loragen_over_prefix_cached']}x"
                  if "decode_tokens_per_s" in lg else "– | – | –")  # runs before the decode phase was timed
        predicted = f"{level['decode_ratio_predicted_by_bytes']}x" if "decode_ratio_predicted_by_bytes" in level else "–"
        prefill = f"{lg['prefill_seconds']:.2f} | {fp['prefill_seconds']:.2f}" if "prefill_seconds" in lg else "– | –"
        shared = (f"{level['weights_only']['decode_tokens_per_s']:.1f} | {level['decode_ratio_ceiling']}x"
                  if "weights_only" in level else "– | –")  # runs before the shared work was timed
        lines.append(
            f"| {level['batch']} | {lg['tokens_per_s']:.1f} | {fp['tokens_per_s']:.1f} | {level['loragen_over_prefix_cached']}x | "
            f"{decode} | {predicted} | {prefill} | {shared} | {lg['mean_prompt_tokens']} | {fp['mean_prompt_tokens']} | "
            f"{lg['kv_bytes_per_request'] / 2**20:.1f} | {fp['kv_bytes_per_request'] / 2**20:.1f} |"
        )
    lines += [
        "",
        f"Kept per tenant: LoRA-Gen's adapter {result['adapter_bytes'] / 2**20:.1f} MiB; the full prompt's cached prefix "
        f"{result['prefix_kv_bytes_mean'] / 2**20:.1f} MiB of KV ({result['kv_bytes_per_token'] / 1024:.1f} KiB per token).",
    ]
    if "weight_bytes" in result:
        lines.append(
            f"A decode step reads the edge weights once ({result['weight_bytes'] / 2**20:.0f} MiB) and, per row, its KV and "
            "(LoRA-Gen) its own adapter; the predicted ratio is the full prompt's bytes per step over LoRA-Gen's, right where "
            "the step is memory-bound. The ceiling is the shared work's decode rate (the same batch from a one-token prompt, "
            "no adapter) over the full prompt's: the decode ratio LoRA-Gen would reach if its prompt and adapter cost nothing.")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval_gpt4tools.batch_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="GPT4Tools test JSON (default: ../shared/data/gpt4tools/).")
    parser.add_argument("--batches", type=int, nargs="+", default=list(DEFAULT_BATCHES), help="Batch sizes (tenants per decode).")
    parser.add_argument("--new-tokens", type=int, default=32, help="Tokens every row writes.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed runs per batch size and side; the median is kept.")
    parser.add_argument("--generator", type=Path, default=None, help="Generator checkpoint (default: the shipped one).")
    parser.add_argument("--edge-weights", choices=("fp32", "w8a16"), default="fp32",
                        help="Both sides' edge weights: fp32 (exact, default) or w8a16 (int8 weights, bf16 activations and KV).")
    parser.add_argument("--kv-cache", choices=KV_CACHES, default="dynamic",
                        help="Both sides' KV cache: dynamic (transformers' default, grown by concatenation, so every step "
                             "copies the batch's KV) or static (preallocated and written in place, as vLLM or SGLang hold it).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Writes OUT.json and OUT.md.")
    args = parser.parse_args(argv)
    with user_errors():
        config = ThroughputConfig(args.data, tuple(args.batches), args.new_tokens, args.repeats, args.out, args.generator,
                                  args.edge_weights, args.kv_cache)
        print(markdown(run_throughput(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
