"""The eight commonsense tasks: where their files are, how an item is parsed, which items are used.

Files are the LLM-Adapters JSON lists in `../shared/data/commonsense/` (provenance in its
README), read with `datasets.load_dataset("json")`. Each row's `instruction` is a fixed template —
preamble, question, numbered options, "Answer format: ..." — and `answer` names the gold option
(`answer3`, `true`, `option2`, ...). Parsing recovers the question and the option texts, so prompts
can be rendered without the label-format line and the options scored by their text.

Splits (ours where the paper is silent):
    seen tasks    evaluated on the whole test file; few-shot examples come from the train file
    unseen tasks  never trained on; the last HELD_OUT_SHOTS items of the test file are the pool
                  few-shot examples come from, and are not evaluated (HellaSwag has no train file
                  here, so all three unseen tasks are treated alike)
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "commonsense"
HELD_OUT_SHOTS = 50  # per unseen task: test items reserved as the few-shot pool, never scored
SUBSET_SEED = 0  # `limit_per_task` takes a prefix of one fixed permutation: smaller runs are subsets of larger ones
OBTAIN_HINT = (
    "The commonsense data (LLM-Adapters format, see ../shared/data/commonsense/README.md) is expected in "
    f"{DEFAULT_DATA_DIR}; copy that folder there or pass --data-dir DIR."
)


class CommonsenseDataError(ValueError):
    """A task file is missing or an item does not follow its task's template."""


@dataclass(frozen=True)
class Task:
    name: str
    directory: str
    test_file: str
    train_file: str | None  # None for unseen tasks: never trained on
    prefix: str  # the template's preamble, before the question
    option_label: str | None  # "Answer" for "Answer1: ..."; None for BoolQ (true/false)
    description: str  # (ours) the task description that opens the system prompt

    @property
    def seen(self) -> bool:
        return self.train_file is not None


_CHOOSE = "Choose the correct option and reply with its text only."
TASKS: tuple[Task, ...] = (
    Task("ARC-Challenge", "ARC-Challenge", "test.json", "train.json", "Please choose the correct answer to the question: ", "Answer",
         f"Task: answer a grade-school science question from the challenge set of ARC, the questions that simple retrieval and word co-occurrence get wrong. {_CHOOSE}"),
    Task("ARC-Easy", "ARC-Easy", "test.json", "train.json", "Please choose the correct answer to the question: ", "Answer",
         f"Task: answer a grade-school science question from the easy set of ARC. {_CHOOSE}"),
    Task("OpenBookQA", "openbookqa", "test.json", "train.json", "Please choose the correct answer to the question: ", "Answer",
         f"Task: answer an elementary science question that combines a basic science fact with broad common knowledge. {_CHOOSE}"),
    Task("BoolQ", "boolq", "test.json", "train.json", "Please answer the following question with true or false, question: ", None,
         "Task: answer a yes/no question about a general-knowledge fact. Reply with true or false only."),
    Task("SocialIQA", "social_i_qa", "test.json", "train.derived.json", "Please choose the correct answer to the question: ", "Answer",
         f"Task: reason about a social situation: people's motivations, reactions, needs and what happens next. {_CHOOSE}"),
    Task("HellaSwag", "hellaswag", "test.derived.json", None, "Please choose the correct ending to complete the given sentence: ", "Ending",
         "Task: read the start of a description of an everyday activity and choose the ending that most plausibly continues it. "
         "Reply with the text of that ending only."),
    Task("WinoGrande", "winogrande", "test.json", None,
         "Please choose the correct answer to fill in the blank to complete the given sentence: ", "Option",
         "Task: fill in the blank (_) of a sentence with the option it refers to, using commonsense about the situation. "
         "Reply with the correct option only."),
    Task("PIQA", "piqa", "test.json", None, "Please choose the correct solution to the question: ", "Solution",
         "Task: choose the solution that achieves the given goal, using physical commonsense about everyday objects. "
         "Reply with the text of the correct solution only."),
)
TASKS_BY_NAME = {t.name: t for t in TASKS}
TASK_NAMES = tuple(t.name for t in TASKS)
SHORT = {"ARC-Challenge": "ARC-c", "ARC-Easy": "ARC-e", "OpenBookQA": "OBQA", "BoolQ": "BoolQ", "SocialIQA": "SIQA",
         "HellaSwag": "HellaS*", "WinoGrande": "WinoG*", "PIQA": "PIQA*"}  # table columns; * unseen
DEFAULT_SHOTS = 5  # k: icl's shots, and the solved examples in a task's system prompt
SEEN_TASKS = tuple(t.name for t in TASKS if t.seen)
UNSEEN_TASKS = tuple(t.name for t in TASKS if not t.seen)


@dataclass(frozen=True)
class Item:
    task: str
    split: str  # "train" or "test"
    index: int  # row in the file
    question: str
    options: tuple[str, ...]
    gold: int  # index into options

    @property
    def id(self) -> str:
        return f"{self.task}/{self.split}/{self.index}"

    @property
    def answer(self) -> str:
        return self.options[self.gold]


def get_task(name: str) -> Task:
    if name not in TASKS_BY_NAME:
        raise CommonsenseDataError(f"Unknown task {name!r}; choose from {', '.join(TASKS_BY_NAME)}.")
    return TASKS_BY_NAME[name]


def parse_row(task: Task, row: dict, split: str, index: int) -> Item:
    """Question, option texts and gold index from one LLM-Adapters row."""
    where = f"{task.name} {split} item {index}"
    text = row.get("instruction") or ""
    if not text.startswith(task.prefix):
        raise CommonsenseDataError(f"{where} does not start with the {task.name} template {task.prefix!r}.")
    body, marker, _ = text[len(task.prefix) :].rpartition("Answer format:")
    if not marker:
        raise CommonsenseDataError(f"{where} has no 'Answer format:' line.")
    if task.option_label is None:
        question, options, labels = body.strip(), ("true", "false"), ("true", "false")
    else:
        first = body.find(f"\n\n{task.option_label}1: ")
        if first < 0:
            raise CommonsenseDataError(f"{where} has no '{task.option_label}1:' option.")
        question = body[:first].strip()
        parts = re.split(rf"\s*\b{task.option_label}(\d+): ", body[first:])
        numbers, options = parts[1::2], tuple(p.strip() for p in parts[2::2])
        if parts[0].strip() or numbers != [str(i) for i in range(1, len(numbers) + 1)] or len(options) < 2:
            raise CommonsenseDataError(f"{where}: cannot split its options {body[first:][:120]!r}.")
        labels = tuple(f"{task.option_label.lower()}{i}" for i in range(1, len(options) + 1))
    if not question or not all(options):
        raise CommonsenseDataError(f"{where} has an empty question or option.")
    answer = row.get("answer")
    if answer not in labels:
        raise CommonsenseDataError(f"{where}: answer {answer!r} is none of {', '.join(labels)}.")
    return Item(task.name, split, index, question, options, labels.index(answer))


def task_file(task: Task, split: str, data_dir: Path | None = None) -> Path:
    name = task.test_file if split == "test" else task.train_file
    if name is None:
        raise CommonsenseDataError(f"{task.name} is an unseen task: it has no train split here.")
    return Path(data_dir or DEFAULT_DATA_DIR) / task.directory / name


def load_items(task: Task, split: str, data_dir: Path | None = None) -> list[Item]:
    from datasets import load_dataset

    path = task_file(task, split, data_dir)
    if not path.is_file():
        raise CommonsenseDataError(f"{task.name} {split} file not found at {path}. {OBTAIN_HINT}")
    try:
        rows = load_dataset("json", data_files=str(path), split="train").to_list()
    except Exception as error:  # datasets raises several types for malformed JSON
        raise CommonsenseDataError(f"Cannot read {path} as JSON: {error}") from error
    return [parse_row(task, row, split, index) for index, row in enumerate(rows)]


def eval_items(task: Task, data_dir: Path | None = None) -> list[Item]:
    """The scored items: the whole test file, less the few-shot pool for unseen tasks."""
    items = load_items(task, "test", data_dir)
    return items if task.seen else items[:-HELD_OUT_SHOTS]


def shot_pool(task: Task, data_dir: Path | None = None) -> list[Item]:
    """Where few-shot examples for the task's system prompt come from (never scored)."""
    return load_items(task, "train", data_dir) if task.seen else load_items(task, "test", data_dir)[-HELD_OUT_SHOTS:]


def subset(items: list[Item], limit: int | None) -> list[Item]:
    """`limit` items, deterministic: a prefix of one seeded permutation, returned in file order."""
    if limit is None or limit >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(SUBSET_SEED).shuffle(order)
    return [items[i] for i in sorted(order[:limit])]
