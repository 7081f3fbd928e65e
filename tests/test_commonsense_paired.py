"""`python -m eval_commonsense compare`: paired comparison of runs from their records, by task group."""

from __future__ import annotations

import json

from eval_commonsense.__main__ import main
from loragen_core.paired import mcnemar_exact_p


def write_run(directory, method: str, rights: dict):
    """`rights`: (task, index) → whether the run picks the gold option (option 0 is always gold)."""
    directory.mkdir(parents=True)
    lines = [json.dumps({"id": f"{task}/test/{i}", "task": task, "gold": 0, "logliks": [-1.0, -2.0] if right else [-2.0, -1.0]})
             for (task, i), right in rights.items()]
    (directory / "records.jsonl").write_text("\n".join(lines) + "\n")
    (directory / "metrics.json").write_text(json.dumps({"method": method}))
    return directory


def test_compare_counts_discordant_items_per_task_group(tmp_path, capsys):
    # BoolQ is a seen task, HellaSwag an unseen one.
    a = write_run(tmp_path / "a", "lora", {("BoolQ", 0): True, ("BoolQ", 1): True, ("HellaSwag", 0): False, ("HellaSwag", 1): True})
    b = write_run(tmp_path / "b", "loragen", {("BoolQ", 0): False, ("BoolQ", 1): True, ("HellaSwag", 0): True, ("HellaSwag", 1): True})
    out = tmp_path / "paired"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    [everything] = json.loads(out.with_suffix(".json").read_text())
    assert (everything["a"], everything["b"], everything["n_items"]) == ("lora", "loragen", 4)
    assert (everything["both"], everything["only_a"], everything["only_b"], everything["neither"]) == (2, 1, 1, 0)
    assert everything["p_value"] == mcnemar_exact_p(1, 1)
    main(["compare", str(a), str(b), "--tasks", "unseen", "--out", str(out)])
    [unseen] = json.loads(out.with_suffix(".json").read_text())
    assert (unseen["n_items"], unseen["only_a"], unseen["only_b"]) == (2, 0, 1)
    assert "acc (unseen tasks)" in capsys.readouterr().out


def test_missing_or_damaged_runs_are_clear_errors(tmp_path, capsys):
    a = write_run(tmp_path / "a", "lora", {("BoolQ", 0): True})
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "has no records.jsonl" in capsys.readouterr().err
    assert main(["compare", str(a)]) == 2
    assert "at least two" in capsys.readouterr().err
    b = write_run(tmp_path / "b", "loragen", {("BoolQ", 0): True})
    with (b / "records.jsonl").open("a") as records:
        records.write('{"id": "BoolQ/test/1", "task": "Bo')
    assert main(["compare", str(a), str(b)]) == 2
    assert "records.jsonl:2 is not a JSON record" in capsys.readouterr().err
