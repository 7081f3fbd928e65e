"""Score the commonsense tasks with lm-evaluation-harness itself: its prompt formats, its continuation
per option, its `acc` and `acc_norm`.

    python -m eval_commonsense harness --mode base --limit-per-task 300 --out runs/commonsense-harness/base

Why lm-eval and not our own scorer: the old Table 2 listed both options in a chat prompt and scored
the option text as the reply, and the likelihood of copying either option swamped the signal (PIQA
54.3 against 66.3 in lm-eval's format, issue 16). Running the harness itself removes the question of
whether a reimplementation of its formats is faithful.

How the local files reach it (offline, no hub): each task's items, parsed from the LLM-Adapters JSON
in ../shared/data/commonsense (tasks.py), are written back in the schema of the harness's own task
(PIQA: goal/sol1/sol2/label, WinoGrande: sentence/option1/option2/answer, HellaSwag: activity_label/
ctx_a/ctx_b/endings/label, ...). A small YAML per task `include`s the harness's own task file and only
points it at those JSON-lines files, so doc_to_text, doc_to_choice, process_docs (HellaSwag's
preprocessing), WinoGrande's partial scoring and the metrics are the harness's. Two formats cannot be
kept word for word, because the local data lacks a field:

    BoolQ      LLM-Adapters' BoolQ has no passage: "Question: {question}?\\nAnswer:" (the harness's
               format without its passage line), choices " no" / " yes" as in the harness
    SocialIQA  context and question come joined: "Q: {context question}\\nA:", the same string as the
               harness's "Q: {context} {question}\\nA:"

Modes (one model, the base weights unless said):
    base            zero-shot, no adapter: the sanity anchor
    icl             k shots in the harness's own few-shot format (its `num_fewshot`, drawn from the
                    task's shot pool: the train file, or the held-out test items of an unseen task)
    lora            zero-shot, a PEFT LoRA merged (--adapter)
    loragen         zero-shot, the adapter generated from the task's system prompt merged
    loragen-1shot   the same adapter, one shot in context

The system prompt the generator reads (loragen modes) is the task description and k solved shots,
each written by the harness's own doc_to_text and target, so shots read alike in every mode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .tasks import Item, Task, eval_items, get_task, shot_pool, subset

HARNESS_MODES = ("base", "icl", "lora", "loragen", "loragen-1shot")


def _choice_doc(item: Item, stem_key: str) -> dict:
    letters = [chr(ord("A") + i) for i in range(len(item.options))]
    return {"id": item.id, stem_key: item.question, "choices": {"text": list(item.options), "label": letters},
            "answerKey": letters[item.gold]}


def _hellaswag_doc(item: Item) -> dict:
    # The local file holds "activity_label: context", already stripped of WikiHow's [tags] (README).
    label, _, context = item.question.partition(": ")
    return {"activity_label": label, "ctx_a": context, "ctx_b": "", "endings": list(item.options), "label": str(item.gold)}


def _winogrande_doc(item: Item) -> dict:
    if "_" not in item.question:
        raise ValueError(f"{item.id}: a WinoGrande sentence without its blank (_).")
    return {"sentence": item.question, "option1": item.options[0], "option2": item.options[1], "answer": str(item.gold + 1)}


@dataclass(frozen=True)
class HarnessTask:
    """Where one task lives in lm-eval, and how our parsed item becomes one of its documents."""

    lm_eval_yaml: str  # relative to lm_eval/tasks
    to_doc: Callable[[Item], dict]
    overrides: dict = dataclasses.field(default_factory=dict)  # only where the local data lacks a field


HARNESS_TASKS: dict[str, HarnessTask] = {
    "ARC-Challenge": HarnessTask("arc/arc_easy.yaml", lambda item: _choice_doc(item, "question")),
    "ARC-Easy": HarnessTask("arc/arc_easy.yaml", lambda item: _choice_doc(item, "question")),
    "OpenBookQA": HarnessTask("openbookqa/openbookqa.yaml", lambda item: _choice_doc(item, "question_stem")),
    # Our BoolQ options are ("true", "false"); the harness's label is 1 for yes.
    # The harness's questions carry no "?" (its format adds one); some local ones do.
    "BoolQ": HarnessTask("super_glue/boolq/default.yaml", lambda item: {"question": item.question.rstrip("?"), "label": int(item.gold == 0)},
                         {"doc_to_text": "Question: {{question}}?\nAnswer:"}),
    "SocialIQA": HarnessTask(
        "siqa/siqa.yaml",
        lambda item: {"context": item.question, "question": "", "answerA": item.options[0], "answerB": item.options[1],
                      "answerC": item.options[2], "label": str(item.gold + 1)},
        {"doc_to_text": "Q: {{context}}\nA:"},
    ),
    "HellaSwag": HarnessTask("hellaswag/hellaswag.yaml", _hellaswag_doc),
    "WinoGrande": HarnessTask("winogrande/default.yaml", _winogrande_doc),
    "PIQA": HarnessTask("piqa/piqa.yaml", lambda item: {"goal": item.question, "sol1": item.options[0], "sol2": item.options[1],
                                                        "label": item.gold}),
}


def harness_task_name(task: Task) -> str:
    return "loragen_" + task.directory.lower().replace("-", "_")


def _lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


def write_task(directory: Path, task: Task, items: list[Item], shots: list[Item]) -> str:
    """The task's documents (eval + shot pool, JSON lines) and its YAML; returns the task's name."""
    spec = HARNESS_TASKS[task.name]
    name = harness_task_name(task)
    data = {}
    for split, rows in (("validation", items), ("train", shots)):
        path = directory / f"{name}.{split}.jsonl"
        path.write_text("".join(json.dumps(spec.to_doc(item), ensure_ascii=False) + "\n" for item in rows))
        data[split] = str(path)
    config = {
        "include": str(_lm_eval_tasks_dir() / spec.lm_eval_yaml),
        "task": name,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data},
        "training_split": "train",
        "validation_split": "validation",
        "test_split": None,
        "fewshot_split": "train",
        **spec.overrides,
    }
    # JSON is YAML; the harness's loader reads it (and resolves `include` and `!function` itself).
    (directory / f"{name}.yaml").write_text(json.dumps(config, indent=2) + "\n")
    return name


@dataclass(frozen=True)
class TaskResult:
    task: str
    n: int
    acc: float
    acc_norm: float | None
    rights: dict  # item id → acc (1.0 / 0.0), for paired tests
    mean_context_tokens: float  # what the model reads before the first option (shots included)
    seconds: float  # the harness's wall time for the task


def evaluate_task(lm, directory: Path, task: Task, items: list[Item], shots: list[Item], num_fewshot: int,
                  seed: int = 0) -> TaskResult:
    """One task through `lm_eval.simple_evaluate`, item by item (the samples keep each item's acc)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    name = write_task(directory, task, items, shots)
    started = time.perf_counter()
    output = simple_evaluate(
        model=lm, tasks=[name], task_manager=TaskManager(include_path=str(directory)), num_fewshot=num_fewshot,
        log_samples=True, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
    )
    metrics = output["results"][name]
    samples = output["samples"][name]
    seconds = time.perf_counter() - started
    rights = {items[s["doc_id"]].id: float(s["acc"]) for s in samples}
    contexts = [len(lm.tok_encode(s["arguments"][0][0])) for s in samples]
    return TaskResult(task.name, len(samples), metrics["acc,none"], metrics.get("acc_norm,none"), rights,
                      sum(contexts) / len(contexts), seconds)


def load_harness_tasks(directory: Path, specs: list[tuple[Task, list[Item], list[Item]]]) -> dict:
    """task name → the harness's own task object over its items (its validation docs, after its
    process_docs) and shots. One TaskManager for all: indexing the harness's tasks takes seconds."""
    from lm_eval.tasks import TaskManager

    names = {task.name: write_task(directory, task, items, shots) for task, items, shots in specs}
    loaded = TaskManager(include_path=str(directory)).load(list(names.values()))["tasks"]
    return {task_name: loaded[name] for task_name, name in names.items()}


def load_harness_task(directory: Path, task: Task, items: list[Item], shots: list[Item]):
    return load_harness_tasks(directory, [(task, items, shots)])[task.name]


def solved_pair(task_object, doc: dict) -> tuple[str, str]:
    """(context, continuation) of a solved example as the harness scores its gold answer: its
    doc_to_text, then the target delimiter and the gold choice. Under partial scoring (WinoGrande)
    the choices are the contexts and doc_to_text the gold one's index: the sentence up to the blank
    filled by the gold option, then the rest of the sentence."""
    context = task_object.doc_to_text(doc)
    target = task_object.doc_to_target(doc)
    choices = task_object.doc_to_choice(doc)
    if isinstance(context, int):  # partial scoring
        return choices[context], f"{task_object.config.target_delimiter}{target}"
    answer = choices[target] if isinstance(target, int) else target
    return context, f"{task_object.config.target_delimiter}{answer}"


def shot_text(task_object, doc: dict) -> str:
    """A solved example as the harness writes a shot."""
    return "".join(solved_pair(task_object, doc))


def harness_system_prompt(task: Task, shots: list[str]) -> str:
    """What the generator reads: the task description and the solved shots, as harness shots."""
    return f"{task.description}\n\nExamples:\n\n" + "\n\n".join(shots) if shots else task.description


def plan(tasks: tuple[str, ...], limit_per_task: int | None, data_dir: Path | None) -> list[tuple[Task, list[Item], list[Item]]]:
    """Per task: the scored items (a fixed subset) and the shot pool. Reads every file first."""
    return [(task, subset(eval_items(task, data_dir), limit_per_task), shot_pool(task, data_dir))
            for task in (get_task(name) for name in tasks)]
