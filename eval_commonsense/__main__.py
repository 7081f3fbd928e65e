"""`python -m eval_commonsense`: the paper's Table 2, eight commonsense tasks (three unseen).

With no subcommand: the main job — icl, loragen and loragen-1shot (and lora, given --adapter) on
--limit-per-task items per task (default 300), then the table.

    harness     score one mode with lm-evaluation-harness itself (its formats, acc and acc_norm)
    harness-table    Table 2 from harness runs, with the paired tests of its targets
    harness-latency  edge latency per item, icl against loragen's zero-shot prompt, in one run
    run         run one mode over the tasks (resumable; the old chat-template format)
    table       gather finished runs into results/commonsense_table2.{json,md,png}
    compare     paired, item-by-item comparison of finished runs (exact McNemar test)
    build-data  training data from the five seen tasks, for `python -m loragen_core.train --data`
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loragen_core.errors import USER_ERRORS

from .harness import HARNESS_MODES
from .prompts import DEFAULT_SHOTS, MODES
from .runner import RunConfig, RunSummary
from .tasks import DEFAULT_DATA_DIR, TASKS

MAIN_JOB_LIMIT = 300
DEFAULT_RUNS_DIR = Path("runs") / "commonsense"
DEFAULT_RESULTS_DIR = Path("results")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval_commonsense", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(parser)
    parser.add_argument("--limit-per-task", type=int, default=MAIN_JOB_LIMIT, help=f"Items per task (default {MAIN_JOB_LIMIT}).")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="Each mode runs in RUNS_DIR/<mode>; rerun to resume.")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="Where the table goes.")
    parser.add_argument("--adapter", type=Path, default=None, help="Vanilla LoRA (PEFT directory): adds the lora row.")
    parser.add_argument("--generator", type=Path, default=None, help="Generator checkpoint for the loragen rows (default: the shipped one).")
    commands = parser.add_subparsers(dest="command")

    run_cmd = commands.add_parser("run", help="Run one mode over the tasks.", description=_runner_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(run_cmd, suppress=True)
    run_cmd.add_argument("--mode", choices=MODES, required=True)
    run_cmd.add_argument("--limit-per-task", type=int, default=None, help="Deterministic subset of N items per task (default: all).")
    run_cmd.add_argument("--tasks", nargs="+", default=None, choices=[t.name for t in TASKS], help="Default: all eight.")
    run_cmd.add_argument("--out", type=Path, default=None, help=f"Run directory (default {DEFAULT_RUNS_DIR}/<mode>); rerun to resume.")
    run_cmd.add_argument("--adapter", type=Path, default=None, help="PEFT LoRA directory (mode lora).")
    run_cmd.add_argument("--generator", type=Path, default=None, help="Generator checkpoint (loragen modes; default: the shipped one).")
    run_cmd.add_argument("--edge-model", default=None, help="Edge LM for icl and lora (default: the embedded SmolLM2).")

    harness = commands.add_parser("harness", help="Score one mode with lm-evaluation-harness itself.", description=_harness_doc(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=f"Commonsense data (default {DEFAULT_DATA_DIR}).")
    harness.add_argument("--mode", choices=HARNESS_MODES, required=True)
    harness.add_argument("--limit-per-task", type=int, default=MAIN_JOB_LIMIT, help=f"Fixed subset of N items per task (default {MAIN_JOB_LIMIT}).")
    harness.add_argument("--tasks", nargs="+", default=None, choices=[t.name for t in TASKS], help="Default: all eight.")
    harness.add_argument("--shots", type=int, default=DEFAULT_SHOTS, help=f"k: icl's shots and a loragen system prompt's examples (default {DEFAULT_SHOTS}).")
    harness.add_argument("--out", type=Path, default=None, help="Run directory (default runs/commonsense-harness/<mode>); rerun to resume.")
    harness.add_argument("--adapter", type=Path, default=None, help="PEFT LoRA directory (mode lora).")
    harness.add_argument("--generator", type=Path, default=None, help="Generator checkpoint (loragen modes; default: the shipped commonsense one).")
    harness.add_argument("--batch-size", type=int, default=16, help="Log-likelihood requests per forward pass (default 16).")

    harness_table = commands.add_parser("harness-table", help="Table 2 from harness runs, with the paired tests of its targets.")
    harness_table.add_argument("runs", nargs="+", help="NAME=RUN_DIR for each row (names lora, loragen, icl get the paired targets).")
    harness_table.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="Where commonsense_harness_table2.{json,md} go.")
    harness_table.add_argument("--carry-over", type=Path, default=None, metavar="EARLIER_TABLE_JSON",
                               help="Take the rows and cells whose runs are gone from an earlier commonsense_harness_table2.json "
                                    "(marked †; see harness_report.py).")

    latency = commands.add_parser("harness-latency", help="Edge latency per item: icl against loragen's zero-shot prompt, in one run.",
                                  description=_latency_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    latency.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=f"Commonsense data (default {DEFAULT_DATA_DIR}).")
    latency.add_argument("--items-per-task", type=int, default=20, help="Items timed per task (default 20).")
    latency.add_argument("--shots", type=int, default=DEFAULT_SHOTS, help=f"icl's k (default {DEFAULT_SHOTS}).")
    latency.add_argument("--tasks", nargs="+", default=None, choices=[t.name for t in TASKS], help="Default: all eight.")
    latency.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="Where commonsense_harness_latency.{json,md} go.")

    table = commands.add_parser("table", help="Gather finished runs (their metrics.json) into one table.")
    table.add_argument("runs", nargs="*", type=Path, help=f"Run directories (default: {DEFAULT_RUNS_DIR}/<mode> for each mode present).")
    table.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="Where commonsense_table2.{json,md,png} go.")

    compare = commands.add_parser("compare", help="Paired comparison of finished runs: items only one gets right, exact McNemar p.",
                                  description=_paired_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("runs", nargs="+", type=Path, help="Two or more run directories; every pair is compared.")
    compare.add_argument("--tasks", choices=("all", "seen", "unseen"), default="all", help="Which tasks' items (default all).")
    compare.add_argument("--out", type=Path, default=None, help="Also write OUT.json and OUT.md.")

    build = commands.add_parser("build-data", help="Training data from the five seen tasks (JSON lines for loragen_core.train).")
    build.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=f"Commonsense data (default {DEFAULT_DATA_DIR}).")
    build.add_argument("--out", type=Path, required=True, help="Directory for train.jsonl.")
    build.add_argument("--rows-per-task", type=int, default=1000, help="Training rows per seen task (default 1000).")
    build.add_argument("--shots", type=int, default=DEFAULT_SHOTS, help=f"Examples in each system prompt (default {DEFAULT_SHOTS}).")
    build.add_argument("--prompts-per-task", type=int, default=16,
                       help="Fixed pool of system prompts per task (default 16); 0: a fresh draw of shots for every row.")
    build.add_argument("--seed", type=int, default=0, help="The same seed gives the same file.")
    build.add_argument("--format", choices=("harness", "chat"), default="harness",
                       help="harness (default): lm-evaluation-harness's plain-text format, what `harness` scores; "
                            "chat: the old runner's chat format (`run`).")

    args = parser.parse_args(argv)
    try:
        if args.command == "build-data":
            return _build_data(args)
        if args.command == "table":
            return _table(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "run":
            return _run(args)
        if args.command == "harness":
            return _harness(args)
        if args.command == "harness-table":
            return _harness_table(args)
        if args.command == "harness-latency":
            return _harness_latency(args)
        return _main_job(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _add_common(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    # SUPPRESS in subcommands: one given before the subcommand is kept.
    default = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    parser.add_argument("--data-dir", type=Path, default=default(None), help=f"Commonsense data (default {DEFAULT_DATA_DIR}).")
    parser.add_argument("--shots", type=int, default=default(DEFAULT_SHOTS), help=f"k: examples in each task's system prompt (default {DEFAULT_SHOTS}).")
    parser.add_argument("--shot-seed", type=int, default=default(0), help="Seed of the shots drawn for each task's system prompt.")


def _harness_doc() -> str:
    from . import harness

    return harness.__doc__


def _harness(args) -> int:
    from .harness_run import HarnessConfig, run_harness

    config = HarnessConfig(
        mode=args.mode, out=args.out or Path("runs") / "commonsense-harness" / args.mode, data_dir=getattr(args, "data_dir", None),
        limit_per_task=args.limit_per_task, tasks=tuple(args.tasks or [t.name for t in TASKS]), shots=args.shots,
        adapter=args.adapter, generator=args.generator, batch_size=args.batch_size,
    )
    summary = run_harness(config)
    print(f"| task | items | acc | acc_norm |\n|---|---|---|---|")
    for name, row in summary["tasks"].items():
        norm = f"{100 * row['acc_norm']:.1f}" if row["acc_norm"] is not None else "-"
        print(f"| {name} | {row['n']} | {100 * row['acc']:.1f} | {norm} |")
    print(f"summary.json and tasks.jsonl in {config.out}")
    return 0


def _latency_doc() -> str:
    from . import harness_latency

    return harness_latency.__doc__


def _harness_latency(args) -> int:
    from .harness_latency import LATENCY_STEM, LatencyConfig, measure, write_latency

    config = LatencyConfig(items_per_task=args.items_per_task, shots=args.shots, data_dir=getattr(args, "data_dir", None),
                           tasks=tuple(args.tasks or [t.name for t in TASKS]))
    print(write_latency(measure(config), args.results))
    print(f"Written to {args.results / LATENCY_STEM}.json and .md")
    return 0


def _harness_table(args) -> int:
    from .harness_report import HARNESS_TABLE_STEM, write_harness_table

    named = []
    for spec in args.runs:
        name, sep, directory = spec.partition("=")
        if not sep or not name or not directory:
            raise ValueError(f"Give each row as NAME=RUN_DIR, not {spec!r}.")
        named.append((name, Path(directory)))
    _, text = write_harness_table(named, args.results, args.carry_over)
    print(text)
    print(f"Written to {args.results / HARNESS_TABLE_STEM}.json and .md")
    return 0


def _runner_doc() -> str:
    from . import runner

    return runner.__doc__


def _paired_doc() -> str:
    from . import paired

    return paired.__doc__


def _compare(args) -> int:
    from loragen_core.paired import report_pairs

    from .paired import compare_runs

    report_pairs(compare_runs(args.runs, args.tasks), args.out)
    return 0


def _config(args, mode: str, out: Path, **extra) -> RunConfig:
    return RunConfig(mode=mode, out=out, data_dir=args.data_dir, limit_per_task=args.limit_per_task, shots=args.shots,
                     shot_seed=args.shot_seed, **extra)


def _run(args) -> int:
    from .report import markdown_table
    from .runner import run

    extra = {"adapter": args.adapter, "generator": args.generator}
    if args.tasks:
        extra["tasks"] = tuple(args.tasks)
    if args.edge_model:
        extra["edge_model"] = args.edge_model
    out = args.out or DEFAULT_RUNS_DIR / args.mode
    summary = run(_config(args, args.mode, out, **extra))
    print(markdown_table([summary]))
    print(f"records.jsonl, metrics.json, table.md and chart.png in {out}")
    return 0


def _table(args) -> int:
    from .report import markdown_table, write_table2

    directories = args.runs or [DEFAULT_RUNS_DIR / mode for mode in MODES if (DEFAULT_RUNS_DIR / mode / "metrics.json").is_file()]
    summaries = []
    for directory in directories:
        path = directory / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: finish `python -m eval_commonsense run --out {directory}` first.")
        metrics = json.loads(path.read_text())
        summaries.append(RunSummary(method=metrics["method"], metrics=metrics, out=directory))
    if not summaries:
        raise FileNotFoundError(f"No finished runs under {DEFAULT_RUNS_DIR}; run `python -m eval_commonsense run --mode icl` first.")
    if len({json.dumps(s.metrics["n_per_task"], sort_keys=True) for s in summaries}) > 1:
        print("warning: the runs scored different numbers of items per task; rerun them with one --limit-per-task.", file=sys.stderr)
    if len({s.metrics.get("edge_model") for s in summaries}) > 1:
        print("warning: the runs used different edge models; give icl and lora the generator's with --edge-model.", file=sys.stderr)
    paths = write_table2(summaries, args.results)
    print(markdown_table(summaries))
    print("Written: " + ", ".join(str(p) for p in paths))
    return 0


def _build_data(args) -> int:
    from collections import Counter

    from loragen_core.atomic import write_jsonl

    from .build_data import build_rows

    rows = build_rows(getattr(args, "data_dir", None), args.rows_per_task, args.shots, args.prompts_per_task, args.seed,
                      format=args.format)
    path = write_jsonl(rows, args.out)
    per_task = Counter(r["kind"] for r in rows)
    prompts = len({r["system_prompt"] for r in rows})
    print(f"{len(rows)} rows, {prompts} distinct system prompts, written to {path}: "
          + ", ".join(f"{k} {v}" for k, v in per_task.items()))
    return 0


def _main_job(args) -> int:
    from .report import markdown_table, write_table2
    from .runner import edge_model_name, load_plan, run

    # fail fast, with where to get the data, before loading any model
    load_plan(_config(args, "icl", args.runs_dir / "icl"))
    # every row on the same edge model: the one the generator was built for
    edge_model = edge_model_name(_config(args, "loragen", args.runs_dir / "loragen", generator=args.generator))
    extras = {"icl": {"edge_model": edge_model}, "lora": {"edge_model": edge_model, "adapter": args.adapter},
              "loragen": {"generator": args.generator}, "loragen-1shot": {"generator": args.generator}}
    modes = ["icl", *(["lora"] if args.adapter else []), "loragen", "loragen-1shot"]
    summaries = [run(_config(args, mode, args.runs_dir / mode, **extras[mode])) for mode in modes]
    paths = write_table2(summaries, args.results)
    print(markdown_table(summaries))
    print("Written: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
