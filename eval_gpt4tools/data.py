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
    items = read_json(path, DatasetError)
    # `input` is optional (the runner never reads it) but, like the others, must be text when present.
    check_items(items, path, DatasetError, ("instruction", "output"), optional=("input",))
    return items


def read_json(path: Path, error: type[Exception]):
    """Parse a JSON file; any way it cannot be read becomes `error`, a message naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 text, so it cannot be JSON.") from None
    except RecursionError:  # json recurses once per nested [ or {; hostile files nest 100000 deep
        raise error(f"{path} nests JSON lists or objects too deeply to read.") from None
    except ValueError as failure:  # JSONDecodeError, or an integer of more than 4300 digits
        raise error(f"{path} is not valid JSON: {failure}") from None


def check_items(items, path: Path, error: type[Exception], fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """Raise `error` at the first item that is not an object with a unique str/int id and string `fields`.

    Run code indexes items by id and treats fields as text, so anything else would surface later as
    a traceback (an unhashable id), a wrong score (duplicate ids silently merged) or a crash mid-run.
    """
    shape = f"a JSON list of objects with id, {', '.join(fields)}"
    if not isinstance(items, list):
        raise error(f"{path} must be {shape}, not {json_type(items)}.")
    seen: dict[str | int, int] = {}
    for index, item in enumerate(items):
        where = f"{path}: item {index}"
        if not isinstance(item, dict):
            raise error(f"{where} is {json_type(item)}; the file must be {shape}.")
        for field in ("id", *fields):
            if field not in item:
                raise error(f"{where} has no {field!r} field; the file must be {shape}.")
        key = item["id"]
        if isinstance(key, bool) or not isinstance(key, (str, int)):  # bool is an int in Python, not an id
            raise error(f"{where}: 'id' is {json_type(key)}; ids must be strings or integers.")
        for field in (*fields, *(f for f in optional if f in item)):
            if not isinstance(item[field], str):
                raise error(f"{where} (id {_brief(key)}): {field!r} is {json_type(item[field])}, not a string.")
        if key in seen:
            raise error(f"{path}: id {_brief(key)} occurs more than once, at items {seen[key]} and {index}; ids must be unique.")
        seen[key] = index


def json_type(value) -> str:
    """What a parsed JSON value is, in JSON's words (messages never print the value: it may be huge)."""
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _brief(key: str | int) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:50] + "..."


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
