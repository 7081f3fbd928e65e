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

from .config import LoRAGenConfig

METHODS = ("loragen", "lora")
RECIPES = {
    "cpu": dict(lr=1e-3, batch_size=8, warmup_steps=20, max_edge_tokens=512, train_cloud_lora=False, train_meta_tokens=False),
    "paper": dict(lr=2e-5, batch_size=64, warmup_steps=50, max_edge_tokens=2048, train_cloud_lora=True, train_meta_tokens=True),
}


def _generator_field(name: str, note: str = "", from_recipe: bool = False):
    """A run's copy of one `LoRAGenConfig` field: its default and help come from there, so the two
    cannot drift; `from_recipe`: the default is the --recipe's. (The command line and train_config.json stay one flat namespace: `--r`, `--n-experts`;
    `train.generator_config` builds the generator's config from them.)"""
    spec = _GENERATOR_FIELDS[name]
    if from_recipe:
        note += " Default: from --recipe (cpu: off, paper: on)."
    return field(default=None if from_recipe else spec.default, metadata={"help": spec.metadata["help"] + note})


_GENERATOR_FIELDS = {spec.name: spec for spec in dataclasses.fields(LoRAGenConfig)}


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
    lm_weight: float = field(default=1.0, metadata={"help": "Weight of L_LM, the answer tokens' cross-entropy."})
    kl_weight: float = field(default=0.0, metadata={"help": "Method loragen: weight of context distillation, KL(teacher ‖ student) over the answer tokens (ours, not the paper's). 0: off. Needs --teacher-adapter and rows with `instruction`."})
    teacher_adapter: str = field(default="", metadata={"help": "The distillation teacher: a PEFT LoRA for the edge model that reads the full prompt, e.g. the final/ of a `--method lora --prompt full` run. Its top-k log-probabilities are computed once per row and cached in the run directory."})
    teacher_top_k: int = field(default=16, metadata={"help": "How many of the teacher's most likely tokens the KL keeps per answer token (the rest is one bucket)."})
    train_cloud_lora: bool | None = _generator_field("train_cloud_lora", from_recipe=True)
    train_meta_tokens: bool | None = _generator_field("train_meta_tokens", from_recipe=True)
    train_routers: bool = _generator_field("train_routers")
    train_experts: bool = _generator_field("train_experts")
    n_experts: int = _generator_field("n_experts")
    top_k: int = _generator_field("top_k")
    r: int = _generator_field("r", " Also the lora baseline's rank; the generator's lora_alpha is set to r (scale 1).")
    cv_alpha: float = _generator_field("cv_alpha")
    edge_model: str = _generator_field("edge_model")
    cloud_model: str = _generator_field("cloud_model")

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
        if self.kl_weight < 0 or self.lm_weight < 0:
            raise ValueError("--kl-weight and --lm-weight must not be negative.")
        if self.kl_weight > 0 and self.method != "loragen":
            raise ValueError("--kl-weight distils into the generator: it is for --method loragen.")
        if self.kl_weight > 0 and not self.teacher_adapter:
            raise ValueError("--kl-weight needs --teacher-adapter DIR (the final/ of a `--method lora --prompt full` run).")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be at least 1.")

    @property
    def distils(self) -> bool:
        return self.kl_weight > 0

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
