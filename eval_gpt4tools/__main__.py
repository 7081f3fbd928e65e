"""`python -m eval_gpt4tools`: the GPT4Tools unseen-tool benchmark.

With no subcommand: the main job. On a fixed stratified subset (--items, default 30), the comparison
that matters: the shipped full-prompt LoRA (trained on the generator's data, reading every tool
definition) against the shipped default mode (LoRA-Gen, nothing about the tools in context), both
decoded as the agent serves them (the tool-call grammar), with the paired test; `--with-icl` adds the
untrained in-context model. About 2.5 minutes on a 2-core CPU (2 min 08 s measured: results/main_job/).

    score       score a predictions file against the ground truth
    run         run one mode over the test set (resumable)
    table       gather finished runs into one results table
    compare     paired, item-by-item comparison of finished runs (exact McNemar test)
    build-data  build training data: the 23 seen tools, optionally ~300 synthetic ones (JSON lines)
    bench       latency, memory and specialisation cost: icl, icl_prefix_cache, loragen, peft_unmerged, int8, w8a16
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loragen_core.compiled_decoding import EDGE_DECODERS
from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS
from loragen_core.errors import USER_ERRORS
from loragen_core.int8 import WEIGHT_FORMATS

from .data import DatasetError, load_test_items
from .runner import MODES, SERVED_DECODING, RunConfig, RunConfigError
from .scorer import PredictionsError

MAIN_JOB_ITEMS = 30
MAIN_JOB_BATCH = 16  # throughput: the comparison fits in minutes (a batch's time per item is not a latency)
# Measured per item and row (results/main_job/README.md): 2 min 18 s on a 2-core EPYC, 2 min 08 s on a 2-core Xeon, for
# 2 rows x 30 items at batch 16, adapters generated, models loaded, the machine otherwise idle (2.1-2.3 s per item and row).
SECONDS_PER_ITEM = 2.4
DEFAULT_RUNS_DIR = Path("runs") / "gpt4tools"
DEFAULT_RUN_MODE = "loragen"  # agent.modes.DEFAULT_MODE, the mode the agent, UI and LangChain model serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval_gpt4tools", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="GPT4Tools test JSON (default: ../shared/data/gpt4tools/).")
    parser.add_argument("--out", type=Path, default=DEFAULT_RUNS_DIR / "main", help="Where the main job writes its runs.")
    parser.add_argument("--items", type=int, default=MAIN_JOB_ITEMS, help=f"Main job: items, stratified by gold tool (default {MAIN_JOB_ITEMS}).")
    parser.add_argument("--with-icl", action="store_true", help="Main job: also run the untrained in-context model (full prompt, no adapter).")
    parser.add_argument("--batch-size", type=int, default=MAIN_JOB_BATCH,
                        help=f"Main job: items decoded at once (default {MAIN_JOB_BATCH}; 1 also measures each item's latency).")
    commands = parser.add_subparsers(dest="command")

    score_cmd = commands.add_parser("score", help="Score predictions: SR_t, SR_act, SR_args, SR, IoU.")
    # SUPPRESS: a subcommand without --data keeps one given before the subcommand.
    score_cmd.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="Ground-truth GPT4Tools JSON.")
    score_cmd.add_argument("--predictions", type=Path, required=True, help='JSON list of {"id", "output"}.')
    score_cmd.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")

    run_cmd = commands.add_parser("run", help="Run one mode over the test set.", description=_runner_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    run_cmd.add_argument("--mode", choices=MODES, default=None,
                         help="What the edge model reads (see above). Without --mode: the served default, loragen "
                              "decoded as the agent serves it (--served).")
    run_cmd.add_argument("--served", action="store_true",
                         help="Decode as the agent, UI, LangChain model and server do: --constrained --constrain-images "
                              "--constrain-arguments --tool-prior.")
    run_cmd.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="GPT4Tools test JSON (default: ../shared/data/gpt4tools/).")
    run_cmd.add_argument("--limit", type=int, default=None, help="Deterministic subset of N items, stratified by gold tool.")
    run_cmd.add_argument("--out", type=Path, default=None, help="Run directory (default runs/gpt4tools/<mode>); rerun to resume.")
    run_cmd.add_argument("--adapter", type=Path, default=None, help="PEFT LoRA directory (mode lora).")
    run_cmd.add_argument("--prompt", choices=("full", "edge"), default="full", help="Prompt for mode lora.")
    run_cmd.add_argument("--generator", type=Path, default=None, help="Generator checkpoint (loragen modes).")
    run_cmd.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="Decoding budget, same for all modes.")
    run_cmd.add_argument("--constrained", action="store_true",
                         help="Decode under each item's tool-call grammar: Action can only name the item's tools "
                              "(llguidance). Off by default: the paper-comparable rows decode freely.")
    run_cmd.add_argument("--constrain-images", action="store_true",
                         help="With --constrained: a tool whose whole input is an image path gets one of the paths the "
                              "item's conversation names.")
    run_cmd.add_argument("--constrain-arguments", action="store_true",
                         help="With --constrain-images: every tool's input follows the format its definition states "
                              "(how many comma-separated parts; image parts from the conversation, text parts without "
                              "a comma): the grammar the agent, UI and LangChain model use.")
    run_cmd.add_argument("--tool-prior", action="store_true",
                         help="With --constrained: steer the choice of tool by the tool definitions, matched with the "
                              "request by a sentence embedder (loragen_core/tool_prior.py); the definitions stay out "
                              "of the edge prompt.")
    run_cmd.add_argument("--step-prior", action="store_true",
                         help="With --tool-prior: once a tool has run, weigh 'another step?' by the prior mass of the "
                              "tools not called yet (a request that wanted one tool is done once it ran).")
    run_cmd.add_argument("--need-prior", action="store_true",
                         help="With --tool-prior: weigh the first 'do I need a tool?' by how well the request's best tool "
                              "matches it (a logistic fitted by `fit-need-prior` on built training data).")
    run_cmd.add_argument("--tool-prior-weight", type=float, default=None,
                         help="How much the prior counts against the edge model's own choice of tool: 1 multiplies "
                              "the two; inf lets the prior alone pick (default: inf when served, else 1).")
    run_cmd.add_argument("--need-prior-weight", type=float, default=None,
                         help="How much the need prior counts against the edge model's first \"Do I need to use a tool?\": "
                              "1 multiplies the two; inf lets the prior alone decide (default: the served rule's when "
                              "served, else 1).")
    run_cmd.add_argument("--batch-size", type=int, default=1,
                         help="Items decoded at once (default 1). More is faster on all 652 items, but the run then reports "
                              "throughput, not latency: take latency from a batch-1 run with `table --latency`.")
    run_cmd.add_argument("--edge-weights", choices=WEIGHT_FORMATS, default="fp32",
                         help="fp32 (exact, default); int8: decode with an int8 copy of the edge model, the adapter "
                              "attached as hooks (faster on a CPU, not the same tokens; batch 1 only); int8-mlp: only "
                              "the MLPs in int8, attention and lm_head in fp32; w8a16: int8 weights, bf16 activations "
                              "(prompts prefill in fp32; with --edge-decoder compiled it decodes 1.8x fp32 eager on the 2-core Xeon; batches allowed; "
                              "results/README.md has each one's SR).")

    run_cmd.add_argument("--edge-decoder", choices=EDGE_DECODERS, default="dynamic",
                         help="dynamic (eager, exact, default); compiled: batch-1 decode steps through a static KV cache and "
                              "torch.compile (needs g++; each cache-length bucket compiles once, ~30 s; not the same tokens "
                              "as dynamic; results/README.md has its speed and SR); fast-forward: under a grammar "
                              "(--constrained, --served) the tokens it forces are written without a decode step each "
                              "(loragen_core/fast_forward.py). Both decode one item at a time.")

    fit_cmd = commands.add_parser(
        "fit-need-prior", help="Fit the tool prior's P(a tool is needed) on built training data (never the test set).",
        description="Logistic regression of 'the first thought is Yes' on the request's best cosine with its tools, over the "
                    "single-turn rows (tool, two_step: Yes; negative: No) of a build-data file.")
    fit_cmd.add_argument("--data", type=Path, required=True, help="A train.jsonl from `build-data` (another seed than the training data).")

    table_cmd = commands.add_parser("table", help="Gather finished runs into one table (JSON, Markdown, chart).")
    table_cmd.add_argument("--row", action="append", required=True, metavar="NAME=RUN_DIR",
                           help="A row: its method name and a finished run directory; repeat for each row.")
    table_cmd.add_argument("--latency", action="append", default=[], metavar="NAME=RUN_DIR",
                           help="Take row NAME's latencies from this batch-1 run (for rows scored by a batched run).")
    table_cmd.add_argument("--out", type=Path, default=Path("results") / "gpt4tools_table3",
                           help="Output path without suffix: writes .json, .md and .png (default results/gpt4tools_table3).")

    compare_cmd = commands.add_parser("compare", help="Paired comparison of finished runs: items only one row gets right, exact McNemar p.",
                                      description=_paired_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    compare_cmd.add_argument("--row", action="append", required=True, metavar="NAME=RUN_DIR",
                             help="A finished run and its name; repeat (at least two). Every pair is compared.")
    compare_cmd.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="GPT4Tools test JSON (default: ../shared/data/gpt4tools/).")
    compare_cmd.add_argument("--metric", choices=("SR", "SR_act", "SR_t"), default="SR", help="Which per-item score must be fully right (default SR).")
    compare_cmd.add_argument("--out", type=Path, default=None, help="Also write OUT.json and OUT.md.")

    build = commands.add_parser("build-data", help="Build GPT4Tools-style training data for the seen tools.")
    build.add_argument("--out", type=Path, required=True, help="Directory for train.jsonl (datasets.load_dataset('json')).")
    build.add_argument("--n", type=int, default=2000, help="Number of samples.")
    build.add_argument("--seed", type=int, default=0, help="Seed: the same seed gives the same file.")
    build.add_argument(
        "--tool-sets", type=int, default=None,
        help="Draw tool lists from a pool of at most this many (default: a fresh list per sample). Fewer "
        "distinct system prompts make training with a frozen, cached cloud LM cheap.",
    )
    build.add_argument("--tool-names-line", action="store_true",
                       help="Start each edge prompt with one line naming the tools (what `run --mode loragen-names` reads), "
                            "to train a generator for that variant.")
    build.add_argument("--synthetic-tools", action="store_true",
                       help="Add the ~300 composed tool definitions of synthetic_tools.py to the 23 seen tools, so a "
                            "generator learns to read definitions rather than memorise 23 (none is a test-set tool).")
    build.add_argument("--realistic-observations", action="store_true",
                       help="Write text tools' observations as a tool would answer (a caption, boxes, an answer), not "
                            "GPT4Tools' placeholders such as [output_from_caption_tool] (default: placeholders).")
    build.add_argument("--natural-share", type=float, default=0.0,
                       help="Share of samples whose conversation is written as users and LangChain write it "
                            "(image path in the request, several turns, no 'Received.' turn); default 0.")
    build.add_argument("--unseen-gold", action="store_true",
                       help="With --synthetic-tools: lay tool rows out like the unseen-tool test set, for a development "
                            "set: the gold tool is a synthetic one (the shipped generator never saw it), the others are "
                            "seen tools. OUT/eval_items.json (written always) holds the single-step rows for `run --data`.")

    _add_bench_command(commands)

    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            return _bench(args)
        if args.command == "table":
            return _table(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "build-data":
            return _build_data(args)
        if args.command == "score":
            return _score(args)
        if args.command == "fit-need-prior":
            return _fit_need_prior(args)
        if args.command == "run":
            return _run(args)
        return _main_job(args)
    except (DatasetError, PredictionsError, RunConfigError, *USER_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _runner_doc() -> str:
    from . import runner

    return runner.__doc__


def _score(args) -> int:
    from .scorer import load_predictions, score

    gold = load_test_items(args.data)
    scores = score(gold, load_predictions(args.predictions, gold))
    if args.json:
        print(json.dumps(scores.to_dict()))
    else:
        for key, value in scores.to_dict().items():
            print(f"{key:8s} {value if key == 'n' else f'{value:.6f}'}")
    return 0


def _fit_need_prior(args) -> int:
    from tqdm import tqdm

    from loragen_core.tool_prior import default_retriever, fit_need, needs_tool
    from tools.gpt4tools_prompt import split_prompt

    if not args.data.is_file():
        raise FileNotFoundError(f"{args.data} does not exist; make one with `build-data`.")
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind") in ("tool", "two_step", "negative")]
    if not rows:
        raise ValueError(f"{args.data} has no tool, two_step or negative rows.")
    retriever = default_retriever()
    best = []
    for row in tqdm(rows, desc="best match per request", unit="row"):
        parts = split_prompt(row["instruction"])
        best.append(float(retriever.similarities(parts.new_input, parts.tool_definitions).max()))
    needs = [r["kind"] != "negative" for r in rows]
    threshold, scale = fit_need(best, needs)
    right = sum((needs_tool(c, threshold, scale) > 0.5) == n for c, n in zip(best, needs))
    print(f"NEED_THRESHOLD, NEED_SCALE = {threshold:.3f}, {scale:.3f}  ({len(rows)} rows, {sum(needs)} need a tool; "
          f"{right / len(rows):.1%} decided right at P = 0.5)")
    return 0


DECODING_FLAGS = ("constrained", "constrain_images", "constrain_arguments", "tool_prior", "step_prior", "need_prior")


def decoding_flags(args, served: bool) -> dict[str, bool]:
    """Each decoding flag adds to the served rule (with --served, or no --mode) or to nothing."""
    return {flag: bool(getattr(args, flag)) or (served and SERVED_DECODING.get(flag, False)) for flag in DECODING_FLAGS}


def prior_weight(args, served: bool, name: str = "tool_prior_weight") -> float:
    """--tool-prior-weight (or --need-prior-weight, `name`) if given, else the served rule's weight
    (served) or a plain product (1)."""
    if getattr(args, name) is not None:
        return getattr(args, name)
    return SERVED_DECODING[name] if served else 1.0


def _run(args) -> int:
    from .report import markdown_table
    from .runner import run

    served = args.served or args.mode is None  # no --mode: the default mode as it is served
    mode = args.mode or DEFAULT_RUN_MODE
    out = args.out or DEFAULT_RUNS_DIR / (mode + ("-served" if served else ""))
    decoding = decoding_flags(args, served)
    config = RunConfig(
        mode=mode, out=out, data=args.data, limit=args.limit, adapter=args.adapter, prompt=args.prompt,
        generator=args.generator, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        edge_weights=args.edge_weights, edge_decoder=args.edge_decoder, tool_prior_weight=prior_weight(args, served),
        need_prior_weight=prior_weight(args, served, "need_prior_weight"), **decoding,
    )
    summary = run(config)
    print(markdown_table([summary]))
    print(f"Predictions, metrics.json, table.md and chart.png in {out}")
    return 0


def _table(args) -> int:
    from .table import parse_row, write_table

    records = write_table([parse_row(spec) for spec in args.row], args.out, [parse_row(spec) for spec in args.latency])
    print(args.out.with_suffix(".md").read_text())
    print(f"{len(records)} rows written to {args.out}.json/.md/.png")
    return 0


def _paired_doc() -> str:
    from . import paired

    return paired.__doc__


def _compare(args) -> int:
    from loragen_core.paired import report_pairs

    from .paired import compare_runs
    from .table import parse_row

    report_pairs(compare_runs([parse_row(spec) for spec in args.row], load_test_items(args.data), args.metric), args.out)
    return 0


def _build_data(args) -> int:
    from collections import Counter

    from loragen_core.atomic import write_jsonl, write_text_atomic

    from .builder import build_samples
    from .negative_answers import answer_with_model

    if args.n < 1:
        raise ValueError("--n must be at least 1.")
    if args.tool_sets is not None and args.tool_sets < 1:
        raise ValueError("--tool-sets must be at least 1.")
    if not 0.0 <= args.natural_share <= 1.0:
        raise ValueError("--natural-share must be between 0 and 1.")
    if args.unseen_gold and not args.synthetic_tools:
        raise ValueError("--unseen-gold draws gold tools from the synthetic tools; give --synthetic-tools too.")
    rows = build_samples(args.n, args.seed, answer_with_model, tool_sets=args.tool_sets, tool_names_line=args.tool_names_line,
                         synthetic=args.synthetic_tools, natural_share=args.natural_share,
                         realistic_observations=args.realistic_observations, unseen_gold=args.unseen_gold)
    path = write_jsonl(rows, args.out)
    # The single-step rows (one call, or none) in the test set's layout, so `run --data` scores them.
    items = [{"id": r["id"], "instruction": r["instruction"], "input": "", "output": r["output"]}
             for r in rows if r["kind"] in ("tool", "negative")]
    write_text_atomic(Path(args.out) / "eval_items.json", json.dumps(items, ensure_ascii=False))
    kinds = Counter(r["kind"] for r in rows)
    prompts = len({r["system_prompt"] for r in rows})
    print(f"{len(rows)} samples, {prompts} distinct system prompts, written to {path}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + f"; {len(items)} single-step rows in eval_items.json")
    return 0


def _add_bench_command(commands) -> None:
    # Defaults live in BenchConfig; None here means "its default", so this parser need not import torch.
    bench = commands.add_parser(
        "bench", help="Benchmark serving: icl, icl_prefix_cache, loragen, peft_unmerged, the int8 modes and the w8a16 trio (interleaved).",
        description="Nine serving modes on the same items, interleaved; writes bench.json, bench.md and bench.png "
        "(eval_gpt4tools/bench.py explains each mode and phase).",
    )
    bench.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="GPT4Tools test JSON (default: ../shared/data/gpt4tools/).")
    bench.add_argument("--limit", type=int, help="Items, stratified by gold tool (default 50).")
    bench.add_argument("--out", type=Path, help="Where bench.json, bench.md and bench.png go (default results/).")
    bench.add_argument("--generator", type=Path, help="Generator checkpoint (default: the shipped one).")
    bench.add_argument("--max-new-tokens", type=int, help=f"Decoding budget, same for all modes (default {DEFAULT_MAX_NEW_TOKENS}).")
    length = bench.add_mutually_exclusive_group()
    length.add_argument("--equal-length", type=int, metavar="N",
                        help="Every mode writes exactly N tokens (EOS suppressed): latency at equal output length, "
                             "the like-for-like comparison (default 40).")
    length.add_argument("--free-length", action="store_true",
                        help="Each mode writes what it writes instead (an extra: the ratios then also measure output length).")
    bench.add_argument("--decoders", help="KV-cache strategies to try, comma-separated (default dynamic,static,compiled).")
    bench.add_argument("--w8a16-decoder", choices=("dynamic", "static", "compiled"),
                       help="KV-cache strategy of the three w8a16 modes (default compiled: they are not the exact path, "
                            "so the tuning's same-tokens rule does not choose for them).")
    bench.add_argument("--threads", help="Thread counts to try, e.g. 1,2 (default: 1, torch's default and all cores).")
    bench.add_argument("--finetune-data", type=Path, help="Training JSON lines for the LoRA fine-tuning speed measurement "
                       "(default runs/data/gpt4tools-train/train.jsonl; 'none' skips it).")
    bench.add_argument("--finetune-steps", type=int, help="Fine-tuning steps actually run (default 6).")
    bench.add_argument("--finetune-steps-assumed", type=int, help="Steps a LoRA fine-tune for a new tool set is assumed to need (default 200).")


def _bench(args) -> int:
    from .bench import BenchConfig, run_bench

    load_test_items(args.data)  # fail fast, with where to get it, before loading any model
    names = ("out", "limit", "generator", "max_new_tokens", "equal_length", "finetune_steps", "finetune_steps_assumed", "w8a16_decoder")
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}  # absent: BenchConfig's default
    if args.free_length:
        options["equal_length"] = None
    if args.decoders:
        options["decoders"] = tuple(d for d in args.decoders.split(",") if d)
    if args.threads:
        options["threads"] = tuple(int(t) for t in args.threads.split(","))
    if args.finetune_data is not None:
        options["finetune_data"] = None if str(args.finetune_data).lower() == "none" else args.finetune_data
    config = BenchConfig(data=args.data, **options)
    run_bench(config)
    print((config.out / "bench.md").read_text())
    print(f"bench.json, bench.md and bench.png in {config.out}")
    return 0


def main_job_configs(out: Path, data: Path | None, items: int, with_icl: bool, full_prompt_lora: Path | None,
                     batch_size: int = 1) -> list[RunConfig]:
    """The main job's rows; `full_prompt_lora`: the shipped adapter (None: this checkout lacks it, so
    the untrained in-context model is the only baseline)."""
    served = dict(data=data, limit=items, batch_size=batch_size, **SERVED_DECODING)  # as the agent decodes
    rows = []
    if full_prompt_lora is not None:
        rows.append(RunConfig(mode="lora", adapter=full_prompt_lora, prompt="full", out=out / "full-prompt-lora", **served))
    rows.append(RunConfig(mode="loragen", out=out / "loragen", **served))
    if with_icl or full_prompt_lora is None:
        rows.append(RunConfig(mode="icl", out=out / "icl", **served))
    return rows


def _main_job(args) -> int:
    from loragen_core.adapter_service import full_prompt_lora_shipped
    from loragen_core.checkpoint import FULL_PROMPT_LORA_CHECKPOINT
    from loragen_core.errors import say
    from loragen_core.paired import report_pairs

    from .paired import compare_runs
    from .report import markdown_table, write_reports
    from .runner import run

    items = load_test_items(args.data)  # fail fast, with where to get it, before loading any model
    if args.items < 1:
        raise RunConfigError("--items must be at least 1.")
    shipped = FULL_PROMPT_LORA_CHECKPOINT if full_prompt_lora_shipped() else None
    if shipped is None:
        say(f"{FULL_PROMPT_LORA_CHECKPOINT} is missing, so the trained baseline is left out; comparing with the untrained in-context model.")
    configs = main_job_configs(args.out, args.data, args.items, args.with_icl, shipped, args.batch_size)
    say(f"Main job: {', '.join(c.label for c in configs)} on {min(args.items, len(items))} items. "
        f"Expect about {len(configs) * args.items * SECONDS_PER_ITEM / 60:.0f} min on a 2-core CPU (runs resume if interrupted).")
    summaries = [run(config) for config in configs]
    write_reports(summaries, args.out)
    print(markdown_table(summaries))
    report_pairs(compare_runs([(c.label, c.out) for c in configs], items), args.out / "paired")
    print(f"Side-by-side table and chart in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
