"""`python -m eval_commonsense`: the paper's Table 2, eight commonsense tasks (three unseen), scored
by lm-evaluation-harness itself (its formats, continuations, acc and acc_norm).

With no subcommand: the main job — base, icl, loragen and loragen-1shot (and lora, given --adapter)
on --limit-per-task items per task (default 300), each a resumable run in RUNS_DIR/<mode>, then the
table (results/commonsense_harness_table2.{json,md}) with its paired tests.

    harness          score one mode (resumable; rerun the same command to go on)
    harness-table    Table 2 from finished runs, with the paired tests of its targets
    harness-latency  edge latency per item, icl against loragen's zero-shot prompt, in one run
    build-data       training data from the five seen tasks, for `python -m loragen_core.train --data`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loragen_core.errors import USER_ERRORS

from .harness import HARNESS_MODES
from .tasks import DEFAULT_DATA_DIR, DEFAULT_SHOTS, TASKS

MAIN_JOB_LIMIT = 300
DEFAULT_RUNS_DIR = Path("runs") / "commonsense-harness"
DEFAULT_RESULTS_DIR = Path("results")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval_commonsense", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help=f"Commonsense data (default {DEFAULT_DATA_DIR}).")
    parser.add_argument("--limit-per-task", type=int, default=MAIN_JOB_LIMIT, help=f"Items per task (default {MAIN_JOB_LIMIT}).")
    parser.add_argument("--tasks", nargs="+", default=None, choices=[t.name for t in TASKS], help="Default: all eight.")
    parser.add_argument("--shots", type=int, default=DEFAULT_SHOTS, help=f"k: icl's shots and a system prompt's examples (default {DEFAULT_SHOTS}).")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help=f"Each mode runs in RUNS_DIR/<mode> (default {DEFAULT_RUNS_DIR}); rerun to resume.")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS_DIR, help="Where the table goes.")
    parser.add_argument("--adapter", type=Path, default=None, help="Multi-task LoRA (PEFT directory): adds the lora row.")
    parser.add_argument("--generator", type=Path, default=None, help="Generator checkpoint for the loragen rows (default: the shipped commonsense one).")
    commands = parser.add_subparsers(dest="command")

    harness = commands.add_parser("harness", help="Score one mode with lm-evaluation-harness itself.", description=_harness_doc(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=f"Commonsense data (default {DEFAULT_DATA_DIR}).")
    harness.add_argument("--mode", choices=HARNESS_MODES, required=True)
    harness.add_argument("--limit-per-task", type=int, default=MAIN_JOB_LIMIT, help=f"Fixed subset of N items per task (default {MAIN_JOB_LIMIT}).")
    harness.add_argument("--tasks", nargs="+", default=None, choices=[t.name for t in TASKS], help="Default: all eight.")
    harness.add_argument("--shots", type=int, default=DEFAULT_SHOTS, help=f"k: icl's shots and a loragen system prompt's examples (default {DEFAULT_SHOTS}).")
    harness.add_argument("--out", type=Path, default=None, help=f"Run directory (default {DEFAULT_RUNS_DIR}/<mode>); rerun to resume.")
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

    build = commands.add_parser("build-data", help="Training data from the five seen tasks (JSON lines for loragen_core.train).")
    build.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=f"Commonsense data (default {DEFAULT_DATA_DIR}).")
    build.add_argument("--out", type=Path, required=True, help="Directory for train.jsonl.")
    build.add_argument("--rows-per-task", type=int, default=1000, help="Training rows per seen task (default 1000).")
    build.add_argument("--shots", type=int, default=DEFAULT_SHOTS, help=f"Examples in each system prompt (default {DEFAULT_SHOTS}).")
    build.add_argument("--prompts-per-task", type=int, default=16,
                       help="Fixed pool of system prompts per task (default 16); 0: a fresh draw of shots for every row.")
    build.add_argument("--seed", type=int, default=0, help="The same seed gives the same file.")

    args = parser.parse_args(argv)
    try:
        if args.command == "build-data":
            return _build_data(args)
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


def _harness_doc() -> str:
    from . import harness

    return harness.__doc__


def _harness(args) -> int:
    from .harness_run import HarnessConfig, run_harness

    config = HarnessConfig(
        mode=args.mode, out=args.out or DEFAULT_RUNS_DIR / args.mode, data_dir=getattr(args, "data_dir", None),
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


def _build_data(args) -> int:
    from collections import Counter

    from loragen_core.atomic import write_jsonl

    from .build_data import build_rows

    rows = build_rows(getattr(args, "data_dir", None), args.rows_per_task, args.shots, args.prompts_per_task, args.seed)
    path = write_jsonl(rows, args.out)
    per_task = Counter(r["kind"] for r in rows)
    prompts = len({r["system_prompt"] for r in rows})
    print(f"{len(rows)} rows, {prompts} distinct system prompts, written to {path}: "
          + ", ".join(f"{k} {v}" for k, v in per_task.items()))
    return 0


def _main_job(args) -> int:
    from .harness_report import HARNESS_TABLE_STEM, write_harness_table
    from .harness_run import HarnessConfig, run_harness

    modes = ["base", "icl", *(["lora"] if args.adapter else []), "loragen", "loragen-1shot"]
    configs = [HarnessConfig(mode=mode, out=args.runs_dir / mode, data_dir=args.data_dir, limit_per_task=args.limit_per_task,
                             tasks=tuple(args.tasks or [t.name for t in TASKS]), shots=args.shots,
                             adapter=args.adapter if mode == "lora" else None,
                             generator=args.generator if mode.startswith("loragen") else None)
               for mode in modes]  # every configuration checked before the first model loads
    for config in configs:
        run_harness(config)
    _, text = write_harness_table([(config.mode, config.out) for config in configs], args.results)
    print(text)
    print(f"Written to {args.results / HARNESS_TABLE_STEM}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
