"""`python -m loragen_core` (also the `loragen` console script).

    prepare   convert the embedded SmolLM2 default into the safetensors cache (once, ~30 s)
    generate  write a PEFT LoRA directory generated from a system prompt file
    ship      copy a trained generator or LoRA baseline into the package (bf16, size-checked, with its model card)
    heldout   a trained generator's answer-token loss on held-out JSON-lines data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import user_errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loragen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("prepare", help="Convert the embedded default model into the local cache ($LORAGEN_HOME).")

    generate = commands.add_parser(
        "generate",
        help="Generate an adapter for a system prompt and save it as a PEFT LoRA directory.",
        description="Reads the system prompt once with the cloud LM and writes adapter_config.json + "
        "adapter_model.safetensors to --out. A second call with the same prompt and generator is a cache hit.",
    )
    generate.add_argument("--system-prompt-file", required=True, type=Path, help="UTF-8 text file with the system prompt.")
    generate.add_argument("--out", required=True, type=Path, help="Directory to write the PEFT adapter into.")
    generate.add_argument("--generator", type=Path, default=None, help="Generator checkpoint directory (default: the shipped one).")
    generate.add_argument("--no-cache", action="store_true", help="Always run the cloud LM; do not read or write the adapter cache.")

    ship = commands.add_parser(
        "ship",
        help="Copy a trained generator or PEFT LoRA (a run's final/) into the package as bf16 safetensors with its model card.",
        description="Writes DEST atomically: the weights in bf16, config, edge targets, and the run's model card "
        "(README.md, training_summary.json, loss.png), with --notes appended to the card. Refuses a result "
        "larger than --max-mib, the repository's limit for a shipped checkpoint.",
    )
    ship.add_argument("source", type=Path, help="A generator checkpoint or a `--method lora` run's PEFT adapter, e.g. runs/train/NAME/final.")
    ship.add_argument("--to", dest="dest", type=Path, required=True, help="e.g. loragen_core/checkpoints/commonsense")
    ship.add_argument("--notes", type=Path, default=None, help="Markdown appended to the model card (commands, wall time).")
    ship.add_argument("--max-mib", type=float, default=64.0, help="Size limit of the shipped directory (default 64).")

    heldout = commands.add_parser("heldout", help="A generator's mean answer-token L_LM on held-out data (eval mode).",
                                  description="Scores a trained generator after the fact with the trainer's own held-out "
                                  "loss (eval mode), so runs trained with and without --eval-data compare on the same rows.")
    heldout.add_argument("--generator", type=Path, required=True, help="Generator checkpoint directory, e.g. runs/train/NAME/final.")
    heldout.add_argument("--data", nargs="+", required=True, help="JSON-lines files from `eval_gpt4tools build-data`.")
    heldout.add_argument("--batch-size", type=int, default=8)

    args = parser.parse_args(argv)
    with user_errors():
        if args.command == "prepare":
            return _prepare()
        if args.command == "ship":
            return _ship(args)
        if args.command == "heldout":
            return _heldout(args)
        return _generate(args)


def _prepare() -> int:
    from .model_loading import convert_default_model

    print(f"Default model ready in {convert_default_model()}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .adapter_service import AdapterService
    from .checkpoint import load_default_generator, load_generator
    from .model_loading import resolve_model_dir

    if not args.system_prompt_file.is_file():
        raise FileNotFoundError(f"System prompt file {args.system_prompt_file} does not exist.")
    system_prompt = args.system_prompt_file.read_text(encoding="utf-8")
    if not system_prompt.strip():
        raise ValueError(f"{args.system_prompt_file} is empty: there is nothing to specialize for.")
    if args.generator is not None:
        generator, trained = load_generator(args.generator), True
    else:
        generator, trained = load_default_generator()
    if not trained:
        print(
            "Note: no trained generator ships yet, so this is a seeded fresh (untrained) generator; "
            "its adapter is a valid PEFT LoRA but does not specialize the edge model yet."
        )
    service = AdapterService(generator, use_cache=not args.no_cache)
    result = service.adapter_for(system_prompt)
    out = result.adapter.save_pretrained(args.out, resolve_model_dir(generator.config.edge_model))
    print(f"adapter written to {out}")
    print(f"generation time: {result.seconds:.3f} s ({'cache hit' if result.cache_hit else 'generated'})")
    print(f"adapter hash: {result.adapter_hash}")
    return 0


def _ship(args: argparse.Namespace) -> int:
    from .adapter import PEFT_WEIGHTS_FILE
    from .checkpoint import directory_mib, ship_generator

    if args.notes is not None and not args.notes.is_file():
        raise FileNotFoundError(f"Notes file {args.notes} does not exist.")
    dest = ship_generator(args.source, args.dest, notes=args.notes.read_text() if args.notes else "", max_mib=args.max_mib)
    how = "--adapter" if (dest / PEFT_WEIGHTS_FILE).is_file() else "--generator"
    print(f"Shipped {args.source} to {dest} ({directory_mib(dest):.1f} MiB, bf16). Load it with {how} {dest}.")
    return 0


def _heldout(args: argparse.Namespace) -> int:
    from .heldout import held_out_loss

    for path in args.data:
        if not Path(path).is_file():
            raise FileNotFoundError(f"Held-out data {path} does not exist.")
    loss, n = held_out_loss(args.generator, args.data, args.batch_size)
    print(f"held-out L_LM {loss:.4f} on {n} examples ({args.generator})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
