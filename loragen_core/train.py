"""Train a LoRA-Gen generator (or the vanilla LoRA baseline) on (system prompt, edge prompt, output) data.

    python -m loragen_core.train --data runs/data/gpt4tools-train/train.jsonl --out runs/train/loragen
    python -m loragen_core.train --method lora --prompt full --data ... --out runs/train/lora-full
    python -m loragen_core.train --kl-weight 1 --teacher-adapter runs/train/lora-full/final --data ... --out runs/train/loragen-kl
    accelerate launch --multi_gpu --num_processes 8 -m loragen_core.train --recipe paper --data ... --out ...
    accelerate launch --multi_gpu --num_processes 2 -m loragen_core.train ...   # no CUDA: 2 CPU processes, gloo

Built on accelerate: one CPU process by default, DDP/FSDP under `accelerate launch`. AdamW with linear
warm-up then cosine decay; L_LM, L_cv (and L_KL, context distillation from a full-prompt teacher) are logged apart (`log.jsonl`, the progress bar). Every
`--save-every` steps the run directory gets an atomic checkpoint; rerunning the same command resumes
from it, reading exactly the batches an uninterrupted run would have read.

Run directory:
    train_config.json   the resolved configuration (a resume must match it)
    checkpoint/         model weights + optimizer/scheduler/step, replaced atomically
    log.jsonl           one line per step: step, lr, loss, lm, cv, seconds
    meta_states.pt      (cpu recipe) the cloud LM's meta states per distinct system prompt
    teacher_topk.pt     (--kl-weight) the teacher's top-k answer-token log-probabilities per row read
    final/              the result: a generator checkpoint (bf16) or a PEFT adapter, with README.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from .atomic import atomic_directory
from .checkpoint import GENERATOR_WEIGHTS_FILE, CheckpointError, build_generator, save_generator
from .config import LoRAGenConfig
from .distillation import TEACHER_CACHE_FILE, TeacherCache
from .generator import LoRAGenerator
from .meta_state_cache import MetaStateCache
from .model_loading import load_causal_lm
from .objective import LossParts, answer_only_lm_loss, loragen_loss
from .resumable_run import record_code_version
from .train_config import TrainConfig
from .train_data import batch_indices, collate, encode_rows, load_rows, row_key
from .train_report import write_model_card

CHECKPOINT_DIR = "checkpoint"
FINAL_DIR = "final"
TRAINER_STATE_FILE = "trainer_state.pt"
LOG_FILE = "log.jsonl"


class LoRAGenTrainable(nn.Module):
    """Generator + frozen edge model; forward(batch) → w_LM·L_LM + L_cv (+ w_KL·L_KL while training)."""

    def __init__(self, generator: LoRAGenerator, edge_model: nn.Module, states: MetaStateCache | None,
                 teacher: TeacherCache | None = None, lm_weight: float = 1.0, kl_weight: float = 0.0):
        super().__init__()
        self.generator = generator
        self.edge = edge_model
        self.states = states
        self.teacher = teacher
        self.lm_weight, self.kl_weight = lm_weight, kl_weight

    def forward(self, batch: dict) -> LossParts:
        meta = self.states.stack(batch["system_prompts"]) if self.states else None
        # Distillation is a training signal: held-out evaluation (eval mode) reports L_LM alone and
        # needs no teacher targets for its rows.
        teacher = self.teacher.stack(batch["teacher_keys"], batch["input_ids"].device) if self.teacher and self.training else None
        return loragen_loss(
            self.generator, self.edge, batch["system_prompts"], batch["input_ids"], batch["attention_mask"],
            batch["labels"], meta_states=meta, teacher=teacher, lm_weight=self.lm_weight, kl_weight=self.kl_weight,
        )

    def save(self, directory: Path, dtype: torch.dtype | None = None) -> None:
        save_generator(self.generator, directory, dtype=dtype)

    def load_weights(self, directory: Path) -> None:
        missing, unexpected = self.generator.load_state_dict(load_file(directory / GENERATOR_WEIGHTS_FILE), strict=False)
        # The frozen cloud LM is not saved; a trainable tensor that is absent would silently stay fresh.
        lost = sorted(set(missing) & set(self.generator.trainable_state_dict()))
        if unexpected or lost:
            raise CheckpointError(
                f"Checkpoint {directory} does not match this run: "
                + (f"unexpected tensors {unexpected[:3]}" if unexpected else f"missing trained tensors {lost[:3]}")
                + ". Delete the run directory's checkpoint/ to start over."
            )


class LoRATrainable(nn.Module):
    """A peft LoRA on the edge FFNs: the vanilla baseline, trained on the same examples."""

    def __init__(self, peft_model: nn.Module):
        super().__init__()
        self.peft_model = peft_model

    def forward(self, batch: dict) -> LossParts:
        lm = answer_only_lm_loss(self.peft_model.get_base_model(), batch["input_ids"], batch["attention_mask"], batch["labels"])
        return LossParts(total=lm, lm=lm, cv=torch.zeros((), device=lm.device))  # --lm-weight is for loragen

    def save(self, directory: Path, dtype: torch.dtype | None = None) -> None:
        with atomic_directory(directory) as staging:
            self.peft_model.save_pretrained(staging)

    def load_weights(self, directory: Path) -> None:
        set_peft_model_state_dict(self.peft_model, load_file(directory / "adapter_model.safetensors"))


def generator_config(config: TrainConfig) -> LoRAGenConfig:
    return LoRAGenConfig(
        cloud_model=config.cloud_model, edge_model=config.edge_model, n_experts=config.n_experts, top_k=config.top_k,
        r=config.r, lora_alpha=float(config.r), cv_alpha=config.cv_alpha, train_cloud_lora=config.train_cloud_lora,
        train_meta_tokens=config.train_meta_tokens, train_routers=config.train_routers, train_experts=config.train_experts,
        seed=config.seed,
    )


def build_trainable(config: TrainConfig, edge: nn.Module, out: Path, examples: list, show_progress: bool,
                    teacher_rows: list[dict] = ()) -> nn.Module:
    """`examples`: every example whose system prompt the generator reads; `teacher_rows`: the rows
    the distillation teacher scores (their full prompts and answers)."""
    edge.requires_grad_(False)
    if config.gradient_checkpointing:
        # Non-reentrant: gradients reach the LoRA weights even though the checkpointed layers' inputs
        # do not require grad; dropout masks are replayed in the recomputation.
        edge.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.method == "lora":
        lora = LoraConfig(
            r=config.r, lora_alpha=config.r, lora_dropout=0.05, target_modules=list(LoRAGenConfig().ffn_module_names), bias="none"
        )
        return LoRATrainable(get_peft_model(edge, lora))
    generator = build_generator(generator_config(config))
    states = None
    if generator.reads_prompts_with_frozen_cloud:
        states = MetaStateCache(generator, out / "meta_states.pt")
        states.fill(sorted({e.system_prompt for e in examples}), show_progress=show_progress)
    teacher = None
    if config.distils:
        teacher = TeacherCache(config.teacher_adapter, config.edge_model, config.teacher_top_k, out / TEACHER_CACHE_FILE)
        teacher.fill(list(teacher_rows), show_progress=show_progress)
    return LoRAGenTrainable(generator, edge, states, teacher, config.lm_weight, config.kl_weight)


def rows_read_by_run(config: TrainConfig, examples: list, rows: list[dict]) -> list[dict]:
    """The rows the run's steps will read (a short run reads a fraction of its data, and the teacher
    scores only those)."""
    by_key = {row_key(r): r for r in rows}
    used = {i for step in range(config.steps) for i in batch_indices(len(examples), config.batch_size, step, config.seed)}
    return [by_key[examples[i].teacher_key] for i in sorted(used)]


def rng_state() -> dict[str, torch.Tensor]:
    """This process's random-number state (dropout draws)."""
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    return rng


def save_checkpoint(trainable, optimizer, scheduler, step: int, out: Path, rng_by_rank: list[dict]) -> None:
    """`rng_by_rank`: every process's `rng_state()`, in rank order (each rank draws its own dropout)."""
    with atomic_directory(out / CHECKPOINT_DIR) as staging:
        trainable.save(staging / "model")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                    "rng": rng_by_rank}, staging / TRAINER_STATE_FILE)


def resume_step(trainable, optimizer, scheduler, out: Path, rank: int = 0) -> int:
    checkpoint = out / CHECKPOINT_DIR
    if not (checkpoint / TRAINER_STATE_FILE).is_file():
        return 0
    trainable.load_weights(checkpoint / "model")
    state = torch.load(checkpoint / TRAINER_STATE_FILE, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    # Dropout draws continue where they stopped, each rank's its own, so a resumed run equals an
    # uninterrupted one. (A checkpoint from before per-rank states holds one dict; a run resumed on
    # more processes than it saved gives the new ranks rank 0's state.)
    saved = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
    rng = saved[rank] if rank < len(saved) else saved[0]
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return int(state["step"])


def rewrite_log(out: Path, keep_before: int) -> None:
    """Drop log lines of steps that will run again after a resume (written after the checkpoint)."""
    path = out / LOG_FILE
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] < keep_before]
    temporary = path.with_suffix(".jsonl.tmp")
    temporary.write_text("".join(line + "\n" for line in kept))
    temporary.replace(path)


@torch.no_grad()
def held_out_lm(trainable: nn.Module, examples: list, pad_id: int, device: torch.device, batch_size: int,
                progress: bool = False) -> float:
    """Mean answer-token L_LM over held-out examples, in eval mode (no dropout, BatchNorm running stats).
    `progress`: show a progress bar (400 rows take ~11 min on a 2-core CPU)."""
    was_training = trainable.training
    trainable.eval()
    total, weight = 0.0, 0
    try:
        starts = range(0, len(examples), batch_size)
        for start in tqdm(starts, desc="held-out L_LM", unit="batch", disable=not progress):
            chunk = examples[start : start + batch_size]
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(chunk, pad_id).items()}
            answer_tokens = int((batch["labels"][:, 1:] != -100).sum())
            total += trainable(batch).lm.item() * answer_tokens
            weight += answer_tokens
    finally:
        trainable.train(was_training)
    return total / max(weight, 1)


def check_resume_identity(config: TrainConfig, out: Path) -> None:
    path = out / "train_config.json"
    if path.exists():
        previous = TrainConfig(**json.loads(path.read_text()))
        if previous.resume_identity() != config.resume_identity():
            changed = sorted(k for k, v in config.resume_identity().items() if previous.resume_identity().get(k) != v)
            raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)}); use another --out.")
    out.mkdir(parents=True, exist_ok=True)
    config.save(path)


@dataclasses.dataclass
class TrainingRun:
    """What the step loop works on, built once by `prepare_run` (and restored from a checkpoint)."""

    config: TrainConfig
    accelerator: Accelerator
    out: Path
    rows: list
    examples: list
    dropped: int
    held_out: list
    trainable: nn.Module
    parameters: list
    optimizer: torch.optim.Optimizer
    scheduler: object
    start: int
    pad_id: int

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


def train(config: TrainConfig) -> Path:
    """Run (or resume) training; returns the final model directory."""
    # Without CUDA, run on the CPU: several processes (launched with `accelerate launch --multi_gpu`) then
    # form a DDP group on the gloo backend instead of looking for GPUs.
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world = accelerator.num_processes
    # --batch-size is the global batch (the paper's 64 is over all GPUs): each process takes its share.
    if config.batch_size % world:
        raise ValueError(f"--batch-size {config.batch_size} does not split over {world} processes; use a multiple of {world}.")
    run = prepare_run(config, accelerator)
    progress = tqdm(range(run.start, config.steps), initial=run.start, total=config.steps, desc=f"train {config.method}",
                    disable=not run.is_main)
    for step in progress:
        started = time.perf_counter()
        parts = optimise_step(run, step)
        if run.is_main:
            log_step(run, step, parts, time.perf_counter() - started, progress)
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            rng_by_rank = gather_object([rng_state()])  # every rank takes part; rank 0 writes
            if run.is_main:
                save_checkpoint(accelerator.unwrap_model(run.trainable), run.optimizer, run.scheduler, step + 1, run.out, rng_by_rank)
        accelerator.wait_for_everyone()
    return write_final(run)


def prepare_run(config: TrainConfig, accelerator: Accelerator) -> TrainingRun:
    """Data, models, optimizer and schedule, resumed from the run directory's checkpoint if it has one."""
    out = Path(config.out)
    if accelerator.is_main_process:
        check_resume_identity(config, out)
    accelerator.wait_for_everyone()
    torch.manual_seed(config.seed + accelerator.process_index)

    rows = load_rows(config.data, need_instruction=config.prompt_field == "instruction" or config.distils)
    edge = load_causal_lm(config.edge_model)
    tokenizer = edge.tokenizer
    examples, dropped = encode_rows(rows, tokenizer, config.prompt_field, config.max_edge_tokens)
    held_out = []
    if config.eval_data:
        eval_rows = load_rows(config.eval_data, need_instruction=config.prompt_field == "instruction")
        held_out, _ = encode_rows(eval_rows, tokenizer, config.prompt_field, config.max_edge_tokens)
    # (Every process fills the meta-state and teacher caches itself: the same file, written atomically.)
    teacher_rows = rows_read_by_run(config, examples, rows) if config.distils else []
    trainable = build_trainable(config, edge.model, out, examples + held_out, show_progress=accelerator.is_main_process,
                                teacher_rows=teacher_rows)
    parameters = [p for p in trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    start = resume_step(trainable, optimizer, scheduler, out, rank=accelerator.process_index)
    if accelerator.is_main_process:
        record_code_version(out, start)  # a resume under changed code warns; the model card lists the versions
    if accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        # The routers' BatchNorm would otherwise normalise over each GPU's rows only. (SyncBatchNorm
        # needs GPUs: a multi-process CPU run keeps per-process statistics.) Untested here: no GPU.
        trainable = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trainable)
    trainable, optimizer, scheduler = accelerator.prepare(trainable, optimizer, scheduler)
    trainable.train()
    if accelerator.is_main_process:
        rewrite_log(out, keep_before=start)
        n_trainable = sum(p.numel() for p in parameters)
        print(f"{config.method}: {len(examples)} examples ({dropped} over {config.max_edge_tokens} tokens dropped), "
              f"{n_trainable / 1e6:.1f}M trainable parameters, steps {start}→{config.steps}, "
              f"{accelerator.num_processes} process(es) ({accelerator.distributed_type.value})", file=sys.stderr)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return TrainingRun(config, accelerator, out, rows, examples, dropped, held_out, trainable, parameters, optimizer,
                       scheduler, start, pad_id)


def optimise_step(run: TrainingRun, step: int) -> LossParts:
    """One AdamW step on this process's share of the step's global batch."""
    config, accelerator = run.config, run.accelerator
    per_rank = config.batch_size // accelerator.num_processes
    rank = accelerator.process_index
    indices = batch_indices(len(run.examples), config.batch_size, step, config.seed)
    batch = collate([run.examples[i] for i in indices[rank * per_rank : (rank + 1) * per_rank]], run.pad_id)
    batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    parts = run.trainable(batch)
    if not torch.isfinite(parts.total):
        raise FloatingPointError(f"Loss became {parts.total.item()} at step {step}; lower --lr.")
    accelerator.backward(parts.total)
    accelerator.clip_grad_norm_(run.parameters, config.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return parts


def log_step(run: TrainingRun, step: int, parts: LossParts, seconds: float, progress: tqdm) -> None:
    """The step's line in log.jsonl and the progress bar; the held-out L_LM when it is due."""
    record = {"step": step, "lr": run.scheduler.get_last_lr()[0], "loss": parts.total.item(), "lm": parts.lm.item(),
              "cv": parts.cv.item(), "seconds": round(seconds, 3)}
    if parts.kl is not None:
        record["kl"] = parts.kl.item()
    with open(run.out / LOG_FILE, "a") as log:
        log.write(json.dumps(record) + "\n")
    shown = {"loss": f"{record['loss']:.3f}", "lm": f"{record['lm']:.3f}", "cv": f"{record['cv']:.4f}"}
    if "kl" in record:
        shown["kl"] = f"{record['kl']:.3f}"
    progress.set_postfix(**shown)
    config = run.config
    if run.held_out and ((config.eval_every and (step + 1) % config.eval_every == 0) or step + 1 == config.steps):
        eval_lm = held_out_lm(run.accelerator.unwrap_model(run.trainable), run.held_out, run.pad_id, run.accelerator.device,
                              config.batch_size)
        with open(run.out / LOG_FILE, "a") as log:
            log.write(json.dumps({"step": step, "eval_lm": eval_lm, "eval_examples": len(run.held_out)}) + "\n")
        progress.write(f"step {step + 1}: held-out L_LM {eval_lm:.4f} on {len(run.held_out)} examples")


def write_final(run: TrainingRun) -> Path:
    """final/: the generator in bf16 (or the PEFT adapter) with its model card."""
    final = run.out / FINAL_DIR
    if run.is_main:
        unwrapped = run.accelerator.unwrap_model(run.trainable)
        unwrapped.eval()
        unwrapped.save(final, dtype=torch.bfloat16 if run.config.method == "loragen" else None)
        write_model_card(run.config, run.rows, len(run.examples), run.dropped, run.out, final)
        print(f"Final {run.config.method} model written to {final}", file=sys.stderr)
    return final


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m loragen_core.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for spec in dataclasses.fields(TrainConfig):
        flag = "--" + spec.name.replace("_", "-")
        help_text = spec.metadata.get("help", "")
        if spec.type == "list[str]":
            parser.add_argument(flag, nargs="+", required=spec.name == "data", help=help_text)
        elif spec.type in ("bool | None", "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "int | None": int, "float": float, "float | None": float}.get(spec.type, str)
            parser.add_argument(flag, type=kind, default=None, help=help_text + f" (default: {_default_text(spec)})")
    values = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return TrainConfig(**values)


def _default_text(spec: dataclasses.Field) -> str:
    if spec.default is None:
        return "from --recipe"
    if spec.default is dataclasses.MISSING:
        return "none"
    return str(spec.default)


def main(argv: list[str] | None = None) -> int:
    from .errors import user_errors

    with user_errors():
        config = parse_args(argv)
        train(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
