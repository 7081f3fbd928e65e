"""`python -m eval_gpt4tools table`: finished runs → one JSON/Markdown/PNG table."""

from __future__ import annotations

import json

from eval_gpt4tools.__main__ import main
from eval_gpt4tools.table import ROW_KEYS


def fake_run(directory, sr: float, n: int):
    directory.mkdir(parents=True)
    metrics = {"method": "x", "SR_t": sr, "SR_act": sr, "SR_args": sr, "SR": sr, "IoU": sr, "mean_edge_prompt_tokens": 130.0,
               "mean_full_prompt_tokens": 686.0, "compression": 5.2, "median_latency_s": 1.5, "p90_latency_s": 3.0, "n_items": n}
    (directory / "metrics.json").write_text(json.dumps(metrics))
    return directory


def test_rows_keep_their_names_and_required_keys(tmp_path, capsys):
    icl, loragen = fake_run(tmp_path / "icl", 0.1, 100), fake_run(tmp_path / "lg", 0.4, 100)
    out = tmp_path / "results" / "table3"
    assert main(["table", "--row", f"icl={icl}", "--row", f"loragen={loragen}", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["method"] for r in rows] == ["icl", "loragen"]
    assert all(set(ROW_KEYS) <= set(r) for r in rows) and rows[1]["SR"] == 0.4
    assert "| loragen | 40.0 |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0
    assert "compare rows" not in out.with_suffix(".md").read_text()


def test_rows_of_different_sizes_are_flagged(tmp_path):
    out = tmp_path / "t"
    main(["table", "--row", f"a={fake_run(tmp_path / 'a', 0.1, 652)}", "--row", f"b={fake_run(tmp_path / 'b', 0.2, 100)}", "--out", str(out)])
    assert "compare rows with the same n only" in out.with_suffix(".md").read_text()


def test_unfinished_runs_and_bad_rows_are_clear_errors(tmp_path, capsys):
    assert main(["table", "--row", f"icl={tmp_path}", "--out", str(tmp_path / "t")]) == 2
    assert "has no metrics.json" in capsys.readouterr().err
    assert main(["table", "--row", "no-equals-sign", "--out", str(tmp_path / "t")]) == 2
    assert "NAME=RUN_DIR" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_a_batched_row_takes_its_latency_from_a_batch_one_run(tmp_path, capsys):
    batched = fake_run(tmp_path / "lg652", 0.4, 652)
    metrics = json.loads((batched / "metrics.json").read_text())
    (batched / "metrics.json").write_text(json.dumps(metrics | {"median_latency_s": None, "p90_latency_s": None, "batch_size": 8}))
    timed = fake_run(tmp_path / "lg100", 0.3, 100)
    out = tmp_path / "t"
    assert main(["table", "--row", f"loragen={batched}", "--row", f"icl={fake_run(tmp_path / 'icl', 0.0, 652)}", "--out", str(out)]) == 0
    assert "| – | – | 652 |" in out.with_suffix(".md").read_text(), "no latency is made up for a batched run"
    assert main(["table", "--row", f"loragen={batched}", "--latency", f"loragen={timed}", "--out", str(out)]) == 0
    row = json.loads(out.with_suffix(".json").read_text())[0]
    assert row["median_latency_s"] == 1.5 and row["SR"] == 0.4 and row["n_items"] == 652
    assert row["latency_from"].endswith("(batch 1, 100 items)") and row["batch_size"] == 8
    assert main(["table", "--row", f"loragen={batched}", "--latency", f"lora={timed}", "--out", str(out)]) == 2
    assert "names no --row" in capsys.readouterr().err
    assert main(["table", "--row", f"loragen={timed}", "--latency", f"loragen={batched}", "--out", str(out)]) == 2
    assert "batched too" in capsys.readouterr().err
