"""The model card written beside every trained model: data, recipe, steps, wall time, final losses."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from .resumable_run import code_versions
from .train_config import TrainConfig


def summarize_log(log_path: Path, last: int = 20) -> dict:
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()] if log_path.exists() else []
    records = [r for r in lines if "loss" in r]
    evaluations = [r for r in lines if "eval_lm" in r]
    tail = records[-last:]
    mean = lambda key: sum(r[key] for r in tail) / len(tail) if tail else float("nan")  # noqa: E731
    return {
        "steps_logged": len(records),
        "train_seconds": round(sum(r["seconds"] for r in records), 1),
        f"final_loss_mean_last_{last}": round(mean("loss"), 4),
        f"final_lm_mean_last_{last}": round(mean("lm"), 4),
        f"final_cv_mean_last_{last}": round(mean("cv"), 5),
        "first_lm": round(records[0]["lm"], 4) if records else None,
        f"final_kl_mean_last_{last}": round(mean("kl"), 4) if tail and all("kl" in r for r in tail) else None,
        "first_kl": round(records[0]["kl"], 4) if records and "kl" in records[0] else None,
        "held_out_lm": round(evaluations[-1]["eval_lm"], 4) if evaluations else None,
        "held_out_examples": evaluations[-1]["eval_examples"] if evaluations else 0,
    }


def data_summary(config: TrainConfig, rows: list[dict], used: int, dropped: int) -> dict:
    digest = hashlib.sha256()
    for path in config.data:
        digest.update(Path(path).read_bytes())
    return {
        "files": list(config.data),
        "sha256": digest.hexdigest(),
        "rows": len(rows),
        "used": used,
        "dropped_too_long": dropped,
        "distinct_system_prompts": len({r["system_prompt"] for r in rows}),
        "kinds": dict(Counter(r.get("kind", "?") for r in rows)),
        # "seed0-…" (GPT4Tools builder) → seed0; "ARC-Easy/train/12" (commonsense) → ARC-Easy
        "id_prefixes": sorted({_id_prefix(str(r.get("id", ""))) for r in rows})[:5],
    }


def _id_prefix(row_id: str) -> str:
    return row_id.split("/")[0] if "/" in row_id else row_id.split("-")[0]


def plot_losses(log_path: Path, path: Path) -> None:
    """L_LM and L_cv per step, side by side (L_cv is ~100x smaller: its own axis); L_KL beside L_LM
    when the run distils."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in (json.loads(line) for line in log_path.read_text().splitlines() if line.strip()) if "loss" in r]
    steps = [r["step"] for r in records]
    figure, (lm_axis, cv_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    lm_axis.plot(steps, [r["lm"] for r in records], label="L_LM")
    if records and all("kl" in r for r in records):
        lm_axis.plot(steps, [r["kl"] for r in records], label="L_KL (teacher ‖ student)", color="tab:green")
        lm_axis.legend()
    lm_axis.set(title="answer tokens", xlabel="step")
    cv_axis.plot(steps, [r["cv"] for r in records], color="tab:orange")
    cv_axis.set(title="L_cv (load balance)", xlabel="step")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def trained_parts(config: TrainConfig) -> str:
    if config.method == "lora":
        return f"trained: a peft LoRA (r {config.r}, alpha {config.r}) on the edge FFNs, {config.prompt} prompt."
    distillation = (f" Context distillation (ours): L_KL weight {config.kl_weight}, L_LM weight {config.lm_weight}, teacher "
                    f"`{config.teacher_adapter}` (full prompt), its top {config.teacher_top_k} tokens." if config.distils else "")
    return (f"trained: cloud LoRA {config.train_cloud_lora}, meta tokens {config.train_meta_tokens}, routers {config.train_routers}, "
            f"experts {config.train_experts}; n_experts {config.n_experts}, top_k {config.top_k}, r {config.r}, cv_alpha {config.cv_alpha}."
            + distillation)


def write_model_card(config: TrainConfig, rows: list[dict], used: int, dropped: int, out: Path, final: Path) -> None:
    summary = {"config": config.to_dict(), "data": data_summary(config, rows, used, dropped), "training": summarize_log(out / "log.jsonl"),
               "code_versions": code_versions(out)}  # more than one: resumed across a code change
    (final / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if (out / "log.jsonl").exists():
        plot_losses(out / "log.jsonl", final / "loss.png")
    data, training = summary["data"], summary["training"]
    what = "LoRA-Gen generator" if config.method == "loragen" else f"vanilla LoRA baseline ({config.prompt} prompt)"
    lines = [
        f"# {what}",
        "",
        f"- Edge model: `{config.edge_model}`; cloud model: `{config.cloud_model}`.",
        f"- Data: {data['rows']} rows from {', '.join(data['files'])} (sha256 {data['sha256'][:16]}…, "
        f"id prefixes {data['id_prefixes']}), {data['distinct_system_prompts']} distinct system prompts, kinds {data['kinds']}; "
        f"{data['dropped_too_long']} dropped for length.",
        f"- Recipe `{config.recipe}`: lr {config.lr}, batch {config.batch_size}, warm-up {config.warmup_steps}, "
        f"cosine to step {config.steps}, weight decay {config.weight_decay}, seed {config.seed}; " + trained_parts(config),
        f"- Steps logged: {training['steps_logged']}; summed step time {training['train_seconds']} s.",
        "- Code: " + (", ".join(f"{v['git'] or v['code']} from step {v['records_before']}" for v in summary["code_versions"]) or "not recorded")
        + (" (resumed across a code change)." if len(summary["code_versions"]) > 1 else "."),
        f"- L_LM first step {training['first_lm']}, mean of the last 20 steps {training['final_lm_mean_last_20']}; "
        f"L_cv {training['final_cv_mean_last_20']}"
        + (f"; L_KL first step {training['first_kl']}, last 20 steps {training['final_kl_mean_last_20']}" if training["first_kl"] is not None else "")
        + (f"; held-out L_LM {training['held_out_lm']} on {training['held_out_examples']} examples." if training["held_out_examples"] else "."),
        "",
        "Full details: `training_summary.json`; loss curves: `loss.png`.",
        "",
    ]
    (final / "README.md").write_text("\n".join(lines))
