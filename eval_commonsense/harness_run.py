"""One mode of the harness-scored Table 2 over the tasks, task by task, resumable (harness.py says how).

Run directory (loragen_core/resumable_run.py, as every benchmark run of the project):
    run_config.json     the mode and what it depends on (a resume must match it)
    tasks.jsonl         one line per finished task: n, acc, acc_norm, and every item's acc (paired tests)
    summary.json        all finished tasks and the machine, written at the end
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loragen_core.atomic import write_text_atomic
from loragen_core.errors import say
from loragen_core.machine import machine_info
from loragen_core.resumable_run import code_versions, open_resumable_run

from .harness import HARNESS_MODES, HARNESS_TASKS, evaluate_task, harness_system_prompt, load_harness_task, plan, shot_text
from .tasks import DEFAULT_SHOTS, TASKS, Task

TASKS_LOG = "tasks.jsonl"
SUMMARY_KEYS = ("n", "acc", "acc_norm", "num_fewshot", "seconds", "mean_context_tokens")


@dataclass
class HarnessConfig:
    mode: str
    out: Path
    data_dir: Path | None = None
    limit_per_task: int | None = 300
    tasks: tuple[str, ...] = tuple(t.name for t in TASKS)
    shots: int = DEFAULT_SHOTS  # k: icl's shots, and the solved examples in a loragen system prompt
    seed: int = 0
    adapter: Path | None = None  # mode lora
    generator: Path | None = None  # loragen modes; None: the shipped commonsense generator
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.mode not in HARNESS_MODES:
            raise ValueError(f"Unknown mode {self.mode!r}; choose one of {', '.join(HARNESS_MODES)}.")
        if self.mode == "lora" and self.adapter is None:
            raise ValueError("Mode lora needs --adapter DIR (a PEFT LoRA).")
        unknown = [t for t in self.tasks if t not in HARNESS_TASKS]
        if unknown:
            raise ValueError(f"Unknown task(s) {', '.join(unknown)}; choose from {', '.join(HARNESS_TASKS)}.")
        self.tasks = tuple(self.tasks)
        self.out = Path(self.out)

    @property
    def num_fewshot(self) -> int:
        return {"icl": self.shots, "loragen-1shot": 1}.get(self.mode, 0)

    def identity(self) -> dict:
        return {k: str(v) for k, v in asdict(self).items() if k not in ("out", "tasks", "batch_size")}


@dataclass
class Specialist:
    """The model every task is scored with, and how it is specialised for a task in this mode."""

    config: HarnessConfig
    edge: object = None
    service: object = None
    lm: object = None
    notes: dict = field(default_factory=dict)

    def load(self) -> None:
        from lm_eval.models.huggingface import HFLM

        from loragen_core import AdapterService, load_causal_lm, load_generator
        from loragen_core.checkpoint import DEFAULT_CHECKPOINT
        from loragen_core.edge_runtime import EdgeModel

        config = self.config
        if config.mode.startswith("loragen"):
            directory = config.generator or DEFAULT_CHECKPOINT.parent / "commonsense"
            generator = load_generator(directory)
            self.notes["generator"] = str(directory)
            self.service = AdapterService(generator)
            self.edge = EdgeModel(load_causal_lm(generator.config.edge_model))
        else:
            self.edge = EdgeModel(load_causal_lm())
        if config.mode == "lora":
            from peft import PeftModel

            # Merged once: the same weights serve every task (a multi-task LoRA).
            self.edge.model = PeftModel.from_pretrained(self.edge.model, str(config.adapter)).merge_and_unload()
            self.notes["adapter"] = str(config.adapter)
        self.lm = HFLM(pretrained=self.edge.model, tokenizer=self.edge.tokenizer, batch_size=self.config.batch_size, device="cpu")

    def system_prompt(self, task: Task, pool: list, work: Path) -> str:
        """The task description and k solved shots, each written as the harness writes a shot."""
        shots = random.Random(f"{task.name}:{self.config.seed}").sample(pool, self.config.shots)
        task_object = load_harness_task(work, task, shots, shots)
        return harness_system_prompt(task, [shot_text(task_object, doc) for doc in task_object.validation_docs()])

    def specialise(self, task: Task, pool: list, work: Path) -> dict:
        if not self.config.mode.startswith("loragen"):
            return {}
        prompt = self.system_prompt(task, pool, work)
        result = self.service.adapter_for(prompt)
        merge_s = self.edge.specialize(result.adapter, result.adapter_hash)
        return {"adapter_hash": result.adapter_hash, "adapter_seconds": result.seconds, "merge_seconds": merge_s,
                "system_prompt": prompt}

    def restore(self) -> None:
        if self.config.mode.startswith("loragen"):
            self.edge.reset()


def run_harness(config: HarnessConfig) -> dict:
    """Every task of `config` not finished in its run directory; returns the summary."""
    work_plan = plan(config.tasks, config.limit_per_task, config.data_dir)  # every file read before any model loads
    log_path, done = open_resumable_run(config.out, config.identity(), TASKS_LOG, ValueError)
    machine = machine_info()
    todo = [(task, items, pool) for task, items, pool in work_plan if task.name not in done]
    if todo:
        specialist = Specialist(config)
        specialist.load()
        for task, items, pool in todo:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="loragen-harness-") as scratch:
                work = Path(scratch)
                (work / "prompt").mkdir()
                specialisation = specialist.specialise(task, pool, work / "prompt")
                try:
                    result = evaluate_task(specialist.lm, work, task, items, pool, config.num_fewshot, config.seed)
                finally:
                    specialist.restore()
            record = {"id": task.name, **asdict(result), "wall_seconds": time.perf_counter() - started,
                      "specialisation": specialisation, "num_fewshot": config.num_fewshot, **specialist.notes}
            with log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            done[task.name] = record
            norm = f", acc_norm {result.acc_norm:.3f}" if result.acc_norm is not None else ""
            say(f"{config.mode} {task.name}: acc {result.acc:.3f}{norm} on {result.n} items ({result.seconds:.0f} s)")
    tasks = {name: {k: done[name][k] for k in SUMMARY_KEYS} for name in config.tasks if name in done}
    summary = {"mode": config.mode, "scorer": "lm-evaluation-harness", "config": config.identity(), "tasks": tasks, "machine": machine,
               "code_versions": code_versions(config.out)}  # more than one: a run resumed across a code change
    write_text_atomic(config.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
