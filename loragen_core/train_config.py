"""Every knob of a training run, in one typed dataclass (saved as `train_config.json` in the run).

Two recipes:
    cpu    (default) the cloud LM and the meta tokens stay frozen, so each distinct system prompt's
           meta states are computed once and cached; only routers and expert pools train. Fits a
           2-core CPU: the cloud LM reads each distinct prompt once instead of once per step.
    paper  the paper's Table 10: cloud q/v LoRA and meta tokens train too, lr 2e-5, batch 64,
           50 warm-up steps, max length 2048. For GPUs (`accelerate launch`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

METHODS = ("loragen", "lora")
RECIPES = {
    "cpu": dict(lr=1e-3, batch_size=8, warmup_steps=20, max_edge_tokens=512, train_cloud_lora=False, train_meta_tokens=False),
    "paper": dict(lr=2e-5, batch_size=64, warmup_steps=50, max_edge_tokens=2048, train_cloud_lora=True, train_meta_tokens=True),
}


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list, metadata={"help": "JSON-lines training files (from `eval_gpt4tools build-data`)."})
    out: str = field(default="runs/train/loragen", metadata={"help": "Run directory: checkpoint/, final/, log.jsonl."})
    method: str = field(default="loragen", metadata={"help": "loragen (train the generator) or lora (vanilla peft LoRA baseline)."})
    prompt: str = field(default="edge", metadata={"help": "For method lora: train on the full prompt (tool definitions in) or the edge prompt."})
    recipe: str = field(default="cpu", metadata={"help": "Defaults for lr, batch, warm-up, length and what trains: cpu or paper."})
    steps: int = field(default=200, metadata={"help": "Optimizer steps."})
    batch_size: int | None = field(default=None, metadata={"help": "Examples per step over all processes (each of N processes takes 1/N)."})
    lr: float | None = field(default=None, metadata={"help": "Peak learning rate (AdamW, cosine decay after warm-up)."})
    warmup_steps: int | None = field(default=None, metadata={"help": "Linear warm-up steps."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (paper: 0.1)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    max_edge_tokens: int | None = field(default=None, metadata={"help": "Longer edge sequences are dropped (never truncated)."})
    eval_data: list[str] = field(default_factory=list, metadata={"help": "Held-out JSON-lines files: their answer-token L_LM is logged at the end (and every --eval-every steps)."})
    eval_every: int = field(default=0, metadata={"help": "Held-out evaluation every N steps (0: only at the end)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Method lora: recompute the edge model's activations in the backward pass, about a third more compute for far less memory. Needed for --prompt full on a machine with little memory."})
    save_every: int = field(default=25, metadata={"help": "Write a resumable checkpoint every N steps."})
    seed: int = field(default=0, metadata={"help": "Seed for the data order, dropout and initialisation."})
    train_cloud_lora: bool | None = field(default=None, metadata={"help": "Train the cloud LM's q/v LoRA."})
    train_meta_tokens: bool | None = field(default=None, metadata={"help": "Train the meta-token embeddings."})
    train_routers: bool = field(default=True, metadata={"help": "Train the routers."})
    train_experts: bool = field(default=True, metadata={"help": "Train the expert pools."})
    n_experts: int = field(default=8, metadata={"help": "Experts per layer."})
    top_k: int = field(default=2, metadata={"help": "Experts kept per layer."})
    r: int = field(default=16, metadata={"help": "LoRA rank (experts, and the lora baseline)."})
    cv_alpha: float = field(default=0.01, metadata={"help": "Weight of L_cv (0 disables it)."})
    edge_model: str = field(default="smollm2-135m-instruct", metadata={"help": "Edge LM."})
    cloud_model: str = field(default="smollm2-135m-instruct", metadata={"help": "Cloud LM."})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, not {self.method!r}.")
        if self.prompt not in ("full", "edge"):
            raise ValueError(f"--prompt must be full or edge, not {self.prompt!r}.")
        if self.recipe not in RECIPES:
            raise ValueError(f"--recipe must be one of {tuple(RECIPES)}, not {self.recipe!r}.")
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.gradient_checkpointing and self.method != "lora":
            # The generated adapter is applied through forward hooks that are gone by the time the
            # backward pass would recompute the layers; loragen trains on short edge prompts anyway.
            raise ValueError("--gradient-checkpointing is for --method lora (long --prompt full sequences).")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be at least 1.")

    @property
    def prompt_field(self) -> str:
        return "instruction" if self.method == "lora" and self.prompt == "full" else "edge_prompt"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def resume_identity(self) -> dict:
        """What must not change when a run resumes (everything but bookkeeping)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("save_every", "out", "eval_data", "eval_every", "gradient_checkpointing")}
