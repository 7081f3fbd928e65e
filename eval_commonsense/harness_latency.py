"""Edge latency per item, icl against the zero-shot prompt that loragen serves, measured in one run.

    python -m eval_commonsense harness-latency --items-per-task 20 --results results

What is timed: scoring one item as lm-evaluation-harness scores it, one forward pass over every
option's (context, continuation) tokens padded into one batch (the harness's own requests, built by
its task objects: icl's k shots in its few-shot format, or the zero-shot context). icl and zero-shot
are timed item by item, alternately, in the same process, so the ratio does not depend on what else
the machine was doing. Both on the same weights: a merged adapter changes the weights' values, not
their shapes, so loragen's cost per item is the zero-shot one; the adapter's one-off cost per task
(generation and merge) is in the loragen harness run's records and the table.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from loragen_core.atomic import write_text_atomic
from loragen_core.machine import machine_info

from .harness import load_harness_tasks, plan
from .tasks import DEFAULT_SHOTS, TASKS

LATENCY_STEM = "commonsense_harness_latency"


@dataclass(frozen=True)
class LatencyConfig:
    items_per_task: int = 20
    shots: int = DEFAULT_SHOTS
    tasks: tuple[str, ...] = tuple(t.name for t in TASKS)
    data_dir: Path | None = None
    seed: int = 0
    repeats: int = 3  # each item's time is the fastest of this many passes (timer noise, not the model)


def option_requests(task_object, num_fewshot: int, limit: int, seed: int) -> list[list[tuple[str, str]]]:
    """Per doc, its (context, continuation) requests, as the harness builds them."""
    task_object.set_config(key="num_fewshot", value=num_fewshot)
    task_object.set_fewshot_seed(seed=seed)
    task_object.build_all_requests(limit=limit)
    by_doc = defaultdict(list)
    for instance in task_object.instances:
        by_doc[instance.doc_id].append(tuple(instance.arguments))
    return [by_doc[doc_id] for doc_id in sorted(by_doc)]


def _batch(lm, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, float]:
    sequences = [sum(lm._encode_pair(context, continuation), []) for context, continuation in pairs]
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), lm.tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    context_tokens = statistics.fmean(len(lm._encode_pair(*pair)[0]) for pair in pairs)
    return ids, mask, context_tokens


@torch.inference_mode()
def time_item(model, ids: torch.Tensor, mask: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        model(input_ids=ids, attention_mask=mask)
        best = min(best, time.perf_counter() - started)
    return best


def measure(config: LatencyConfig) -> dict:
    from lm_eval.models.huggingface import HFLM

    from loragen_core import load_causal_lm
    from loragen_core.edge_runtime import EdgeModel

    work_plan = plan(config.tasks, config.items_per_task, config.data_dir)
    edge = EdgeModel(load_causal_lm())
    lm = HFLM(pretrained=edge.model, tokenizer=edge.tokenizer, batch_size=1, device="cpu")
    per_task = {}
    with tempfile.TemporaryDirectory(prefix="loragen-latency-") as scratch:
        objects = load_harness_tasks(Path(scratch), [(task, items, pool) for task, items, pool in work_plan])
        for task, items, _ in work_plan:
            icl = option_requests(objects[task.name], config.shots, len(items), config.seed)
            zero = option_requests(objects[task.name], 0, len(items), config.seed)
            times = {"icl": [], "zero_shot": []}
            tokens = {"icl": [], "zero_shot": []}
            for icl_pairs, zero_pairs in zip(icl, zero):  # alternate: both see the same machine load
                for name, pairs in (("icl", icl_pairs), ("zero_shot", zero_pairs)):
                    ids, mask, context_tokens = _batch(lm, pairs)
                    times[name].append(time_item(edge.model, ids, mask, config.repeats))
                    tokens[name].append(context_tokens)
            per_task[task.name] = {
                "n": len(times["icl"]),
                **{f"median_{name}_s": statistics.median(values) for name, values in times.items()},
                **{f"mean_{name}_context_tokens": statistics.fmean(values) for name, values in tokens.items()},
            }
            per_task[task.name]["ratio"] = per_task[task.name]["median_icl_s"] / per_task[task.name]["median_zero_shot_s"]
    all_icl = [t["median_icl_s"] for t in per_task.values()]
    all_zero = [t["median_zero_shot_s"] for t in per_task.values()]
    return {
        "config": {k: str(v) for k, v in config.__dict__.items()},
        "tasks": per_task,
        "median_of_task_medians": {"icl_s": statistics.median(all_icl), "zero_shot_s": statistics.median(all_zero),
                                   "ratio": statistics.median(all_icl) / statistics.median(all_zero)},
        "threads": torch.get_num_threads(),
        "machine": machine_info(),
    }


def markdown(result: dict) -> str:
    lines = ["| task | items | icl context tokens | zero-shot context tokens | icl median (ms) | loragen (zero-shot) median (ms) | icl / loragen |",
             "|---|---|---|---|---|---|---|"]
    for name, row in result["tasks"].items():
        lines.append(f"| {name} | {row['n']} | {row['mean_icl_context_tokens']:.0f} | {row['mean_zero_shot_context_tokens']:.0f} | "
                     f"{1000 * row['median_icl_s']:.1f} | {1000 * row['median_zero_shot_s']:.1f} | {row['ratio']:.2f}x |")
    overall = result["median_of_task_medians"]
    lines.append(f"| **median over tasks** | | | | {1000 * overall['icl_s']:.1f} | {1000 * overall['zero_shot_s']:.1f} | "
                 f"**{overall['ratio']:.2f}x** |")
    return "\n".join(lines) + "\n"


def write_latency(result: dict, results_dir: Path) -> str:
    text = markdown(result)
    results_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(results_dir / f"{LATENCY_STEM}.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(results_dir / f"{LATENCY_STEM}.md", text)
    return text
