"""Run the edge model over GPT4Tools items in one mode; resumable, item by item.

Modes (every mode decodes with the same rule: greedy, `max_new_tokens`, stop at EOS or once the final
`AI: ...` line is complete — see loragen_core/edge_runtime.py):

    icl            full prompt, no adapter (the in-context baseline)
    lora           a PEFT LoRA from --adapter, merged; --prompt full|edge
    loragen        adapter generated from each item's system prompt, merged; edge prompt only
    loragen-names  as loragen, plus one line naming the tools in the edge prompt

Each finished item is appended to `predictions.jsonl` at once, so an interrupted run continues where
it stopped when rerun with the same --out.

`--constrained` decodes under the GPT4Tools trace grammar of each item's tool set (tools/
gpt4tools_grammar.py): `Action:` can only name one of the item's tools. `--constrain-images` also
restricts the input of tools whose whole input is an image path to the image paths the item's
conversation names; `--constrain-arguments` holds every tool's input to the format its definition
states (the grammar the agent, the UI and the LangChain model decode with). `--tool-prior` steers
the grammar's choice of tool by the definitions, matched with the request by a sentence embedder
(loragen_core/tool_prior.py). Without them (the default for `run`, and the rule of every
paper-comparable row) the model writes freely.

`--batch-size B` decodes B items at once (left-padded, the same greedy rule; in loragen modes every
row carries its own generated adapter, applied functionally): several times the throughput on a CPU,
for scoring all 652 items. A batched run's per-item time is the batch's wall time divided by its
rows, a throughput figure, so its metrics carry no median latency: take latency from a batch-1 run
(`table --latency NAME=RUN_DIR`).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from loragen_core import chat_format
from loragen_core import AdapterService, GeneratedLoRA, load_causal_lm, load_default_generator, load_generator
from loragen_core.atomic import write_text_atomic
from loragen_core.compiled_decoding import EDGE_DECODERS
from loragen_core.edge_runtime import DEFAULT_MAX_NEW_TOKENS, EdgeModel
from loragen_core.int8 import WEIGHT_FORMATS, is_int8, is_quantised
from loragen_core.resumable_run import RunSummary, code_versions, open_resumable_run
from tools import split_prompt
from loragen_core.tool_prior import SERVED_NEED_WEIGHT, SERVED_TOOL_WEIGHT, ToolPrior, default_retriever
from tools.gpt4tools_grammar import tool_call_grammar, trace_grammar
from tools.gpt4tools_prompt import IMAGE_PATH

from .data import load_test_items, stratified_subset
from .scorer import score

MODES = ("icl", "lora", "loragen", "loragen-names")
# How the agent, the UI, the LangChain model and the server decode (`run --served`, the main job).
SERVED_DECODING = dict(constrained=True, constrain_images=True, constrain_arguments=True, tool_prior=True, step_prior=True,
                       need_prior=True, tool_prior_weight=SERVED_TOOL_WEIGHT, need_prior_weight=SERVED_NEED_WEIGHT)
PREDICTIONS_LOG = "predictions.jsonl"


class RunConfigError(ValueError):
    """Arguments that do not fit the mode, or a resume with a different configuration."""


@dataclass
class RunConfig:
    mode: str
    out: Path
    data: Path | None = None
    limit: int | None = None
    adapter: Path | None = None
    prompt: str = "full"  # for mode lora: full | edge
    generator: Path | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 1  # > 1: batched decoding for throughput (no per-request latency)
    constrained: bool = False  # decode under each item's tool-call grammar
    constrain_images: bool = False  # ... with image-only tools' inputs restricted to the conversation's images
    constrain_arguments: bool = False  # ... and every tool's input held to the format its definition states
    tool_prior: bool = False  # steer the constrained choice of tool by the definitions (loragen_core/tool_prior.py)
    tool_prior_weight: float = 1.0  # 1: prior × model; inf: the prior alone picks the tool
    step_prior: bool = False  # with the tool prior: weigh "another step?" by the mass of the tools not called yet
    need_prior: bool = False  # with the tool prior: weigh the first "do I need a tool?" by how well the best tool matches
    need_prior_weight: float = 1.0  # 1: need prior × model; inf: the need prior alone decides
    edge_weights: str = "fp32"  # int8, int8-mlp, w8a16: decode with a quantised copy (loragen_core/int8.py)
    edge_decoder: str = "dynamic"  # compiled: batch-1 decode through static caches and torch.compile (loragen_core/compiled_decoding.py)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise RunConfigError("--batch-size must be at least 1.")
        if self.mode not in MODES:
            raise RunConfigError(f"Unknown mode {self.mode!r}; choose one of {', '.join(MODES)}.")
        if self.mode == "lora" and self.adapter is None:
            raise RunConfigError("Mode lora needs --adapter DIR (a PEFT LoRA directory).")
        if self.constrain_images and not self.constrained:
            raise RunConfigError("--constrain-images refines --constrained; give both.")
        if self.constrain_arguments and not self.constrain_images:
            raise RunConfigError("--constrain-arguments refines --constrain-images (image parts are the conversation's images); give --constrained --constrain-images too.")
        if not self.tool_prior_weight >= 0:
            raise RunConfigError(f"--tool-prior-weight must be 0 or more (inf: the prior alone picks), not {self.tool_prior_weight}.")
        if not self.need_prior_weight >= 0:
            raise RunConfigError(f"--need-prior-weight must be 0 or more (inf: the need prior alone decides), not {self.need_prior_weight}.")
        if self.need_prior_weight != 1 and not self.need_prior:
            raise RunConfigError("--need-prior-weight weighs the need prior; give --need-prior too.")
        if (self.step_prior or self.need_prior) and not self.tool_prior:
            raise RunConfigError("--step-prior and --need-prior are part of the tool prior; give --tool-prior too.")
        if self.tool_prior and not self.constrained:
            raise RunConfigError("--tool-prior steers the grammar's choice of tool; give --constrained too.")
        if self.edge_weights not in WEIGHT_FORMATS:
            raise RunConfigError(f"--edge-weights must be one of {', '.join(WEIGHT_FORMATS)}, not {self.edge_weights!r}.")
        if is_int8(self.edge_weights) and self.batch_size > 1:
            # int8 activations are scaled per call over all rows, so a batch would change each row's numbers
            raise RunConfigError(f"--edge-weights {self.edge_weights} decodes one item at a time (activation scales span the batch); drop --batch-size.")
        if self.edge_decoder not in EDGE_DECODERS:
            raise RunConfigError(f"--edge-decoder must be one of {', '.join(EDGE_DECODERS)}, not {self.edge_decoder!r}.")
        if self.edge_decoder != "dynamic" and self.batch_size > 1:
            raise RunConfigError(f"--edge-decoder {self.edge_decoder} is a batch-1 path (`complete`, one request at a time); drop --batch-size.")
        if self.prompt not in ("full", "edge"):
            raise RunConfigError(f"--prompt must be full or edge, not {self.prompt!r}.")

    @property
    def label(self) -> str:
        label = f"lora ({self.prompt} prompt)" if self.mode == "lora" else self.mode
        label = label + f" + {self.edge_weights}" if is_quantised(self.edge_weights) else label
        label = label + f" + {self.edge_decoder} decoder" if self.edge_decoder != "dynamic" else label
        weights = ([f"weight {self.tool_prior_weight:g}"] if self.tool_prior_weight != 1 else []) + (
            [f"need weight {self.need_prior_weight:g}"] if self.need_prior_weight != 1 else [])
        prior = (" + tool prior" + (" and step prior" if self.step_prior else "") + (" and need prior" if self.need_prior else "")
                 + (f" ({', '.join(weights)})" if weights else "")) if self.tool_prior else ""
        if self.constrain_arguments:
            return label + " + constrained (names, arguments)" + prior
        if self.constrain_images:
            return label + " + constrained (names, images)" + prior
        return label + " + constrained" + prior if self.constrained else label

    def identity(self) -> dict:
        """What must not change between an interrupted run and its resumption."""
        keys = ("mode", "adapter", "prompt", "generator", "max_new_tokens")
        identity = {k: str(getattr(self, k)) for k in keys}
        if self.batch_size > 1:  # batch-1 runs keep their original identity (and stay resumable)
            identity["batch_size"] = str(self.batch_size)
        if self.constrained:  # likewise: unconstrained runs keep their identity
            identity["constrained"] = "True"
        if self.constrain_images:
            identity["constrain_images"] = "True"
        if self.constrain_arguments:
            identity["constrain_arguments"] = "True"
        if self.tool_prior:
            identity["tool_prior"] = "True"
        if self.tool_prior_weight != 1:
            identity["tool_prior_weight"] = str(self.tool_prior_weight)
        if self.step_prior:
            identity["step_prior"] = "True"
        if self.need_prior:
            identity["need_prior"] = "True"
        if self.need_prior_weight != 1:
            identity["need_prior_weight"] = str(self.need_prior_weight)
        if self.edge_weights != "fp32":
            identity["edge_weights"] = self.edge_weights
        if self.edge_decoder != "dynamic":
            identity["edge_decoder"] = self.edge_decoder
        if chat_format.EDGE_SYSTEM_PROMPT is not None:  # runs in the template's default format keep their identity
            identity["edge_system_prompt"] = chat_format.EDGE_SYSTEM_PROMPT
        return identity


def edge_text(config: RunConfig, instruction: str) -> tuple[str, str | None]:
    """(what the edge model reads, the system prompt to generate an adapter from, if any)."""
    parts = split_prompt(instruction)
    if config.mode == "icl" or (config.mode == "lora" and config.prompt == "full"):
        return instruction, None
    if config.mode == "lora":
        return parts.edge_prompt, None
    if config.mode == "loragen-names":
        return parts.edge_prompt_with_tool_names, parts.system_prompt
    return parts.edge_prompt, parts.system_prompt


def item_grammar(config: RunConfig, instruction: str) -> str | None:
    """The trace grammar of the item's tool set, when the run is constrained: names only; with
    --constrain-images image-only tools get one of the conversation's image paths; with
    --constrain-arguments every input follows its tool's stated format (the agent's grammar)."""
    if not config.constrained:
        return None
    parts = split_prompt(instruction)
    if not config.constrain_images:
        return trace_grammar(parts.tool_names)
    images = list(dict.fromkeys(IMAGE_PATH.findall(parts.user)))
    return tool_call_grammar(parts.tool_definitions, images or None, arguments=config.constrain_arguments)


def item_tool_prior(config: RunConfig, instruction: str) -> ToolPrior | None:
    """The prior over the item's tools given its request, when the run uses one."""
    if not config.tool_prior:
        return None
    parts = split_prompt(instruction)
    return default_retriever().prior(parts.new_input, parts.tool_definitions, config.tool_prior_weight, steps=config.step_prior,
                                     need=config.need_prior, need_weight=config.need_prior_weight)


def run(config: RunConfig) -> RunSummary:
    items = stratified_subset(load_test_items(config.data), config.limit)
    log_path, done = open_resumable_run(config.out, config.identity(), PREDICTIONS_LOG, RunConfigError)
    todo = [item for item in items if item["id"] not in done]

    wall_start = time.perf_counter()
    if todo:
        _run_items(config, todo, done, log_path)
    records = [done[item["id"]] for item in items]
    return _summarize(config, items, records, time.perf_counter() - wall_start)


def _run_items(config: RunConfig, todo: list[dict], done: dict, log_path: Path) -> None:
    service = None
    if config.mode in ("loragen", "loragen-names"):
        generator, _ = (load_generator(config.generator), True) if config.generator else load_default_generator()
        service = AdapterService(generator)
        edge = EdgeModel(load_causal_lm(generator.config.edge_model), weights=config.edge_weights, decoder=config.edge_decoder)
    else:
        edge = EdgeModel(load_causal_lm(), weights=config.edge_weights, decoder=config.edge_decoder)
        if config.mode == "lora":
            edge.specialize(GeneratedLoRA.from_pretrained(config.adapter))

    with log_path.open("a") as log, tqdm(total=len(todo), desc=config.label, unit="item") as progress:
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            records = _run_batch(config, batch, edge, service) if config.batch_size > 1 else [_run_one(config, batch[0], edge, service)]
            for record in records:
                log.write(json.dumps(record) + "\n")
                done[record["id"]] = record
            log.flush()
            progress.update(len(batch))
            progress.set_postfix(s_per_item=f"{records[-1]['latency_s']:.1f}")


def _run_one(config: RunConfig, item: dict, edge: EdgeModel, service: AdapterService | None) -> dict:
    text, system_prompt = edge_text(config, item["instruction"])
    adapter_seconds, merge_seconds, cache_hit = 0.0, 0.0, None
    if service is not None:
        result = service.adapter_for(system_prompt)
        adapter_seconds, cache_hit = result.seconds, result.cache_hit
        if edge.active_adapter != result.adapter_hash:
            merge_seconds = edge.specialize(result.adapter)
    completion = edge.complete(text, max_new_tokens=config.max_new_tokens, grammar=item_grammar(config, item["instruction"]),
                               tool_prior=item_tool_prior(config, item["instruction"]))
    return _record(item, completion, edge, latency_s=completion.seconds, adapter_s=adapter_seconds,
                   merge_s=merge_seconds, adapter_cache_hit=cache_hit)


def _run_batch(config: RunConfig, batch: list[dict], edge: EdgeModel, service: AdapterService | None) -> list[dict]:
    """Decode `batch` at once; in loragen modes each row gets its own adapter (nothing is merged)."""
    texts, system_prompts = zip(*(edge_text(config, item["instruction"]) for item in batch))
    adapter, results = None, [None] * len(batch)
    if service is not None:
        results = [service.adapter_for(prompt) for prompt in system_prompts]
        adapter = GeneratedLoRA.stack([r.adapter for r in results])
    grammars = [item_grammar(config, item["instruction"]) for item in batch] if config.constrained else None
    priors = [item_tool_prior(config, item["instruction"]) for item in batch] if config.tool_prior else None
    completions = edge.complete_batch(list(texts), adapter=adapter, max_new_tokens=config.max_new_tokens, grammars=grammars,
                                      tool_priors=priors)
    return [
        _record(item, completion, edge, latency_s=completion.seconds / len(batch),
                adapter_s=result.seconds if result else 0.0, merge_s=0.0,
                adapter_cache_hit=result.cache_hit if result else None, batch_size=len(batch))
        for item, completion, result in zip(batch, completions, results)
    ]


def _record(item: dict, completion, edge: EdgeModel, **timing) -> dict:
    return {
        "id": item["id"],
        "output": completion.text,
        "edge_prompt_tokens": completion.prompt_tokens,
        "full_prompt_tokens": edge.count_prompt_tokens(item["instruction"]),
        "new_tokens": completion.new_tokens,
        **timing,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _summarize(config: RunConfig, items: list[dict], records: list[dict], wall_s: float) -> RunSummary:
    from .report import write_reports

    predictions = {r["id"]: r["output"] for r in records}
    scores = score(items, predictions).to_dict()
    latencies = [r["latency_s"] for r in records]
    generated = [r["adapter_s"] for r in records if r["adapter_cache_hit"] is False]
    mean_edge = statistics.fmean(r["edge_prompt_tokens"] for r in records)
    mean_full = statistics.fmean(r["full_prompt_tokens"] for r in records)
    metrics = {
        "method": config.label,
        **{k: scores[k] for k in ("SR_t", "SR_act", "SR_args", "SR", "IoU")},
        "mean_edge_prompt_tokens": mean_edge,
        "mean_full_prompt_tokens": mean_full,
        "compression": mean_full / mean_edge,
        # batched runs time batches, not requests: no latency claimed (see the module docstring)
        "median_latency_s": statistics.median(latencies) if config.batch_size == 1 else None,
        "p90_latency_s": _percentile(latencies, 0.9) if config.batch_size == 1 else None,
        "batch_size": config.batch_size,
        "seconds_per_item": statistics.fmean(latencies),
        # generated tokens over decoding time, prefill included (batched runs: the batches' throughput)
        "new_tokens_per_s": sum(r["new_tokens"] for r in records) / sum(latencies) if sum(latencies) > 0 else None,
        "edge_decoder": config.edge_decoder,
        "median_adapter_generation_s": statistics.median(generated) if generated else None,
        "max_new_tokens": config.max_new_tokens,
        "constrained": config.constrained,
        "constrain_images": config.constrain_images,
        "constrain_arguments": config.constrain_arguments,
        "tool_prior": config.tool_prior,
        "tool_prior_weight": f"{config.tool_prior_weight:g}" if config.tool_prior else None,  # "inf" (JSON has no infinity)
        "step_prior": config.step_prior,
        "need_prior": config.need_prior,
        "need_prior_weight": f"{config.need_prior_weight:g}" if config.need_prior else None,
        "edge_system_prompt": chat_format.EDGE_SYSTEM_PROMPT,  # None: the chat template's default system line
        "n_items": len(records),
        "wall_s_this_invocation": wall_s,
        "code_versions": code_versions(config.out),  # more than one: a run resumed across a code change
    }
    write_text_atomic(config.out / "predictions.json", json.dumps([{"id": r["id"], "output": r["output"]} for r in records]))
    write_text_atomic(config.out / "metrics.json", json.dumps(metrics, indent=2))
    summary = RunSummary(method=config.label, metrics=metrics, out=config.out)
    write_reports([summary], config.out)
    return summary

