"""The GPT4Tools test set: where it is, how to read it, and deterministic stratified subsets.

The file is research-only and is never copied into the project: it is read from
`../shared/data/gpt4tools/` beside the checkout, or from a path the user gives.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .scorer import ACTION

TEST_FILE_NAME = "gpt4tools_test_unseen_tools.json"
DEFAULT_TEST_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpt4tools" / TEST_FILE_NAME
NO_TOOL = "(no tool)"
OBTAIN_HINT = (
    "The GPT4Tools unseen-tool test set (gpt4tools_test_unseen.json, 652 items) is linked from the README "
    "of github.com/AILab-CVC/GPT4Tools; save it and pass --data PATH, or place it at "
    f"{DEFAULT_TEST_FILE}."
)


class DatasetError(ValueError):
    """The test file is missing or not in the GPT4Tools format."""


def load_test_items(path: str | Path | None = None) -> list[dict]:
    path = Path(path) if path else DEFAULT_TEST_FILE
    if not path.is_file():
        raise DatasetError(f"GPT4Tools test file not found at {path}. {OBTAIN_HINT}")
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) and {"id", "instruction", "output"} <= i.keys() for i in items):
        raise DatasetError(f"{path} must be a JSON list of items with id, instruction and output.")
    return items


def gold_tool(item: dict) -> str:
    actions = ACTION.findall(item["output"])
    return actions[0].strip() if actions else NO_TOOL


def stratified_subset(items: list[dict], limit: int | None) -> list[dict]:
    """`limit` items taken round-robin over gold tools (in name order, items in file order).

    Deterministic, and every prefix is as balanced as possible, so small runs of different modes
    compare on the same items.
    """
    if limit is None or limit >= len(items):
        return list(items)
    by_tool: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        by_tool[gold_tool(item)].append(item)
    queues = [by_tool[name] for name in sorted(by_tool)]
    chosen: list[dict] = []
    depth = 0
    while len(chosen) < limit:
        for queue in queues:
            if depth < len(queue) and len(chosen) < limit:
                chosen.append(queue[depth])
        depth += 1
    return chosen
