"""Training data for the generator (and the LoRA baseline) from the five seen tasks' train splits.

One JSON line per training item, in the trainer's format (loragen_core/train_data.py):
    system_prompt  the task description + k solved examples from the same train split
    edge_prompt    the question with its options (what the edge model reads at evaluation)
    output         the gold option's text (what the scorer compares: see scoring.py)
    instruction    system_prompt + edge_prompt (for `--method lora --prompt full`)
plus id, kind (the task) and gold_tool (empty), so a GPT4Tools file (same columns) can be mixed in
with `--data this.jsonl gpt4tools.jsonl`.

System prompts (ours): each task reserves SHOT_SOURCE_SIZE train items as the shots' source, and the
training rows come from the rest, so no row ever sees itself as an example. With
`prompts_per_task=P` every task gets a fixed pool of P system prompts, each a different draw of k
shots, and rows cycle through them: the generator still sees several prompts per task, and the cpu
recipe's cloud LM reads only 5·P distinct prompts. With P=0 every row draws its own k shots (many more
distinct prompts: right for the paper recipe, slow for the cpu one).
"""

from __future__ import annotations

import random
from pathlib import Path

from .prompts import DEFAULT_SHOTS, draw_shots, edge_prompt, system_prompt
from .tasks import SEEN_TASKS, Item, Task, get_task, load_items

SHOT_SOURCE_SIZE = 200  # per task (at most half its train split); ARC-Challenge, the smallest, has 1119
DEFAULT_ROWS_PER_TASK = 1000
DEFAULT_PROMPTS_PER_TASK = 16


def build_rows(
    data_dir: Path | None = None,
    rows_per_task: int = DEFAULT_ROWS_PER_TASK,
    shots: int = DEFAULT_SHOTS,
    prompts_per_task: int = DEFAULT_PROMPTS_PER_TASK,
    seed: int = 0,
    tasks: tuple[str, ...] = SEEN_TASKS,
) -> list[dict]:
    if rows_per_task < 1 or shots < 0 or prompts_per_task < 0:
        raise ValueError("rows per task must be >= 1, shots and prompts per task >= 0.")
    rows = []
    for name in tasks:
        task = get_task(name)
        if not task.seen:
            raise ValueError(f"{name} is an unseen task: it is never trained on.")
        items = load_items(task, "train", data_dir)
        rng = random.Random(f"{name}:{seed}")
        order = rng.sample(items, len(items))
        reserved = min(SHOT_SOURCE_SIZE, len(items) // 2)  # a small train file keeps half for rows
        source, candidates = order[:reserved], order[reserved:]
        chosen = sorted(candidates[:rows_per_task], key=lambda item: item.index)
        pool = _distinct_prompts(task, source, shots, prompts_per_task, rng)
        for position, item in enumerate(chosen):
            system = pool[position % len(pool)] if pool else system_prompt(task, draw_shots(task, source, shots, rng))
            edge = edge_prompt(task, item)
            rows.append({
                "id": item.id, "kind": name, "gold_tool": "", "system_prompt": system, "edge_prompt": edge,
                "instruction": f"{system}\n\n{edge}", "output": item.answer,
            })
    random.Random(seed).shuffle(rows)  # tasks interleaved: any prefix of the file is a mix
    return rows


def _distinct_prompts(task: Task, source: list[Item], shots: int, n: int, rng: random.Random) -> list[str]:
    """n system prompts with different shots (fewer if the source cannot give n different draws)."""
    pool: list[str] = []
    for _ in range(20 * n):
        if len(pool) == n:
            break
        prompt = system_prompt(task, draw_shots(task, source, shots, rng))
        if prompt not in pool:
            pool.append(prompt)
    return pool
