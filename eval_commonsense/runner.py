"""Run one row of Table 2 over the eight tasks; resumable, item by item.

Modes (see prompts.py for what the edge model reads in each):

    icl            k-shot system prompt + question, no adapter
    lora           question only, a PEFT LoRA from --adapter merged (trained multi-task on the seen tasks)
    loragen        question only, the adapter generated from the task's system prompt merged
    loragen-1shot  one shot + question, the same generated adapter

Every mode is scored by option log-likelihood (scoring.py). One system prompt per task, so loragen
generates (or reads from the adapter cache) one adapter per task and merges it before that task's
items. Each finished item is appended to `records.jsonl` at once; rerunning with the same --out
continues where an interrupted run stopped, and a larger --limit-per-task only adds items.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from loragen_core import DEFAULT_MODEL, AdapterService, GeneratedLoRA, load_causal_lm, load_default_generator, load_generator
from loragen_core.checkpoint import DEFAULT_CHECKPOINT, GENERATOR_WEIGHTS_FILE
from loragen_core.config import CONFIG_FILE_NAME, LoRAGenConfig
from loragen_core.edge_runtime import EdgeModel
from loragen_core.resumable_run import RunSummary, open_resumable_run

from .prompts import DEFAULT_SHOTS, MODES, TaskPrompt, task_prompt
from .scoring import average, harmonic_mean, predict, score_options
from .tasks import TASKS, UNSEEN_TASKS, Item, eval_items, get_task, shot_pool, subset

RECORDS_LOG = "records.jsonl"


class RunConfigError(ValueError):
    """Arguments that do not fit the mode, or a resume with a different configuration."""


@dataclass
class RunConfig:
    mode: str
    out: Path
    data_dir: Path | None = None
    limit_per_task: int | None = None
    tasks: tuple[str, ...] = tuple(t.name for t in TASKS)
    shots: int = DEFAULT_SHOTS  # k of the system prompt
    shot_seed: int = 0
    adapter: Path | None = None  # mode lora
    generator: Path | None = None  # loragen modes; None: the default generator
    edge_model: str = DEFAULT_MODEL  # icl and lora; loragen modes use the generator's edge model

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RunConfigError(f"Unknown mode {self.mode!r}; choose one of {', '.join(MODES)}.")
        if self.mode == "lora" and self.adapter is None:
            raise RunConfigError("Mode lora needs --adapter DIR (a PEFT LoRA, e.g. from `loragen_core.train --method lora`).")
        if self.mode == "loragen-1shot" and self.shots < 1:
            raise RunConfigError("Mode loragen-1shot puts the first of the k shots in the edge prompt: --shots must be >= 1.")
        if self.limit_per_task is not None and self.limit_per_task < 1:
            raise RunConfigError("--limit-per-task must be at least 1.")
        for name in self.tasks:
            get_task(name)
        self.tasks = tuple(self.tasks)

    def identity(self) -> dict:
        """What must not change between an interrupted run and its resumption."""
        keys = ("mode", "shots", "shot_seed", "adapter", "generator", "edge_model")
        return {k: str(getattr(self, k)) for k in keys}


def load_plan(config: RunConfig) -> list[tuple[TaskPrompt, list[Item]]]:
    """Per task: its prompt and the items to score. Reads every file before any model loads."""
    plan = []
    for name in config.tasks:
        task = get_task(name)
        prompt = task_prompt(task, shot_pool(task, config.data_dir), config.shots, config.shot_seed)
        plan.append((prompt, subset(eval_items(task, config.data_dir), config.limit_per_task)))
    return plan


def run(config: RunConfig) -> RunSummary:
    plan = load_plan(config)
    log_path, done = open_resumable_run(config.out, config.identity(), RECORDS_LOG, RunConfigError)

    todo = [(prompt, [i for i in items if i.id not in done]) for prompt, items in plan]
    todo = [(prompt, items) for prompt, items in todo if items]
    wall_start = time.perf_counter()
    if todo:
        _run_items(config, todo, done, log_path)
    records = {prompt.task.name: [done[i.id] for i in items] for prompt, items in plan}
    return summarize(config, records, time.perf_counter() - wall_start)


def edge_model_name(config: RunConfig) -> str:
    """The edge model a run scores: --edge-model, or for loragen modes the generator's own."""
    if not config.mode.startswith("loragen"):
        return config.edge_model
    directory = Path(config.generator or DEFAULT_CHECKPOINT)
    return (LoRAGenConfig.load(directory) if (directory / CONFIG_FILE_NAME).is_file() else LoRAGenConfig()).edge_model


def _load_edge(config: RunConfig) -> tuple[EdgeModel, AdapterService | None]:
    if config.mode in ("loragen", "loragen-1shot"):
        generator, trained = (load_generator(config.generator), True) if config.generator else load_default_generator()
        if not trained:
            print("warning: no trained generator ships yet; the default is a seeded fresh one whose adapters are "
                  "no-ops, so loragen scores as the base model. Pass --generator DIR.", file=sys.stderr)
        return EdgeModel(load_causal_lm(generator.config.edge_model)), AdapterService(generator)
    edge = EdgeModel(load_causal_lm(config.edge_model))
    if config.mode == "lora":
        edge.specialize(GeneratedLoRA.from_pretrained(config.adapter))
    return edge, None


def _run_items(config: RunConfig, todo: list[tuple[TaskPrompt, list[Item]]], done: dict, log_path: Path) -> None:
    edge, service = _load_edge(config)
    total = sum(len(items) for _, items in todo)
    with log_path.open("a") as log, tqdm(total=total, desc=config.mode, unit="item") as progress:
        for prompt, items in todo:
            adapter_seconds, merge_seconds, cache_hit, adapter_hash = 0.0, 0.0, None, edge.active_adapter
            if service is not None:
                result = service.adapter_for(prompt.system_prompt)
                adapter_seconds, cache_hit, adapter_hash = result.seconds, result.cache_hit, result.adapter_hash
                if edge.active_adapter != result.adapter_hash:
                    merge_seconds = edge.specialize(result.adapter)
            for position, item in enumerate(items):
                scores = score_options(edge, prompt.edge_text(config.mode, item), item.options)
                record = {
                    "id": item.id, "task": item.task, "gold": item.gold,
                    "logliks": scores.logliks, "option_chars": [len(o) for o in item.options],
                    "prompt_tokens": scores.prompt_tokens,
                    "icl_prompt_tokens": edge.count_prompt_tokens(prompt.icl_text(item)),
                    "latency_s": scores.seconds,
                    # the adapter is obtained and merged once per task: charged to its first item only
                    "adapter_s": adapter_seconds if position == 0 else 0.0,
                    "merge_s": merge_seconds if position == 0 else 0.0,
                    "adapter_cache_hit": cache_hit if position == 0 else None,
                    "adapter_hash": adapter_hash,
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                done[item.id] = record
                progress.update()
                progress.set_postfix(task=item.task, latency=f"{scores.seconds:.2f}s")


def task_metrics(records: list[dict]) -> dict:
    correct = [predict(r["logliks"]) == r["gold"] for r in records]
    normed = [predict([ll / c for ll, c in zip(r["logliks"], r["option_chars"])]) == r["gold"] for r in records]
    return {"acc": statistics.fmean(correct), "acc_norm": statistics.fmean(normed), "n": len(records)}


def summarize(config: RunConfig, records: dict[str, list[dict]], wall_s: float) -> RunSummary:
    from .report import write_reports

    per_task = {task: task_metrics(rs) for task, rs in records.items() if rs}
    everything = [r for rs in records.values() for r in rs]
    accuracies = [m["acc"] for m in per_task.values()]
    mean_tokens = statistics.fmean(r["prompt_tokens"] for r in everything)
    mean_icl_tokens = statistics.fmean(r["icl_prompt_tokens"] for r in everything)
    generated = [r["adapter_s"] for r in everything if r["adapter_cache_hit"] is False]
    unseen = [per_task[t]["acc"] for t in UNSEEN_TASKS if t in per_task]
    metrics = {
        "method": config.mode,
        **{task: m["acc"] for task, m in per_task.items()},
        "AVE": average(accuracies),
        "HAR": harmonic_mean(accuracies),
        "unseen_AVE": average(unseen) if unseen else None,
        "acc_norm": {task: m["acc_norm"] for task, m in per_task.items()},
        "mean_edge_prompt_tokens": mean_tokens,
        "mean_icl_prompt_tokens": mean_icl_tokens,
        "seq_ratio": mean_tokens / mean_icl_tokens,
        "median_latency_s": statistics.median(r["latency_s"] for r in everything),
        "median_adapter_generation_s": statistics.median(generated) if generated else None,
        "n_per_task": {task: m["n"] for task, m in per_task.items()},
        "edge_model": edge_model_name(config),
        "shots": config.shots,
        "scoring": "option log-likelihood, acc (unnormalised); acc_norm per character beside it",
        "adapter": str(config.adapter) if config.adapter else None,
        "generator": str(config.generator) if config.generator else ("default" if config.mode.startswith("loragen") else None),
        "wall_s_this_invocation": wall_s,
    }
    if config.mode.startswith("loragen"):
        metrics["trained_generator"] = config.generator is not None or (DEFAULT_CHECKPOINT / GENERATOR_WEIGHTS_FILE).is_file()
    (config.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    summary = RunSummary(method=config.mode, metrics=metrics, out=config.out)
    write_reports([summary], config.out)
    return summary
