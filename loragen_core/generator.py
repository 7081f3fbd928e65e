"""The LoRA-Gen generator: system prompt → cloud LM + meta tokens → routers → expert mix → LoRA.

    system prompt ─► cloud LM (q/v LoRA) ─► T_1..T_L   (hidden states of L appended <meta> tokens)
    T_i ─► Linear ─► SiLU ─► Linear ─► BatchNorm1d ─► softmax ─► KeepTOP-K ─► G_i   (n gates, K non-zero)
    θ_i = Σ_j G_ij E_ij   (A's mixed, B's mixed; E_ij = expert j of layer i, LoRA for gate/up/down)

Specified in ../shared/docs/loragen-method.md. One forward pass reads a batch of system prompts and
returns one generated LoRA per prompt, plus the gates and the load-balancing loss L_cv.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .adapter import GeneratedLoRA
from .config import LoRAGenConfig
from .lora_math import LoRATarget


class NonFiniteAdapterError(ValueError):
    """The generator produced NaN or inf adapter weights: its checkpoint is damaged."""


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over experts, keep the K largest, renormalise them to sum to 1, zero the rest."""
    probs = logits.softmax(dim=-1)
    top_values, top_indices = probs.topk(k, dim=-1)
    kept = top_values / top_values.sum(dim=-1, keepdim=True)
    return torch.zeros_like(probs).scatter(-1, top_indices, kept)


def cv_squared_loss(gates: torch.Tensor, alpha: float) -> torch.Tensor:
    """L_cv = α·(σ/μ)² of the gate mass each expert receives over the batch, averaged over layers.

    `gates` is (batch, layers, experts). σ is the population standard deviation over experts, as in
    the importance loss of Shazeer et al. (2017) that the paper follows.
    """
    importance = gates.sum(dim=0)  # (layers, experts)
    mean = importance.mean(dim=-1)
    std = importance.std(dim=-1, correction=0)
    return alpha * ((std / (mean + 1e-10)) ** 2).mean()


class KeepTopKRouter(nn.Module):
    """R_i = BN(f2(SiLU(f1(T_i)))): one per edge layer, scores the n experts of that layer."""

    def __init__(self, in_features: int, hidden: int, n_experts: int):
        super().__init__()
        self.f1 = nn.Linear(in_features, hidden)
        self.f2 = nn.Linear(hidden, n_experts)
        self.norm = nn.BatchNorm1d(n_experts)

    def forward(self, meta_state: torch.Tensor) -> torch.Tensor:
        logits = self.f2(nn.functional.silu(self.f1(meta_state)))
        if self.training and logits.shape[0] == 1:
            # BatchNorm cannot estimate batch statistics from one row; use the running ones.
            return nn.functional.batch_norm(
                logits, self.norm.running_mean, self.norm.running_var, self.norm.weight, self.norm.bias,
                training=False, eps=self.norm.eps,
            )
        return self.norm(logits)


class ExpertPools(nn.Module):
    """Per edge layer, n experts, each with LoRA (A, B) for every FFN projection kind.

    Stored as one (layers, experts, ...) parameter per kind and matrix, so mixing all layers is a
    single einsum.
    """

    def __init__(self, targets: list[LoRATarget], config: LoRAGenConfig, generator: torch.Generator):
        super().__init__()
        n_layers = 1 + max(t.layer for t in targets)
        shapes = {t.kind: (t.in_features, t.out_features) for t in targets if t.layer == 0}
        self.lora_a = nn.ParameterDict()
        self.lora_b = nn.ParameterDict()
        for kind, (fan_in, fan_out) in shapes.items():
            a = torch.empty(n_layers, config.n_experts, config.r, fan_in)
            # Same init as peft's LoRA A (kaiming-uniform with a=sqrt(5)): bound = 1/sqrt(fan_in).
            bound = 1.0 / math.sqrt(fan_in)
            a.uniform_(-bound, bound, generator=generator)
            b = torch.randn(n_layers, config.n_experts, fan_out, config.r, generator=generator)
            self.lora_a[kind] = nn.Parameter(a)
            self.lora_b[kind] = nn.Parameter(b * config.expert_b_init_std)

    def mix(self, gates: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """θ_i = Σ_j G_ij E_ij for every kind: returns A (batch, layers, r, in) and B (batch, layers, out, r)."""
        mixed_a = {kind: torch.einsum("bln,lnri->blri", gates, a) for kind, a in self.lora_a.items()}
        mixed_b = {kind: torch.einsum("bln,lnor->blor", gates, b) for kind, b in self.lora_b.items()}
        return mixed_a, mixed_b


@dataclass
class GeneratorOutput:
    adapter: GeneratedLoRA
    gates: torch.Tensor  # (batch, layers, experts)
    cv_loss: torch.Tensor


class LoRAGenerator(nn.Module):
    """Reads system prompts with the cloud LM and emits a LoRA for the edge model's FFNs."""

    def __init__(
        self,
        config: LoRAGenConfig,
        cloud_model: PreTrainedModel,
        cloud_tokenizer: PreTrainedTokenizerBase,
        edge_targets: list[LoRATarget],
    ):
        super().__init__()
        self.config = config
        self.edge_targets = edge_targets
        self.n_layers = 1 + max(t.layer for t in edge_targets)
        # Its own copy, set up once for reading prompts: the caller's tokenizer (often the edge model's,
        # when one model plays both roles) keeps its pad token and padding and truncation sides.
        self.tokenizer = copy.deepcopy(cloud_tokenizer)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # meta tokens then sit at the same final positions
        self.tokenizer.truncation_side = "left"  # an over-long prompt keeps its end, next to the meta tokens
        init = torch.Generator().manual_seed(config.seed)

        for parameter in cloud_model.parameters():
            parameter.requires_grad_(False)
        cloud_lora = LoraConfig(
            r=config.cloud_lora_r,
            lora_alpha=config.cloud_lora_alpha,
            target_modules=list(config.cloud_lora_targets),
            lora_dropout=config.lora_dropout,
            bias="none",
        )
        # peft injects the q/v LoRA layers into the model in place; keep the plain model object. Only
        # when they are trained: an untrained one (B = 0) adds nothing but work at every generation.
        self.cloud = cloud_model
        if config.train_cloud_lora:
            with torch.random.fork_rng():
                torch.manual_seed(config.seed)
                self.cloud = get_peft_model(cloud_model, cloud_lora).get_base_model()
        cloud_width = self.cloud.get_input_embeddings().embedding_dim

        self.meta_tokens = nn.Parameter(
            torch.randn(self.n_layers, cloud_width, generator=init) * self.cloud.config.initializer_range
        )
        self.routers = nn.ModuleList()
        for _ in range(self.n_layers):
            router = KeepTopKRouter(cloud_width, config.router_hidden, config.n_experts)
            for linear in (router.f1, router.f2):
                bound = 1.0 / math.sqrt(linear.in_features)
                linear.weight.data.uniform_(-bound, bound, generator=init)
                linear.bias.data.uniform_(-bound, bound, generator=init)
            self.routers.append(router)
        self.experts = ExpertPools(edge_targets, config, init)
        self._apply_trainable_flags()

    def _apply_trainable_flags(self) -> None:
        for name, parameter in self.cloud.named_parameters():
            parameter.requires_grad_(self.config.train_cloud_lora and "lora_" in name)
        self.meta_tokens.requires_grad_(self.config.train_meta_tokens)
        self.routers.requires_grad_(self.config.train_routers)
        self.experts.requires_grad_(self.config.train_experts)

    def meta_states(self, system_prompts: list[str]) -> torch.Tensor:
        """Run the cloud LM once over each prompt + L meta tokens; returns (batch, L, cloud_width)."""
        device = self.meta_tokens.device
        encoded = self.tokenizer(
            system_prompts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.config.max_system_prompt_tokens,
        ).to(device)
        batch = len(system_prompts)
        prompt_embeds = self.cloud.get_input_embeddings()(encoded.input_ids)
        meta = self.meta_tokens.to(prompt_embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
        embeds = torch.cat([prompt_embeds, meta], dim=1)
        mask = torch.cat(
            [encoded.attention_mask, torch.ones(batch, self.n_layers, dtype=encoded.attention_mask.dtype, device=device)],
            dim=1,
        )
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        decoder = getattr(self.cloud, self.cloud.base_model_prefix)
        hidden = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)
        # last_hidden_state is after the decoder's final norm.
        return hidden.last_hidden_state[:, -self.n_layers :, :].to(self.meta_tokens.dtype)

    def forward(self, system_prompts: list[str]) -> GeneratorOutput:
        return self.from_meta_states(self.meta_states(system_prompts))

    def from_meta_states(self, states: torch.Tensor) -> GeneratorOutput:
        """Routers → gates → expert mix, from (batch, L, cloud_width) meta states.

        Split from `forward` so a trainer with a frozen cloud LM and frozen meta tokens can compute
        each system prompt's states once and reuse them (the states are then a pure function of it).
        """
        logits = torch.stack([router(states[:, i, :]) for i, router in enumerate(self.routers)], dim=1)
        gates = keep_top_k(logits, self.config.top_k)
        mixed_a, mixed_b = self.experts.mix(gates)
        lora_a = {t.module_name: mixed_a[t.kind][:, t.layer] for t in self.edge_targets}
        lora_b = {t.module_name: mixed_b[t.kind][:, t.layer] for t in self.edge_targets}
        adapter = GeneratedLoRA(lora_a, lora_b, r=self.config.r, lora_alpha=self.config.lora_alpha)
        return GeneratorOutput(adapter=adapter, gates=gates, cv_loss=cv_squared_loss(gates, self.config.cv_alpha))

    @torch.inference_mode()
    def generate(self, system_prompt: str) -> GeneratedLoRA:
        """One adapter for one system prompt, in eval mode (BatchNorm uses its running statistics)."""
        was_training = self.training
        self.eval()
        try:
            adapter = self([system_prompt]).adapter.detach()
        finally:
            self.train(was_training)
        # A NaN adapter would merge into NaN edge weights (and be cached); refuse it here, loudly.
        for name, tensor in [*adapter.lora_a.items(), *adapter.lora_b.items()]:
            if not torch.isfinite(tensor).all():
                raise NonFiniteAdapterError(
                    f"The generator produced non-finite (NaN or inf) values in the adapter for {name}: its weights "
                    "are damaged. Retrain the generator or re-download its checkpoint."
                )
        return adapter

    @property
    def reads_prompts_with_frozen_cloud(self) -> bool:
        """True when nothing before the routers trains: meta states can then be cached per prompt."""
        return not (self.config.train_cloud_lora or self.config.train_meta_tokens)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything a checkpoint must hold: all but the frozen cloud base weights."""
        return {
            name: tensor
            for name, tensor in self.state_dict().items()
            if not name.startswith("cloud.") or "lora_" in name
        }
