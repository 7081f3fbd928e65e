"""LoRA-Gen core: generate a LoRA adapter for an edge LM from a task's system prompt.

Data flow: system prompt → `LoRAGenerator` → `GeneratedLoRA` → merged into the edge model.
"""

from .adapter import AdapterFormatError, GeneratedLoRA
from .adapter_service import AdapterResult, AdapterService, load_full_prompt_lora
from .checkpoint import CheckpointError, build_generator, load_default_generator, load_generator, save_generator
from .config import LoRAGenConfig
from .generator import LoRAGenerator, keep_top_k, cv_squared_loss
from .lora_math import LoRATarget, find_lora_targets
from .model_loading import DEFAULT_MODEL, LoadedModel, ModelNotAvailableError, load_causal_lm

__all__ = [
    "AdapterFormatError",
    "AdapterResult",
    "AdapterService",
    "CheckpointError",
    "DEFAULT_MODEL",
    "GeneratedLoRA",
    "LoRAGenConfig",
    "LoRAGenerator",
    "LoRATarget",
    "LoadedModel",
    "ModelNotAvailableError",
    "build_generator",
    "cv_squared_loss",
    "find_lora_targets",
    "keep_top_k",
    "load_causal_lm",
    "load_default_generator",
    "load_full_prompt_lora",
    "load_generator",
    "save_generator",
]
