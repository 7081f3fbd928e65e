"""What each model reads: the task's system prompt (description + k shots) and the edge prompt.

    system prompt   task description, then "Examples:" and k solved items        (the cloud LM reads it)
    edge prompt     the question and its numbered options, nothing else           (the edge model reads it)
    answer          the gold option's text: what the trainer teaches and the scorer compares

    icl             system prompt + edge prompt, in one user turn, no adapter
    lora            edge prompt, with a LoRA trained multi-task on the seen tasks merged
    loragen         edge prompt, with the adapter generated from the system prompt merged
    loragen-1shot   the first of the k shots + edge prompt, with the same generated adapter
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .tasks import Item, Task

MODES = ("icl", "lora", "loragen", "loragen-1shot")
DEFAULT_SHOTS = 5


def edge_prompt(task: Task, item: Item) -> str:
    """The question with its options, one per line, labelled as in the task's template."""
    if task.option_label is None:
        return item.question
    options = "\n".join(f"{task.option_label}{i}: {text}" for i, text in enumerate(item.options, start=1))
    return f"{item.question}\n{options}"


def solved_example(task: Task, item: Item) -> str:
    return f"{edge_prompt(task, item)}\nAnswer: {item.answer}"


def examples_block(task: Task, shots: list[Item]) -> str:
    return "Examples:\n\n" + "\n\n".join(solved_example(task, s) for s in shots)


def system_prompt(task: Task, shots: list[Item]) -> str:
    return f"{task.description}\n\n{examples_block(task, shots)}" if shots else task.description


def draw_shots(task: Task, pool: list[Item], k: int, rng: random.Random, exclude: Item | None = None) -> list[Item]:
    candidates = [item for item in pool if exclude is None or item.id != exclude.id]
    if k > len(candidates):
        raise ValueError(f"{task.name}: {k} shots asked for, but only {len(candidates)} items to draw from.")
    return rng.sample(candidates, k)


@dataclass(frozen=True)
class TaskPrompt:
    """One task's evaluation prompt: a single system prompt (one adapter) for every test item."""

    task: Task
    shots: list[Item]

    @property
    def system_prompt(self) -> str:
        return system_prompt(self.task, self.shots)

    def icl_text(self, item: Item) -> str:
        return f"{self.system_prompt}\n\n{edge_prompt(self.task, item)}"

    def edge_text(self, mode: str, item: Item) -> str:
        """What the edge model reads for `item` in `mode`."""
        if mode == "icl":
            return self.icl_text(item)
        if mode == "loragen-1shot":
            return f"{examples_block(self.task, self.shots[:1])}\n\n{edge_prompt(self.task, item)}"
        if mode in ("lora", "loragen"):
            return edge_prompt(self.task, item)
        raise ValueError(f"Unknown mode {mode!r}; choose one of {', '.join(MODES)}.")


def task_prompt(task: Task, pool: list[Item], k: int = DEFAULT_SHOTS, seed: int = 0) -> TaskPrompt:
    """The task's evaluation prompt: k shots drawn from its pool with a seed of its own."""
    return TaskPrompt(task, draw_shots(task, pool, k, random.Random(f"{task.name}:{seed}")))
