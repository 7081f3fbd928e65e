"""Every hyper-parameter of a LoRA-Gen generator, in one typed dataclass.

The config is saved as JSON beside every checkpoint (`loragen_config.json`), so a checkpoint
directory is self-describing: it names its cloud and edge models and how the generator was built.
Fields the method spec (../shared/docs/loragen-method.md) leaves open are marked "(ours)".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILE_NAME = "loragen_config.json"


@dataclass
class LoRAGenConfig:
    cloud_model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "Cloud-side LM that reads the system prompt: the embedded default alias, a local directory or a cached hub id."},
    )
    edge_model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "Edge-side LM that receives the generated LoRA."},
    )
    n_experts: int = field(default=8, metadata={"help": "Experts in each edge layer's LoRA pool (paper: 8 beats 4 and 12)."})
    top_k: int = field(default=2, metadata={"help": "Experts kept per layer by KeepTOP-K gating."})
    r: int = field(default=16, metadata={"help": "Rank of every expert's LoRA blocks."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator: W' = W + (lora_alpha / r) B A."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input during functional (training) application."})
    cv_alpha: float = field(default=0.01, metadata={"help": "Weight of the coefficient-of-variation load-balancing loss L_cv."})
    router_hidden: int = field(default=256, metadata={"help": "(ours) Hidden width of the router's first linear layer."})
    ffn_module_names: tuple[str, ...] = field(
        default=("gate_proj", "up_proj", "down_proj"),
        metadata={"help": "Edge FFN projections that receive LoRA (Llama/Qwen/Gemma/Mistral names)."},
    )
    cloud_lora_r: int = field(default=16, metadata={"help": "Rank of the cloud LM's own q/v LoRA (peft)."})
    cloud_lora_alpha: float = field(default=16.0, metadata={"help": "lora_alpha of the cloud LM's q/v LoRA."})
    cloud_lora_targets: tuple[str, ...] = field(
        default=("q_proj", "v_proj"), metadata={"help": "Cloud modules that get the peft LoRA (paper: q and v)."}
    )
    train_cloud_lora: bool = field(default=True, metadata={"help": "Train the cloud LM's q/v LoRA."})
    train_meta_tokens: bool = field(default=True, metadata={"help": "(ours) Train the meta-token embeddings."})
    train_routers: bool = field(default=True, metadata={"help": "Train the per-layer routers."})
    train_experts: bool = field(default=True, metadata={"help": "Train the per-layer LoRA expert pools."})
    expert_b_init_std: float = field(
        default=0.0,
        metadata={"help": "Std of the experts' B init; 0 is the standard LoRA init (a fresh generator's adapter is a no-op)."},
    )
    max_system_prompt_tokens: int = field(
        default=2048, metadata={"help": "System prompts are truncated (from the left) to this many cloud tokens."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for the generator's initialisation."})

    def __post_init__(self) -> None:
        # JSON round-trips tuples as lists; keep the declared types.
        self.ffn_module_names = tuple(self.ffn_module_names)
        self.cloud_lora_targets = tuple(self.cloud_lora_targets)
        if not 1 <= self.top_k <= self.n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={self.n_experts}], got {self.top_k}")
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILE_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "LoRAGenConfig":
        path = Path(directory) / CONFIG_FILE_NAME
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config fields {unknown}; was it written by a newer LoRA-Gen?")
        return cls(**data)
