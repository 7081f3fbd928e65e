"""The commonsense tasks scored by lm-evaluation-harness itself: each local item reaches the harness's
own task in the harness's own format (the conformance check), and a harness run scores, resumes and
refuses another run's directory."""

from __future__ import annotations

import json

import pytest

from eval_commonsense.harness import HARNESS_TASKS, plan, write_task
from eval_commonsense.harness_run import SUMMARY_KEYS, TASKS_LOG, HarnessConfig, run_harness
from eval_commonsense.tasks import DEFAULT_DATA_DIR
from loragen_core.resumable_run import read_records

needs_data = pytest.mark.skipif(
    not DEFAULT_DATA_DIR.is_dir(), reason=f"the commonsense data is not at {DEFAULT_DATA_DIR} (../shared/data/commonsense)"
)


def _harness_task(tmp_path, task, items, pool):
    from lm_eval.tasks import TaskManager

    name = write_task(tmp_path, task, items, pool)
    return TaskManager(include_path=str(tmp_path)).load([name])["tasks"][name]


def _expected(task_name: str, item) -> tuple:
    """(context, choices, target) as the harness's task files define them, from our parsed item."""
    q, options, gold = item.question, list(item.options), item.gold
    if task_name in ("ARC-Challenge", "ARC-Easy", "PIQA"):
        return f"Question: {q}\nAnswer:", options, gold
    if task_name == "OpenBookQA":
        return q, options, gold
    if task_name == "BoolQ":  # options ("true", "false") → the harness's ("no", "yes")
        return f"Question: {q.rstrip('?')}?\nAnswer:", ["no", "yes"], 1 - gold
    if task_name == "SocialIQA":
        return f"Q: {q}\nA:", options, gold
    if task_name == "HellaSwag":
        return " ".join(q.split()), [" ".join(o.split()) for o in options], gold
    if task_name == "WinoGrande":  # partial scoring: the sentence up to the blank, filled by each option
        blank = q.index("_")
        return gold, [q[:blank] + o for o in options], q[blank + 1 :].strip()
    raise AssertionError(task_name)


@needs_data
def test_every_task_reaches_the_harness_in_its_own_format(tmp_path):
    for task, items, pool in plan(tuple(HARNESS_TASKS), 4, None):
        (tmp_path / task.directory).mkdir()
        harness_task = _harness_task(tmp_path / task.directory, task, items, pool[:3])
        docs = list(harness_task.validation_docs())
        assert len(docs) == len(items) == 4
        for item, doc in zip(items, docs):
            context, choices, target = _expected(task.name, item)
            got = (harness_task.doc_to_text(doc), harness_task.doc_to_choice(doc), harness_task.doc_to_target(doc))
            if task.name == "HellaSwag":  # the harness's preprocessing also collapses blanks
                got = (" ".join(got[0].split()), [" ".join(c.split()) for c in got[1]], int(got[2]))
            assert got == (context, choices, target), (task.name, item.id)
        assert len(list(harness_task.fewshot_docs())) == 3, "the shot pool is the harness's few-shot split"


@pytest.mark.real_model
@needs_data
def test_a_harness_run_scores_each_item_resumes_and_refuses_another_runs_directory(tmp_path):
    config = HarnessConfig(mode="base", out=tmp_path / "run", tasks=("PIQA", "WinoGrande"), limit_per_task=6)
    summary = run_harness(config)
    assert set(summary["tasks"]) == {"PIQA", "WinoGrande"} and summary["scorer"] == "lm-evaluation-harness"
    piqa = read_records(config.out / TASKS_LOG)["PIQA"]
    assert piqa["n"] == 6 and len(piqa["rights"]) == 6 and piqa["acc_norm"] is not None
    assert piqa["acc"] == pytest.approx(sum(piqa["rights"].values()) / 6)  # acc is the mean of the items' acc

    before = (config.out / TASKS_LOG).read_text()
    run_harness(config)  # finished tasks are not run again
    assert (config.out / TASKS_LOG).read_text() == before
    with pytest.raises(ValueError, match="different configuration"):
        run_harness(HarnessConfig(mode="icl", out=config.out, tasks=("PIQA",), limit_per_task=6))


@pytest.mark.real_model
@needs_data
def test_loragen_mode_merges_the_adapter_of_a_system_prompt_written_in_the_harness_format(tmp_path):
    config = HarnessConfig(mode="loragen", out=tmp_path / "run", tasks=("PIQA",), limit_per_task=3, shots=2)
    run_harness(config)
    record = read_records(config.out / TASKS_LOG)["PIQA"]
    prompt = record["specialisation"]["system_prompt"]
    assert prompt.startswith("Task: choose the solution") and prompt.count("Question: ") == 2 and prompt.count("\nAnswer: ") == 2
    assert len(record["specialisation"]["adapter_hash"]) == 64 and record["num_fewshot"] == 0


@needs_data
def test_harness_format_training_rows_are_the_harness_s_own_solved_examples(tmp_path):
    from eval_commonsense.build_data import build_rows
    from eval_commonsense.tasks import SEEN_TASKS, get_task, load_items

    rows = build_rows(rows_per_task=6, shots=2, prompts_per_task=2, seed=3)
    assert {r["kind"] for r in rows} == set(SEEN_TASKS) and len(rows) == 30 and {r["template"] for r in rows} == {"text"}
    for name in SEEN_TASKS:  # each row is the harness's (context, delimiter + gold choice) for its train item
        task = get_task(name)
        mine = [r for r in rows if r["kind"] == name]
        by_id = {item.id: item for item in load_items(task, "train")}
        items = [by_id[r["id"]] for r in mine]
        (tmp_path / name).mkdir()
        harness_task = _harness_task(tmp_path / name, task, items, items[:1])
        for row, doc in zip(mine, harness_task.validation_docs()):
            choices = harness_task.doc_to_choice(doc)
            assert row["edge_prompt"] == harness_task.doc_to_text(doc)
            assert row["output"] == " " + choices[harness_task.doc_to_target(doc)]
            assert row["system_prompt"].startswith(task.description) and row["system_prompt"].count("\n\n") == 3  # 2 shots
            assert row["edge_prompt"] + row["output"] not in row["system_prompt"]  # never its own example
    boolq = [r["output"] for r in rows if r["kind"] == "BoolQ"]
    assert set(boolq) <= {" yes", " no"}


@needs_data
def test_a_winogrande_shot_is_its_sentence_with_the_gold_option_filled_in(tmp_path):
    from eval_commonsense.harness import shot_text

    (task, items, pool), = plan(("WinoGrande",), 3, None)
    harness_task = _harness_task(tmp_path, task, items, pool[:1])
    for item, doc in zip(items, harness_task.validation_docs()):
        assert " ".join(shot_text(harness_task, doc).split()) == " ".join(item.question.replace("_", item.options[item.gold]).split())


@pytest.mark.real_model
def test_text_rows_are_tokenized_as_the_harness_scores_a_continuation():
    from lm_eval.models.huggingface import HFLM

    from loragen_core import load_causal_lm
    from loragen_core.edge_runtime import EdgeModel
    from loragen_core.objective import IGNORE_INDEX
    from loragen_core.train_data import TrainingDataError, encode_example

    edge = EdgeModel(load_causal_lm())
    lm = HFLM(pretrained=edge.model, tokenizer=edge.tokenizer, batch_size=1, device="cpu")
    for context, continuation in [("Question: Is the sky blue?\nAnswer:", " yes"), ("Q: Remy went home. Why?\nA: ", "to rest"),
                                  ("How do you fold a shirt?", " Lay it flat, fold the sleeves in.")]:
        context_ids, continuation_ids = lm._encode_pair(context, continuation)
        ids, labels = encode_example(edge.tokenizer, context, continuation, template="text")
        assert ids == context_ids + continuation_ids  # the tokens the harness scores are the ones learnt
        assert labels == [IGNORE_INDEX] * len(context_ids) + continuation_ids
    with pytest.raises(TrainingDataError, match="Unknown template"):
        encode_example(edge.tokenizer, "a", "b", template="html")


@pytest.mark.real_model
@needs_data
def test_latency_times_the_harness_s_own_icl_and_zero_shot_requests(tmp_path):
    from eval_commonsense.harness_latency import LATENCY_STEM, LatencyConfig, measure, write_latency

    result = measure(LatencyConfig(items_per_task=2, shots=2, tasks=("BoolQ", "WinoGrande"), repeats=1))
    for name, row in result["tasks"].items():
        assert row["n"] == 2 and row["median_icl_s"] > 0 and row["median_zero_shot_s"] > 0
        # two shots in the harness's format come before the question: the icl context is the longer one
        assert row["mean_icl_context_tokens"] > row["mean_zero_shot_context_tokens"] + 10, name
        assert row["ratio"] == pytest.approx(row["median_icl_s"] / row["median_zero_shot_s"])
    text = write_latency(result, tmp_path)
    assert "| BoolQ | 2 |" in text and json.loads((tmp_path / f"{LATENCY_STEM}.json").read_text())["tasks"].keys() == {"BoolQ", "WinoGrande"}


def _fake_run(directory, tasks: dict[str, dict[str, float]], context_tokens: float = 10.0):
    """A finished harness run: task name → item id → acc."""
    directory.mkdir(parents=True)
    summary = {"mode": directory.name, "tasks": {}, "machine": {"cpu": "test"}}
    lines = []
    for name, rights in tasks.items():
        acc = sum(rights.values()) / len(rights)
        record = {"id": name, "n": len(rights), "acc": acc, "acc_norm": None, "num_fewshot": 0, "seconds": 1.0,
                  "mean_context_tokens": context_tokens, "rights": rights}
        lines.append(json.dumps(record) + "\n")
        summary["tasks"][name] = {k: record[k] for k in SUMMARY_KEYS}
    (directory / TASKS_LOG).write_text("".join(lines))
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def test_the_harness_table_pairs_loragen_with_lora_on_the_seen_items_and_with_icl_on_each_unseen_task(tmp_path):
    from eval_commonsense.harness_report import write_harness_table

    seen = {f"BoolQ/test/{i}": 1.0 for i in range(6)}
    loragen = _fake_run(tmp_path / "loragen", {"BoolQ": seen, "PIQA": {"PIQA/test/0": 1.0, "PIQA/test/1": 0.0}})
    lora = _fake_run(tmp_path / "lora", {"BoolQ": {**seen, "BoolQ/test/0": 0.0, "BoolQ/test/1": 0.0}})
    icl = _fake_run(tmp_path / "icl", {"PIQA": {"PIQA/test/0": 0.0, "PIQA/test/1": 0.0}}, context_tokens=40.0)
    rows, text = write_harness_table([("loragen", loragen), ("lora", lora), ("icl", icl)], tmp_path / "results")

    assert [r["method"] for r in rows] == ["loragen", "lora", "icl"] and rows[0]["PIQA"] == 0.5 and rows[0]["AVE"] is None
    assert rows[0]["context_vs_icl"] == 0.25 and rows[2]["context_vs_icl"] == 1.0  # on PIQA, the one task both scored
    pairs = json.loads((tmp_path / "results" / "commonsense_harness_table2.json").read_text())["paired"]
    assert [(p["a"], p["b"], p["metric"], p["only_a"], p["only_b"]) for p in pairs] == [
        ("loragen", "lora", "acc, seen tasks pooled", 2, 0), ("loragen", "icl", "acc, PIQA", 1, 0)]
    assert "| loragen | lora |" in text


def test_carry_over_completes_rows_from_an_earlier_table_and_refuses_runs_that_disagree(tmp_path):
    from eval_commonsense.harness_report import CarryOverError, write_harness_table
    from eval_commonsense.tasks import SEEN_TASKS, UNSEEN_TASKS

    def items(task, rights):
        return {f"{task}/test/{i}": r for i, r in enumerate(rights)}

    every = {t: items(t, [1.0, 0.0]) for t in (*SEEN_TASKS, *UNSEEN_TASKS)}
    earlier_runs = tmp_path / "earlier"
    seen_icl = {t: items(t, [1.0, 1.0]) for t in SEEN_TASKS}
    write_harness_table([("loragen", _fake_run(earlier_runs / "loragen", every)),
                         ("lora", _fake_run(earlier_runs / "lora", every)),
                         ("icl", _fake_run(earlier_runs / "icl", seen_icl, context_tokens=40.0))], earlier_runs)
    earlier = earlier_runs / "commonsense_harness_table2.json"

    now = tmp_path / "now"
    unseen_icl = _fake_run(now / "icl", {t: items(t, [0.0, 0.0]) for t in UNSEEN_TASKS}, context_tokens=20.0)
    loragen = _fake_run(now / "loragen", {t: every[t] for t in UNSEEN_TASKS})
    rows, text = write_harness_table([("icl", unseen_icl), ("loragen", loragen)], now, carry_over=earlier)

    by_name = {r["method"]: r for r in rows}
    assert [r["method"] for r in rows] == ["loragen", "lora", "icl"]
    icl = by_name["icl"]
    assert icl["carried"] == sorted(SEEN_TASKS) and icl["AVE"] == pytest.approx(len(SEEN_TASKS) / 8)
    # a mean over five tasks at 40 tokens and three at 20: the combined mean is over all eight
    assert icl["mean_context_tokens"] == pytest.approx((5 * 40 + 3 * 20) / 8)
    assert len(by_name["lora"]["carried"]) == 8 and by_name["lora"]["HAR"] == pytest.approx(0.5)  # copied whole
    assert by_name["loragen"]["context_vs_icl"] == pytest.approx(10 / 32.5)
    pairs = json.loads((now / "commonsense_harness_table2.json").read_text())["paired"]
    # loragen vs icl recomputed on each unseen task now; loragen vs lora (seen, pooled) kept from the earlier table
    assert [(p["metric"], p.get("carried", False)) for p in pairs] == [
        *((f"acc, {t}", False) for t in UNSEEN_TASKS), ("acc, seen tasks pooled", True)]
    assert "†" in text and "carried over from" in text

    other = _fake_run(tmp_path / "other" / "loragen", {"PIQA": items("PIQA", [1.0, 1.0])})
    with pytest.raises(CarryOverError, match="disagree on PIQA"):
        write_harness_table([("loragen", other)], tmp_path / "other", carry_over=earlier)


def test_ave_and_har_on_a_hand_computed_case():
    from eval_commonsense.harness_report import average, harmonic_mean

    accuracies = [0.5, 0.25, 1.0]
    assert average(accuracies) == pytest.approx(1.75 / 3)
    assert harmonic_mean(accuracies) == pytest.approx(3 / (2 + 4 + 1))  # = 0.428571...
    assert harmonic_mean([0.8, 0.0]) == 0.0
    assert harmonic_mean([0.6] * 8) == pytest.approx(0.6)
