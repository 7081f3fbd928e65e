"""The benchmark's results: summary statistics, then bench.json, bench.md (tables) and bench.png."""

from __future__ import annotations

import json
import operator
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from .runner import _percentile  # noqa: E402

MODES = ("icl", "icl_prefix_cache", "loragen", "peft_unmerged", "loragen_int8", "loragen_int8_mlp",
         "icl_w8a16", "icl_prefix_cache_w8a16", "loragen_w8a16")

GENERATOR_STATE = {
    True: "trained",
    False: "UNTRAINED (seeded fresh): its adapters do not teach the tools yet, which changes what loragen writes",
    None: "supplied by the caller",
}
CHECKS = {">=": operator.ge, "<=": operator.le}
TARGETS = {  # the targets on the 2-core CPU with the default model
    "ttft_icl_over_loragen": 5.0,
    "latency_icl_over_loragen": 1.5,
    "latency_prefix_cache_over_loragen": 1.2,
    "adapter_generation_s": 1.0,
    "adapter_from_cache_s": 0.1,
    "merge_s": 0.1,
    "restore_s": 0.1,
    "remerge_s": 0.1,
    "decode_tokens_per_s": 45.0,  # batch 1, the edge prompt
}


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "p90": _percentile(values, 0.9), "min": min(values), "max": max(values)}


def summarize(records: list[dict], decoding: dict, finetune: dict, machine: dict, config: dict, trained: bool) -> dict:
    """Per-mode latency and memory, ratios, specialization costs, target checks; per-item records kept."""
    modes = {}
    for mode in MODES:
        rows = [r["modes"][mode] for r in records]
        speeds = [r["decode_tokens_per_s"] for r in rows if r["decode_tokens_per_s"] is not None]
        modes[mode] = {
            "median_ttft_s": statistics.median(r["ttft_s"] for r in rows),
            "p90_ttft_s": _percentile([r["ttft_s"] for r in rows], 0.9),
            "median_latency_s": statistics.median(r["latency_s"] for r in rows),
            "p90_latency_s": _percentile([r["latency_s"] for r in rows], 0.9),
            "median_decode_tokens_per_s": statistics.median(speeds) if speeds else None,
            "mean_prompt_tokens": statistics.fmean(r["prompt_tokens"] for r in rows),
            "mean_new_tokens": statistics.fmean(r["new_tokens"] for r in rows),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
            "peak_rss_delta_mb": max(r["peak_rss_delta_mb"] for r in rows),
        }
    ratios = {
        reference: {
            mode: {
                "ttft": modes[reference]["median_ttft_s"] / modes[mode]["median_ttft_s"],
                "latency": modes[reference]["median_latency_s"] / modes[mode]["median_latency_s"],
            }
            for mode in MODES
        }
        for reference in ("icl", "icl_prefix_cache", "icl_w8a16", "icl_prefix_cache_w8a16")
    }
    specs = [r["specialization"] for r in records]
    new_specs = [s for s in specs if not s["repeat"]] or specs  # a repeated system prompt costs nothing new
    specialization = {
        "distinct_system_prompts": sum(not s["repeat"] for s in specs),
        **{key: _stats([s[key] for s in new_specs])
           for key in ("adapter_generation_s", "merge_s", "restore_s", "remerge_s", "peft_load_s", "prefix_prefill_s",
                       "int8_attach_s", "w8a16_attach_s")},
        "adapter_from_cache_s": _stats([s["adapter_from_cache_s"] for s in specs]),
    }
    memory_per_task = {
        "icl": 0,
        "icl_prefix_cache": statistics.fmean(s["prefix_cache_bytes"] for s in new_specs),
        "loragen": statistics.fmean(s["adapter_bytes"] for s in new_specs),
        # Measured: the merge reads the originals from the memory-mapped weight file (lora_math.py).
        "loragen_merged_extra": statistics.fmean(s["merge_anon_bytes"] for s in new_specs),
        "peft_unmerged": statistics.fmean(s["adapter_bytes"] for s in new_specs),
        "loragen_int8": statistics.fmean(s["adapter_bytes"] for s in new_specs),
        "loragen_int8_mlp": statistics.fmean(s["adapter_bytes"] for s in new_specs),
        "icl_w8a16": 0,
        "icl_prefix_cache_w8a16": statistics.fmean(s["w8a16_prefix_cache_bytes"] for s in new_specs),
        "loragen_w8a16": statistics.fmean(s["adapter_bytes"] for s in new_specs),
        "w8a16_model_bytes": specs[0]["w8a16_model_bytes"],
        "int8_weight_bytes": specs[0]["int8_weight_bytes"],  # once per process, not per task
        "int8_mlp_weight_bytes": specs[0]["int8_mlp_weight_bytes"],
        "adapter_file_bytes": statistics.fmean(s["adapter_file_bytes"] for s in new_specs),
        "mean_prefix_tokens": statistics.fmean(s["prefix_tokens"] for s in new_specs),
    }
    same = lambda a, b: sum(r["modes"][a]["token_ids"] == r["modes"][b]["token_ids"] for r in records)  # noqa: E731
    parity = {
        "icl_prefix_cache_same_tokens_as_icl": f"{same('icl', 'icl_prefix_cache')}/{len(records)}",
        "peft_unmerged_same_tokens_as_loragen": f"{same('loragen', 'peft_unmerged')}/{len(records)}",
        "loragen_int8_same_tokens_as_loragen": f"{same('loragen', 'loragen_int8')}/{len(records)}",
        "loragen_int8_mlp_same_tokens_as_loragen": f"{same('loragen', 'loragen_int8_mlp')}/{len(records)}",
        "icl_prefix_cache_w8a16_same_tokens_as_icl_w8a16": f"{same('icl_w8a16', 'icl_prefix_cache_w8a16')}/{len(records)}",
        "loragen_w8a16_same_tokens_as_loragen": f"{same('loragen', 'loragen_w8a16')}/{len(records)}",
    }
    generation_s = specialization["adapter_generation_s"]["median"] + specialization["merge_s"]["median"]
    new_tool_set = {"loragen_generate_and_merge_s": generation_s, "lora_finetune": finetune}
    if "estimated_s_per_tool_set" in finetune:
        new_tool_set["finetune_over_generation"] = finetune["estimated_s_per_tool_set"] / generation_s
    targets = {
        "ttft_icl_over_loragen": (ratios["icl"]["loragen"]["ttft"], ">=", TARGETS["ttft_icl_over_loragen"]),
        "latency_icl_over_loragen": (ratios["icl"]["loragen"]["latency"], ">=", TARGETS["latency_icl_over_loragen"]),
        "latency_prefix_cache_over_loragen": (
            ratios["icl_prefix_cache"]["loragen"]["latency"], ">=", TARGETS["latency_prefix_cache_over_loragen"]),
        "latency_icl_over_loragen_w8a16_same_weights": (
            ratios["icl_w8a16"]["loragen_w8a16"]["latency"], ">=", TARGETS["latency_icl_over_loragen"]),
        "latency_prefix_cache_over_loragen_w8a16_same_weights": (
            ratios["icl_prefix_cache_w8a16"]["loragen_w8a16"]["latency"], ">=", TARGETS["latency_prefix_cache_over_loragen"]),
        "loragen_ttft_over_prefix_cache": (
            modes["loragen"]["median_ttft_s"] / modes["icl_prefix_cache"]["median_ttft_s"], "<=", 1.0),
        "loragen_latency_over_prefix_cache": (
            modes["loragen"]["median_latency_s"] / modes["icl_prefix_cache"]["median_latency_s"], "<=", 1.0),
        "loragen_adapter_bytes_over_prefix_cache_bytes": (
            memory_per_task["loragen"] / memory_per_task["icl_prefix_cache"], "<=", 1.0),
        "adapter_generation_s": (specialization["adapter_generation_s"]["median"], "<=", TARGETS["adapter_generation_s"]),
        "adapter_from_cache_s": (specialization["adapter_from_cache_s"]["median"], "<=", TARGETS["adapter_from_cache_s"]),
        **{key: (specialization[key]["p90"], "<=", TARGETS[key]) for key in ("merge_s", "restore_s", "remerge_s")},
        **{f"{mode}_decode_tokens_per_s": (modes[mode]["median_decode_tokens_per_s"] or 0.0, ">=", TARGETS["decode_tokens_per_s"])
           for mode in ("loragen", "loragen_int8", "loragen_int8_mlp", "loragen_w8a16")},
    }
    checks = {
        name: {"value": value, "target": f"{op} {bound}", "met": CHECKS[op](value, bound)}
        for name, (value, op, bound) in targets.items()
    }
    return {
        "machine": {**machine, "threads_used": decoding["chosen"]["threads"]},
        "config": config,
        "generator_trained": trained,
        "n_items": len(records),
        "modes": modes,
        "ratios": ratios,
        "specialization": specialization,
        "memory_per_task_bytes": memory_per_task,
        "specialize_new_tool_set": new_tool_set,
        "decoding": decoding,
        "parity": parity,
        "targets": checks,
        "items": records,
    }


# ----------------------------------------------------------------------------------------- files


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def _length_rule(config: dict) -> str:
    if config.get("equal_length"):
        return (f"**Equal output length**: every mode writes exactly {config['equal_length']} tokens (EOS suppressed), "
                "so latency ratios compare the same amount of work.")
    return ("Each mode writes what it writes (up to the budget): latency ratios also reflect output length; "
            "run with `--equal-length N` for the like-for-like comparison.")


def markdown_report(results: dict) -> str:
    m, modes, ratios = results["machine"], results["modes"], results["ratios"]
    spec, memory, decoding = results["specialization"], results["memory_per_task_bytes"], results["decoding"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; torch {m['torch']}, transformers "
        f"{m['transformers']}; threads {m['threads_used']}; load average at start {m['load_average_at_start']}.",
        f"{results['n_items']} GPT4Tools test items, modes interleaved; decoder `{decoding['chosen']['decoder']}` "
        f"(w8a16 modes: `{results['config'].get('w8a16_decoder', 'dynamic')}`); "
        f"generator: {GENERATOR_STATE[results['generator_trained']]}.",
        _length_rule(results["config"]),
        "",
        "| mode | median TTFT (s) | p90 TTFT (s) | median latency (s) | p90 latency (s) | decode tok/s | prompt tokens | new tokens | peak RSS (MB) | peak RSS over start (MB) | TTFT / latency vs icl | vs icl_prefix_cache | vs icl_w8a16 | vs icl_prefix_cache_w8a16 |",
        "|" + "---|" * 14,
    ]
    for mode in MODES:
        row = modes[mode]
        speed = f"{row['median_decode_tokens_per_s']:.1f}" if row["median_decode_tokens_per_s"] else "-"
        vs = lambda ref: f"{ratios[ref][mode]['ttft']:.2f}x / {ratios[ref][mode]['latency']:.2f}x"  # noqa: E731
        lines.append(
            f"| {mode} | {row['median_ttft_s']:.3f} | {row['p90_ttft_s']:.3f} | {row['median_latency_s']:.3f} | "
            f"{row['p90_latency_s']:.3f} | {speed} | {row['mean_prompt_tokens']:.0f} | {row['mean_new_tokens']:.1f} | "
            f"{row['peak_rss_mb']:.0f} | {row['peak_rss_delta_mb']:.0f} | {vs('icl')} | {vs('icl_prefix_cache')} | "
            f"{vs('icl_w8a16')} | {vs('icl_prefix_cache_w8a16')} |"
        )
    lines += [
        "",
        "Ratios are reference ÷ mode (above 1: the mode is faster); compare a mode with the references of its own "
        "weights (fp32 modes with icl and icl_prefix_cache, the _w8a16 modes with theirs). Peak RSS is the whole "
        "process (every mode's models and the generator are loaded); \"over start\" is what a request adds.",
        "",
        "| specialising for one system prompt | median | p90 |",
        "|---|---|---|",
    ]
    names = {
        "adapter_generation_s": "loragen: adapter generation, cold (s)",
        "adapter_from_cache_s": "loragen: adapter from the cache (s)",
        "merge_s": "loragen: merge, another adapter merged (s)",
        "restore_s": "loragen: restore the base weights (s)",
        "remerge_s": "loragen: merge after a restore (s)",
        "peft_load_s": "peft_unmerged: load the adapter's weights (s)",
        "int8_attach_s": "loragen_int8: attach the adapter to the int8 copy (s)",
        "w8a16_attach_s": "loragen_w8a16: attach the adapter to the w8a16 copy, int8 weights requantised (s)",
        "prefix_prefill_s": "icl_prefix_cache: prefill the system prompt (s)",
    }
    lines += [f"| {label} | {spec[key]['median']:.3f} | {spec[key]['p90']:.3f} |" for key, label in names.items()]
    lines += [
        "",
        "| memory kept per specialised task | bytes |",
        "|---|---|",
        "| icl | 0 (the system prompt is re-read every request) |",
        f"| icl_prefix_cache | {_mb(memory['icl_prefix_cache'])} (KV cache of {memory['mean_prefix_tokens']:.0f} prefix tokens) |",
        f"| loragen | {_mb(memory['loragen'])} adapter (A, B fp32; {_mb(memory['adapter_file_bytes'])} on disk); "
        f"{_mb(memory['loragen_merged_extra'])} anonymous memory added by merging, measured (the originals are views of the memory-mapped weight file) |",
        f"| peft_unmerged | {_mb(memory['peft_unmerged'])} adapter |",
        f"| loragen_int8 | {_mb(memory['loragen_int8'])} adapter, unmerged; the int8 copy holds "
        f"{_mb(memory['int8_weight_bytes'])} of int8 weights once per process |",
        f"| loragen_int8_mlp | {_mb(memory['loragen_int8_mlp'])} adapter, unmerged; the MLP-only int8 copy holds "
        f"{_mb(memory['int8_mlp_weight_bytes'])} of int8 weights once per process |",
        f"| icl_prefix_cache_w8a16 | {_mb(memory['icl_prefix_cache_w8a16'])} (bf16 KV cache of the same prefix) |",
        f"| loragen_w8a16 | {_mb(memory['loragen_w8a16'])} adapter, unmerged; the w8a16 copy holds "
        f"{_mb(memory['w8a16_model_bytes'])} (int8 weights, bf16 embeddings and norms) once per process |",
    ]
    new = results["specialize_new_tool_set"]
    finetune = new["lora_finetune"]
    lines += ["", f"Specialising for a new tool set: LoRA-Gen generate + merge {new['loragen_generate_and_merge_s']:.2f} s; "]
    if "estimated_s_per_tool_set" in finetune:
        lines[-1] += (
            f"LoRA fine-tuning ≈ {finetune['estimated_s_per_tool_set']:.0f} s = {finetune['fixed_overhead_s']:.0f} s start-up + "
            f"{finetune['steps_assumed']} steps (assumed) × {finetune['s_per_step_median']:.2f} s/step (measured over "
            f"{finetune['steps_run']} steps, batch {finetune['batch_size']}: `{finetune['command']}`), "
            f"{new['finetune_over_generation']:.0f}x longer, not counting making training data for the tools."
        )
    else:
        lines[-1] += f"LoRA fine-tuning not measured ({finetune['skipped']})."
    lines += [
        "",
        "Decoding (full prompt, tuning items): tokens/s before (EdgeModel.complete's dynamic cache, default threads) "
        f"{decoding['before']['decode_tokens_per_s']:.1f}, after ({decoding['chosen']['decoder']}, "
        f"{decoding['chosen']['threads']} threads) {decoding['chosen']['decode_tokens_per_s']:.1f}.",
        "",
        "| decoder | threads | decode tok/s | mean TTFT (s) | mean latency (s) | same tokens | warm-up (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in decoding["variants"]:
        speed = f"{v['decode_tokens_per_s']:.1f}" if v["decode_tokens_per_s"] else "-"
        lines.append(
            f"| {v['decoder']} | {v['threads']} | {speed} | {v['mean_ttft_s']:.3f} | {v['mean_latency_s']:.3f} | "
            f"{'yes' if v['same_tokens_as_baseline'] else 'NO'} | {v['warmup_s']:.1f} |"
        )
    for label, key in (("before", "profile_before"), ("after", "profile_after")):
        ops = ", ".join(f"{op['op']} {100 * op['share']:.0f}%" for op in decoding[key][:6])
        lines.append(f"\nWhere one full-prompt request's CPU time goes ({label}): {ops}.")
    lines += ["", "| target | value | wanted | met |", "|---|---|---|---|"]
    for name, check in results["targets"].items():
        lines.append(f"| {name} | {check['value']:.3f} | {check['target']} | {'yes' if check['met'] else 'no'} |")
    parity = results["parity"]
    lines += [
        "",
        f"Same tokens: icl_prefix_cache vs icl {parity['icl_prefix_cache_same_tokens_as_icl']}; "
        f"peft_unmerged vs loragen {parity['peft_unmerged_same_tokens_as_loragen']} (merged and unmerged LoRA "
        "differ in rounding, so greedy decoding may part ways); "
        f"loragen_int8 vs loragen {parity['loragen_int8_same_tokens_as_loragen']}, loragen_int8_mlp vs loragen "
        f"{parity['loragen_int8_mlp_same_tokens_as_loragen']}, loragen_w8a16 vs loragen "
        f"{parity['loragen_w8a16_same_tokens_as_loragen']} (quantised weights change the numbers: their quality is "
        "measured by `eval_gpt4tools run --edge-weights int8|int8-mlp|w8a16`, not here); icl_prefix_cache_w8a16 vs "
        f"icl_w8a16 {parity['icl_prefix_cache_w8a16_same_tokens_as_icl_w8a16']}.",
    ]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> Path:
    modes, memory = results["modes"], results["memory_per_task_bytes"]
    figure, (timing, storage) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.38
    positions = range(len(MODES))
    for offset, key, label in ((-width / 2, "ttft_s", "time to first token"), (width / 2, "latency_s", "total latency")):
        medians = [modes[m][f"median_{key}"] for m in MODES]
        p90s = [modes[m][f"p90_{key}"] for m in MODES]
        timing.bar([p + offset for p in positions], medians, width, label=f"{label} (median; bar to p90)",
                   yerr=[[0] * len(MODES), [p - q for p, q in zip(p90s, medians)]], capsize=3)
    timing.set_xticks(list(positions), MODES, rotation=30, ha="right")
    timing.set_ylabel("seconds")
    timing.set_title(f"Per request, {results['n_items']} GPT4Tools items")
    timing.legend()
    kept = [memory[mode] for mode in MODES]
    storage.bar(list(positions), [k / 2**20 for k in kept])
    storage.annotate(f"+{memory['loragen_merged_extra'] / 2**20:.1f} MB measured\nwhile merged", (2, kept[2] / 2**20),
                     ha="center", va="bottom", fontsize=8)
    storage.set_xticks(list(positions), MODES, rotation=30, ha="right")
    storage.set_ylabel("MB kept per system prompt")
    storage.set_title("Memory per specialised task")
    figure.suptitle(f"{results['machine']['cpu']}, threads: {results['machine']['threads_used']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_bench_reports(results: dict, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.json").write_text(json.dumps(results, indent=1) + "\n")
    (directory / "bench.md").write_text(markdown_report(results))
    plot(results, directory / "bench.png")
