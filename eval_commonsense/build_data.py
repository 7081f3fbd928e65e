"""Training data for the generator (and the LoRA baseline) from the five seen tasks' train splits.

One JSON line per training item, in the trainer's format (loragen_core/train_data.py):
    system_prompt  the task description + k solved examples from the same train split
    edge_prompt    what the edge model reads at evaluation
    output         what the trainer teaches
    instruction    system_prompt + edge_prompt (for `--method lora --prompt full`)
plus id, kind (the task) and gold_tool (empty), so a GPT4Tools file (same columns) can be mixed in
with `--data this.jsonl gpt4tools.jsonl`.

The format is what lm-evaluation-harness scores (harness.py, Table 2): edge_prompt is the harness's
doc_to_text ("Question: ...\nAnswer:"), output its target delimiter and the gold choice (" yes"), both
plain text (template "text": no chat template, no end-of-turn token); the shots are harness shots, as
the harness-scored loragen modes write them.

System prompts (ours): each task reserves SHOT_SOURCE_SIZE train items as the shots' source, and the
training rows come from the rest, so no row ever sees itself as an example. With
`prompts_per_task=P` every task gets a fixed pool of P system prompts, each a different draw of k
shots, and rows cycle through them: the generator still sees several prompts per task, and the cpu
recipe's cloud LM reads only 5·P distinct prompts. With P=0 every row draws its own k shots (many more
distinct prompts: right for the paper recipe, slow for the cpu one).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from .tasks import DEFAULT_SHOTS, SEEN_TASKS, Item, Task, get_task, load_items

SHOT_SOURCE_SIZE = 200  # per task (at most half its train split); ARC-Challenge, the smallest, has 1119
DEFAULT_ROWS_PER_TASK = 1000
DEFAULT_PROMPTS_PER_TASK = 16


class HarnessFormat:
    """lm-evaluation-harness's: its doc_to_text as the context, delimiter + gold choice as the
    continuation, rendered by the harness's own task objects (so their process_docs apply)."""

    template = "text"

    def __init__(self, task: Task, pairs: dict[str, tuple[str, str]]):
        self.task = task
        self.pairs = pairs  # item id → (context, continuation)

    @classmethod
    def for_tasks(cls, splits: dict[str, tuple[Task, list[Item]]]) -> dict:
        from .harness import load_harness_tasks, solved_pair

        with tempfile.TemporaryDirectory(prefix="loragen-build-") as scratch:
            objects = load_harness_tasks(Path(scratch), [(task, items, items[:1]) for task, items in splits.values()])
            return {name: cls(task, {item.id: solved_pair(objects[name], doc) for item, doc in zip(items, objects[name].validation_docs())})
                    for name, (task, items) in splits.items()}

    def system_prompt(self, shots: list[Item]) -> str:
        from .harness import harness_system_prompt

        return harness_system_prompt(self.task, ["".join(self.pairs[s.id]) for s in shots])

    def example(self, item: Item) -> tuple[str, str]:
        return self.pairs[item.id]


def draw_shots(task: Task, pool: list[Item], k: int, rng: random.Random) -> list[Item]:
    if k > len(pool):
        raise ValueError(f"{task.name}: {k} shots asked for, but only {len(pool)} items to draw from.")
    return rng.sample(pool, k)


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
    splits, rngs = {}, {}
    for name in tasks:
        task = get_task(name)
        if not task.seen:
            raise ValueError(f"{name} is an unseen task: it is never trained on.")
        items = load_items(task, "train", data_dir)
        rngs[name] = rng = random.Random(f"{name}:{seed}")
        order = rng.sample(items, len(items))
        reserved = min(SHOT_SOURCE_SIZE, len(items) // 2)  # a small train file keeps half for rows
        source, candidates = order[:reserved], order[reserved:]
        splits[name] = (task, source, sorted(candidates[:rows_per_task], key=lambda item: item.index))
    renderings = HarnessFormat.for_tasks({name: (task, source + chosen) for name, (task, source, chosen) in splits.items()})
    rows = []
    for name, (task, source, chosen) in splits.items():
        rendering, rng = renderings[name], rngs[name]
        pool = _distinct_prompts(rendering, source, shots, prompts_per_task, rng)
        for position, item in enumerate(chosen):
            system = pool[position % len(pool)] if pool else rendering.system_prompt(draw_shots(task, source, shots, rng))
            edge, output = rendering.example(item)
            rows.append({"id": item.id, "kind": name, "gold_tool": "", "system_prompt": system, "edge_prompt": edge,
                         "instruction": f"{system}\n\n{edge}", "output": output, "template": rendering.template})
    random.Random(seed).shuffle(rows)  # tasks interleaved: any prefix of the file is a mix
    return rows


def _distinct_prompts(rendering, source: list[Item], shots: int, n: int, rng: random.Random) -> list[str]:
    """n system prompts with different shots (fewer if the source cannot give n different draws)."""
    pool: list[str] = []
    for _ in range(20 * n):
        if len(pool) == n:
            break
        prompt = rendering.system_prompt(draw_shots(rendering.task, source, shots, rng))
        if prompt not in pool:
            pool.append(prompt)
    return pool
