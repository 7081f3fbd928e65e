"""`python -m eval_gpt4tools bench`: what it costs to serve a tool-using agent nine ways.

On the same GPT4Tools items, in one process, interleaved (item i serves the modes in an order rotated
by i, so machine drift hits all modes alike):

    icl               the edge model reads the full prompt (system prompt + user part)
    icl_prefix_cache  the full prompt, with the system-prompt prefix's KV cache computed once per
                      distinct system prompt and reused (loragen_core/prefix_cache.py explains the cut)
    loragen           the adapter generated from the system prompt, merged; edge prompt only
    peft_unmerged     the same adapter loaded unmerged through peft; edge prompt only
    loragen_int8      the same adapter attached to an int8 copy of the edge model (loragen_core/int8.py);
                      edge prompt only; not the same tokens (its SR: `run --edge-weights int8`)
    loragen_int8_mlp  the same, with only the MLPs in int8 (attention and lm_head fp32; `--edge-weights int8-mlp`)
    icl_w8a16, icl_prefix_cache_w8a16, loragen_w8a16
                      icl, icl_prefix_cache and loragen again on the int8 weight-only copy (bf16
                      activations and KV, loragen_core/int8_weight_only.py; `--edge-weights w8a16`), the
                      adapter attached through fixed slots (loragen_core/adapter_slots.py): the three
                      compared at equal weights, each with the `--w8a16-decoder` (default compiled:
                      these modes are not the exact path anyway, so the tuning's exactness rule does
                      not bind them; `run --edge-weights w8a16 --edge-decoder compiled` gives the SR)

Every mode decodes with `EdgeModel.complete`'s rule (timed_generation.py). A request is timed from its
text to its decoded answer; specialising for the item's system prompt (prefix prefill, adapter
generation, merge, peft load) happens before and is timed apart, as it is paid once per tool set.
Since the adapter changes the text, every mode writes exactly `--equal-length` tokens (default 40, EOS
suppressed), so the latency ratios compare the same weights doing the same work; `--free-length` lets
each mode write what it writes (an extra: the untrained full prompt writes ~20 tokens, a trained mode
~87). Time to first token and per-token decode speed are reported apart from total latency.

Phases: (1) decode tuning: profile decoding and time each KV-cache strategy × thread count on warm-up
items, keep the fastest that gives the baseline's exact tokens; (2) warm-up, then the interleaved run;
(3) LoRA fine-tuning speed for the "specialise a new tool set" comparison (a short run of
`python -m loragen_core.train --method lora`); (4) bench.json, bench.md, bench.png.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import PeftModel
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file

from loragen_core import AdapterService, GeneratedLoRA, LoRAGenerator, load_causal_lm, load_default_generator, load_generator
from loragen_core.adapter import PEFT_WEIGHTS_FILE
from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS, EdgeModel
from loragen_core.errors import say
from loragen_core.int8 import int8_nbytes
from loragen_core.int8_weight_only import int8_weight_only_nbytes
from loragen_core.machine import machine_info
from tools import split_prompt

from .bench_report import MODES, summarize, write_bench_reports
from .data import load_test_items, stratified_subset
from loragen_core.prefix_cache import PrefixCacheStore, cache_nbytes, split_chat_prompt
from .timed_generation import DECODERS, Decoder, TimedCompletion

FINETUNE_BATCH = 8  # the trainer's cpu recipe
DEFAULT_FINETUNE_DATA = Path("runs") / "data" / "gpt4tools-train" / "train.jsonl"


# The output length of every like-for-like bench on file (results/README.md); a trained mode's whole
# GPT4Tools trace is ~87 tokens.
DEFAULT_EQUAL_LENGTH = 40


@dataclass
class BenchConfig:
    out: Path = Path("results")
    data: Path | None = None
    limit: int = 50
    generator: Path | None = None  # a generator checkpoint; default: the shipped one (or a seeded fresh one)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    # Every mode writes exactly this many tokens (EOS suppressed): end-to-end latency at equal output
    # length, the like-for-like comparison (default). None (`--free-length`): each mode writes what it
    # writes, so the ratios also measure output length (the untrained full prompt writes ~20 tokens, the
    # trained adapter ~87): an extra, not the comparison.
    equal_length: int | None = DEFAULT_EQUAL_LENGTH
    decoders: tuple[str, ...] = DECODERS  # KV-cache strategies the tuning phase tries
    w8a16_decoder: str = "compiled"  # the KV-cache strategy of the three w8a16 modes (not tuned: see the docstring)
    threads: tuple[int, ...] | None = None  # thread counts it tries (default: 1, torch's default, all cores)
    tune_items: int = 2
    finetune_data: Path | None = DEFAULT_FINETUNE_DATA  # None: skip the fine-tuning measurement
    finetune_rows: int = 64
    finetune_steps: int = 6  # steps actually run to measure seconds per step
    finetune_steps_assumed: int = 200  # steps a fine-tune for a new tool set is assumed to need (trainer default)

    def __post_init__(self) -> None:
        if self.equal_length is not None and self.equal_length < 2:
            raise ValueError("--equal-length must be at least 2 (the first token is the TTFT).")
        if self.limit < 1 or self.tune_items < 1:
            raise ValueError("--limit and the number of tuning items must be at least 1.")
        unknown = set(self.decoders) - set(DECODERS)
        if unknown or not self.decoders or "dynamic" not in self.decoders:
            raise ValueError(f"--decoders must include dynamic (the baseline) and be among {DECODERS}.")
        if self.w8a16_decoder not in DECODERS:
            raise ValueError(f"--w8a16-decoder must be one of {DECODERS}.")


# ----------------------------------------------------------------------------------------- memory


def _proc_status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak resident memory over a block: Linux lets a process reset its high-water mark (VmHWM)."""

    def __enter__(self) -> "PeakRSS":
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # then VmHWM is the process's lifetime peak, still an upper bound
        self.before_mb = (_proc_status_kb("VmRSS") or 0) / 1024
        return self

    def __exit__(self, *exc) -> None:
        self.peak_mb = (_proc_status_kb("VmHWM") or 0) / 1024
        self.delta_mb = max(self.peak_mb - self.before_mb, 0.0)


# ----------------------------------------------------------------------------------------- modes


@dataclass
class Specialization:
    """What one item's system prompt costs each approach, paid before its requests. An item whose
    system prompt an earlier item had finds its adapter and prefix cached (`repeat`)."""

    repeat: bool
    adapter_generation_s: float
    adapter_from_cache_s: float
    adapter_bytes: int
    adapter_file_bytes: int
    merge_s: float
    merge_anon_bytes: int  # anonymous resident memory the merge added (RssAnon after - before)
    restore_s: float  # back to the base weights
    remerge_s: float  # the same adapter merged again after the restore
    peft_load_s: float
    int8_attach_s: float
    w8a16_attach_s: float
    int8_weight_bytes: int
    int8_mlp_weight_bytes: int
    prefix_prefill_s: float
    prefix_tokens: int
    prefix_cache_bytes: int
    w8a16_prefix_cache_bytes: int
    w8a16_model_bytes: int


class Servers:
    """The models behind the nine modes: base (icl, icl_prefix_cache), merged (loragen), peft, int8, int8-mlp,
    and w8a16 (its icl, icl_prefix_cache, and loragen with the item's adapter in its slots)."""

    def __init__(self, generator: LoRAGenerator, config: BenchConfig, work: Path):
        edge_name = generator.config.edge_model
        self.config = config
        self.work = work
        self.base = EdgeModel(load_causal_lm(edge_name))
        self.merged = EdgeModel(load_causal_lm(edge_name))
        self.peft_base = load_causal_lm(edge_name).model
        self.int8 = EdgeModel(load_causal_lm(edge_name), weights="int8")
        self.int8_mlp = EdgeModel(load_causal_lm(edge_name), weights="int8-mlp")
        self.w8a16 = EdgeModel(load_causal_lm(edge_name), weights="w8a16")  # icl_w8a16, icl_prefix_cache_w8a16: never specialised
        self.w8a16_lora = EdgeModel(load_causal_lm(edge_name), weights="w8a16")  # loragen_w8a16: the item's adapter attached
        self.prefixes_w8a16 = PrefixCacheStore(self.w8a16.decode_model)  # bf16 KV
        self.w8a16_model_bytes = int8_weight_only_nbytes(self.w8a16.decode_model)
        self.int8_weight_bytes = int8_nbytes(self.int8.decode_model)  # fixed for the process
        self.int8_mlp_weight_bytes = int8_nbytes(self.int8_mlp.decode_model)
        self.peft: PeftModel | None = None
        self.service = AdapterService(generator, cache_dir=work / "adapter_cache")
        self.prefixes = PrefixCacheStore(self.base.model)
        self.decoders: dict[str, Decoder] = {}

    def use_decoder(self, kind: str, full_length: int, edge_length: int) -> None:
        """One decoder per model; the static cache is sized for the longest prompt that model sees."""
        tokenizer = self.base.tokenizer
        self.decoders["base"] = self.base_decoder(kind, full_length)
        self.decoders["merged"] = Decoder(self.merged.model, tokenizer, kind, edge_length)
        self.decoders["peft"] = Decoder(self.peft, tokenizer, kind, edge_length)
        # torch.compile is not tried on the quantised modules: the int8 copy gets the cache, not the graph
        quantised_kind = "static" if kind == "compiled" else kind
        self.decoders["int8"] = Decoder(self.int8.decode_model, tokenizer, quantised_kind, edge_length)
        self.decoders["int8_mlp"] = Decoder(self.int8_mlp.decode_model, tokenizer, quantised_kind, edge_length)
        # The edge prompt gets its own, shorter, cache, as in EdgeModel's length buckets.
        w8a16_kind = self.config.w8a16_decoder
        self.decoders["w8a16"] = Decoder(self.w8a16.decode_model, tokenizer, w8a16_kind, full_length)
        self.decoders["w8a16_edge"] = Decoder(self.w8a16_lora.decode_model, tokenizer, w8a16_kind, edge_length)

    def base_decoder(self, kind: str, full_length: int) -> Decoder:
        key = f"base:{kind}"
        if key not in self.decoders:  # kept, so a compiled graph and its cache are reused
            self.decoders[key] = Decoder(self.base.model, self.base.tokenizer, kind, full_length)
        return self.decoders[key]

    def specialize(self, item: dict, index: int) -> Specialization:
        system_prompt = split_prompt(item["instruction"]).system_prompt
        cold = self.service.adapter_for(system_prompt)  # the benchmark's cache starts empty
        cached = self.service.adapter_for(system_prompt)
        adapter = cold.adapter
        anon_before = _proc_status_kb("RssAnon") or 0
        merge_s = self.merged.specialize(adapter, cold.adapter_hash)
        merge_anon_bytes = ((_proc_status_kb("RssAnon") or 0) - anon_before) * 1024
        start = time.perf_counter()
        self.merged.reset()
        restore_s = time.perf_counter() - start
        remerge_s = self.merged.specialize(adapter, cold.adapter_hash)
        peft_load_s, file_bytes = self._load_into_peft(adapter, index)
        int8_attach_s = self.int8.specialize(adapter, cold.adapter_hash)
        self.int8_mlp.specialize(adapter, cold.adapter_hash)
        w8a16_attach_s = self.w8a16_lora.specialize(adapter, cold.adapter_hash)  # requantises the int8 weights (adapter_slots.py)

        split = split_chat_prompt(self.base.tokenizer, item["instruction"])
        start = time.perf_counter()
        prefix = self.prefixes.prefill(split)
        prefill_s = time.perf_counter() - start
        prefix_w8a16 = self.prefixes_w8a16.prefill(split)
        return Specialization(
            repeat=cold.cache_hit,
            adapter_generation_s=cold.seconds,
            adapter_from_cache_s=cached.seconds,
            adapter_bytes=adapter.nbytes,
            adapter_file_bytes=file_bytes,
            merge_s=merge_s,
            merge_anon_bytes=merge_anon_bytes,
            restore_s=restore_s,
            remerge_s=remerge_s,
            peft_load_s=peft_load_s,
            int8_attach_s=int8_attach_s,
            w8a16_attach_s=w8a16_attach_s,
            int8_weight_bytes=self.int8_weight_bytes,
            int8_mlp_weight_bytes=self.int8_mlp_weight_bytes,
            prefix_prefill_s=prefill_s,
            prefix_tokens=split.prefix_length,
            prefix_cache_bytes=cache_nbytes(prefix),
            w8a16_prefix_cache_bytes=cache_nbytes(prefix_w8a16),
            w8a16_model_bytes=self.w8a16_model_bytes,
        )

    def _load_into_peft(self, adapter: GeneratedLoRA, index: int) -> tuple[float, int]:
        """Write the adapter as the PEFT directory this project ships, and load it unmerged. After the
        first, adapters are swapped by loading their weights in place (the module tree, and so any
        compiled graph, stays the same)."""
        directory = adapter.save_pretrained(self.work / "peft" / f"item{index}", self.merged.directory)
        start = time.perf_counter()
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self.peft_base, directory)
            self.peft.eval()
        else:
            set_peft_model_state_dict(self.peft, load_file(directory / PEFT_WEIGHTS_FILE))
        seconds = time.perf_counter() - start
        return seconds, (directory / PEFT_WEIGHTS_FILE).stat().st_size

    def serve(self, mode: str, item: dict) -> TimedCompletion:
        """One timed request: from the prompt text to the decoded answer."""
        exact = self.config.equal_length is not None
        budget = self.config.equal_length if exact else self.config.max_new_tokens
        started = time.perf_counter()
        if mode == "icl":
            decoder = self.decoders["base"]
            return decoder.generate(self.base.chat_input_ids(item["instruction"]), started, budget, decoder.fresh_cache(), exact)
        if mode == "icl_w8a16":
            decoder = self.decoders["w8a16"]
            return decoder.generate(self.base.chat_input_ids(item["instruction"]), started, budget, decoder.fresh_cache(), exact)
        if mode in ("icl_prefix_cache", "icl_prefix_cache_w8a16"):
            decoder, store = (self.decoders["base"], self.prefixes) if mode == "icl_prefix_cache" else (self.decoders["w8a16"], self.prefixes_w8a16)
            split = split_chat_prompt(self.base.tokenizer, item["instruction"], verify=False)
            cache = store.continuation(store.prefill(split), into=decoder.static_cache)
            return decoder.generate(split.input_ids, started, budget, cache, exact)
        edge_text = split_prompt(item["instruction"]).edge_prompt
        if mode == "loragen_w8a16":
            decoder = self.decoders["w8a16_edge"]
            return decoder.generate(self.merged.chat_input_ids(edge_text), started, budget, decoder.fresh_cache(), exact)
        decoder = self.decoders[{"loragen": "merged", "peft_unmerged": "peft", "loragen_int8": "int8", "loragen_int8_mlp": "int8_mlp"}[mode]]
        return decoder.generate(self.merged.chat_input_ids(edge_text), started, budget, decoder.fresh_cache(), exact)


# ----------------------------------------------------------------------------------------- tuning


def _round_up(n: int, multiple: int = 64) -> int:
    return -(-n // multiple) * multiple


def _top_ops(model_call, rows: int = 8) -> list[dict]:
    """Where decode time goes: the operators with the most self CPU time over one request."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        model_call()
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {
            "op": "compiled graph (fused ops)" if "CompiledFxGraph" in e.key else e.key,
            "self_cpu_ms": round(e.self_cpu_time_total / 1000, 1),
            "share": round(e.self_cpu_time_total / total, 3),
        }
        for e in events[:rows]
    ]


def tune_decoding(servers: Servers, items: list[dict], config: BenchConfig, full_length: int) -> dict:
    """Time each decoder × thread count on the full prompt (where decoding is longest), and keep the
    fastest whose tokens equal the baseline's: EdgeModel.complete's dynamic cache at torch's default
    thread count."""
    default_threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = tuple(config.threads or sorted({1, default_threads, cores}))
    baseline = ("dynamic", default_threads)
    candidates = [baseline] + [(k, t) for k in config.decoders for t in threads if (k, t) != baseline]
    prompts = [servers.base.chat_input_ids(item["instruction"]) for item in items]

    def run(kind: str, count: int, prompts: list[torch.Tensor]) -> list[TimedCompletion]:
        torch.set_num_threads(count)
        decoder = servers.base_decoder(kind, full_length)
        return [decoder.generate(ids, time.perf_counter(), config.max_new_tokens, decoder.fresh_cache()) for ids in prompts]

    variants, baseline_tokens = [], None
    for kind, count in candidates:
        say(f"decode tuning: {kind} cache, {count} thread(s)")
        warm_start = time.perf_counter()
        run(kind, count, prompts)  # warm-up; compiles the decode step for `compiled`
        warmup_s = time.perf_counter() - warm_start
        done = run(kind, count, prompts)
        tokens = [c.token_ids for c in done]
        baseline_tokens = baseline_tokens or tokens
        decode_s = sum(c.latency_s - c.ttft_s for c in done)
        variants.append({
            "decoder": kind,
            "threads": count,
            "same_tokens_as_baseline": tokens == baseline_tokens,
            "decode_tokens_per_s": sum(c.new_tokens - 1 for c in done) / decode_s if decode_s > 0 else None,
            "mean_ttft_s": statistics.fmean(c.ttft_s for c in done),
            "mean_latency_s": statistics.fmean(c.latency_s for c in done),
            "warmup_s": warmup_s,
        })
    before = variants[0]
    best = min((v for v in variants if v["same_tokens_as_baseline"]), key=lambda v: v["mean_latency_s"])
    profile_before = _top_ops(lambda: run(*baseline, prompts[:1]))
    profile_after = _top_ops(lambda: run(best["decoder"], best["threads"], prompts[:1]))
    return {
        "variants": variants,
        "before": before,
        "chosen": best,
        "profile_before": profile_before,
        "profile_after": profile_after,
        "tuning_items": [item["id"] for item in items],
    }


# ----------------------------------------------------------------------------------------- fine-tuning


def measure_lora_finetuning(config: BenchConfig, edge_model: str, threads: int, work: Path) -> dict:
    """Seconds per step of the project's trainer (`--method lora`, edge prompts, cpu recipe) on a small
    set, run as its own process after the latency runs, and the wall time that implies for a fine-tune
    of `finetune_steps_assumed` steps. Data creation for the new tool set is not counted."""
    if config.finetune_data is None:
        return {"skipped": "no --finetune-data"}
    if not Path(config.finetune_data).is_file():
        return {"skipped": f"{config.finetune_data} not found (build it with `python -m eval_gpt4tools build-data`)"}
    rows = Path(config.finetune_data).read_text().splitlines()[: config.finetune_rows]
    data = work / "finetune.jsonl"
    data.write_text("\n".join(rows) + "\n")
    out = work / "finetune_run"
    command = [
        sys.executable, "-m", "loragen_core.train", "--method", "lora", "--prompt", "edge", "--data", str(data),
        "--out", str(out), "--steps", str(config.finetune_steps), "--batch-size", str(FINETUNE_BATCH),
        "--save-every", str(config.finetune_steps + 1), "--edge-model", edge_model,
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall_s = time.perf_counter() - start
    if result.returncode != 0:
        return {"skipped": f"trainer failed (exit {result.returncode}): {result.stderr.strip()[-500:]}"}
    steps = [json.loads(line)["seconds"] for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    per_step = statistics.median(steps[1:] if len(steps) > 1 else steps)  # the first step also warms up
    fixed_s = wall_s - sum(steps)  # start-up, loading, saving
    return {
        "command": " ".join(command[1:]),
        "rows": len(rows),
        "steps_run": len(steps),
        "batch_size": FINETUNE_BATCH,
        "s_per_step_median": per_step,
        "wall_s_measured": wall_s,
        "fixed_overhead_s": fixed_s,
        "steps_assumed": config.finetune_steps_assumed,
        "estimated_s_per_tool_set": fixed_s + per_step * config.finetune_steps_assumed,
    }


# ----------------------------------------------------------------------------------------- the run


def _load_generator(config: BenchConfig) -> tuple[LoRAGenerator, bool]:
    return (load_generator(config.generator), True) if config.generator else load_default_generator()


def run_bench(config: BenchConfig, generator: LoRAGenerator | None = None, write: bool = True) -> dict:
    """Run all phases; returns the results dict (also written to config.out unless write=False).
    `generator`: use this one instead of loading `config.generator` (its training state then unknown)."""
    machine = machine_info()
    trained = None
    if generator is None:
        generator, trained = _load_generator(config)
    # Items past `limit` in the same stratified order tune the decoder and warm up; they are not measured.
    chosen = stratified_subset(load_test_items(config.data), config.limit + max(config.tune_items, 1))
    items, spare = chosen[: config.limit], chosen[config.limit :]
    tuning = (spare + items)[: config.tune_items]

    with tempfile.TemporaryDirectory(prefix="loragen-bench-") as scratch:
        work = Path(scratch)
        servers = Servers(generator, config, work)
        all_items = items + spare
        budget = max(config.max_new_tokens, config.equal_length or 0)
        full_length = _round_up(max(servers.base.count_prompt_tokens(i["instruction"]) for i in all_items) + budget)
        edge_length = _round_up(max(servers.base.count_prompt_tokens(split_prompt(i["instruction"]).edge_prompt) for i in all_items) + budget)
        decoding = tune_decoding(servers, tuning, config, full_length)
        torch.set_num_threads(decoding["chosen"]["threads"])

        # Warm-up on an item that is not measured: loads peft, pays the first merge's copy of the
        # pristine weights, compiles where the decoder compiles.
        warm = spare[0] if spare else items[0]
        servers.specialize(warm, index=-1)
        servers.use_decoder(decoding["chosen"]["decoder"], full_length, edge_length)
        for mode in MODES:
            servers.serve(mode, warm)

        records = []
        for index, item in enumerate(items):
            spec = servers.specialize(item, index)
            order = MODES[index % len(MODES):] + MODES[: index % len(MODES)]
            served = {}
            for mode in order:
                with PeakRSS() as memory:
                    completion = servers.serve(mode, item)
                served[mode] = {
                    "ttft_s": completion.ttft_s,
                    "latency_s": completion.latency_s,
                    "prompt_tokens": completion.prompt_tokens,
                    "new_tokens": completion.new_tokens,
                    "decode_tokens_per_s": completion.decode_tokens_per_s,
                    "peak_rss_mb": memory.peak_mb,
                    "peak_rss_delta_mb": memory.delta_mb,
                    "token_ids": list(completion.token_ids),
                    "text": completion.text,
                }
            records.append({"id": item["id"], "order": list(order), "specialization": asdict(spec), "modes": served})
            say(f"[{index + 1}/{len(items)}] " + "  ".join(f"{m} {served[m]['latency_s']:.2f}s" for m in MODES))

        say("LoRA fine-tuning speed (a short trainer run)")
        finetune = measure_lora_finetuning(config, generator.config.edge_model, decoding["chosen"]["threads"], work)

    results = summarize(records, decoding, finetune, machine, {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}, trained)
    if write:
        write_bench_reports(results, config.out)
    return results
