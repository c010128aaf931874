"""Results of train_tiny_llama.py: the warnings, `train_results.json` and `train_results.md`.

No torch here: these read and write plain result dicts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def warnings_of(res: dict) -> list[str]:
    """One line per problem a reader must not miss (no retrieval skill, training cut short)."""
    out = []
    for name, r in res.get("variants", {}).items():
        if "error" in r:
            out.append(f"{name}: FAILED ({r['error']})")
            continue
        t = r.get("train", {})
        if t.get("cut_short_by_time_cap"):
            out.append(
                f"{name}: training CUT SHORT by the time cap after {t['steps']} of "
                f"{t['max_steps']} steps ({t['train_time_s']} s)"
            )
        hf = r.get("hf_check") or {}
        if hf.get("ok") is False:
            why = hf.get("error") or f"max |dlogit| {hf.get('max_abs_diff_fp32')}"
            out.append(f"{name}: transformers reload check failed ({why})")
        if r.get("retrieval_learned") is False:
            c = r["retrieval_check"]
            toy = " (expected for the toy smoke model)" if name == "toy" else ""
            out.append(
                f"{name}: retrieval NOT learned (retrieval_learned: false): exact match "
                f"{c['exact']} @ {c['length']} < {c['threshold']}{toy}"
            )
    return out


def _header(res: dict) -> list[str]:
    v, d = res["versions"], res["data"]
    lines = ["# Tiny trained Llamas: training and bf16 reference accuracy", ""]
    lines.append(
        f"seed {res['seed']}; torch {v['torch']}, transformers {v.get('transformers')}, "
        f"GPU {v.get('gpu', 'none')}; data: {d['train_tokens']:,} train tokens, "
        f"{d['heldout_tokens']:,} held-out tokens (stdlib `{d['stdlib']}`, "
        f"split by file, seed `{d['split_seed']}`); total {res['total_time_s']} s."
    )
    lines.append("")
    lines += [f"**retrieval_learned: {str(res.get('retrieval_learned')).lower()}**", ""]
    for w in warnings_of(res):
        lines += [f"> **WARNING: {w}**", ""]
    return lines


def _variant_intro(name: str, r: dict) -> list[str]:
    c, t = r["config"], r["train"]
    chk = r.get("retrieval_check") or {}
    emerged = t.get("emerged_step")
    return [
        f"## {name} ({r['params'] / 1e6:.1f} M params)",
        "",
        f"{c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
        f"{c['num_attention_heads']} q / {c['num_key_value_heads']} kv heads x "
        f"{c['head_dim']}, rope_theta {c['rope_theta']:g}, max_pos "
        f"{c['max_position_embeddings']}; trained {t['steps']} of {t.get('max_steps')} "
        f"steps, {t['tokens'] / 1e6:.1f} M tokens, {t['train_time_s']} s "
        f"({t.get('steps_per_s')} steps/s); transformers reload max |dlogit| (fp32) "
        f"{r['hf_check'].get('max_abs_diff_fp32')}",
        "",
        f"**retrieval_learned: {str(r.get('retrieval_learned')).lower()}** (exact match "
        f"{chk.get('exact')} @ {chk.get('length')}, threshold {chk.get('threshold')}); "
        f"training probe first >= threshold at step "
        f"{emerged if emerged is not None else 'never'}"
        + ("; **training cut short by the time cap**" if t.get("cut_short_by_time_cap") else ""),
        "",
    ]


def _eval_table(e: dict) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    for src, per in e["perplexity"].items():
        for ctx, p in per.items():
            lines.append(f"| perplexity {src} @ {ctx} | {p['ppl']} ({p['tokens']:,} tokens) |")
    for length, rr in e["retrieval"].items():
        lines.append(
            f"| retrieval exact match @ {length} | {rr['exact']} "
            f"(token acc {rr.get('token_acc')}, n={rr['n']}) |"
        )
    return [*lines, ""]


def _curve_table(curve: list[dict]) -> list[str]:
    if not curve:
        return []
    pick = sorted({0, *range(0, len(curve), max(1, len(curve) // 8)), len(curve) - 1})
    lines = [
        "| step | time s | lm loss | answer loss | seq len | phase |",
        "|---|---|---|---|---|---|",
    ]
    for i in pick:
        p = curve[i]
        lines.append(
            f"| {p['step']} | {p['time_s']} | {p['lm_loss']} | {p['answer_loss']} "
            f"| {p['seq_len']} | {p.get('phase', '')} |"
        )
    return [*lines, ""]


def _probe_table(probes: list[dict]) -> list[str]:
    if not probes:
        return []
    keys = [k for k in probes[0] if k.startswith("probe_")]
    lines = [
        "| step | " + " | ".join(k.replace("probe_", "") for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for p in probes:
        lines.append(f"| {p['step']} | " + " | ".join(str(p[k]) for k in keys) + " |")
    return [*lines, ""]


def to_markdown(res: dict) -> str:
    """Human summary of train_results.json."""
    lines = _header(res)
    for name, r in res["variants"].items():
        if "error" in r:
            lines += [f"## {name}: FAILED", "", "```", r["error"], "```", ""]
            continue
        lines += _variant_intro(name, r)
        lines += _eval_table(r["eval"])
        lines += _curve_table(r["train"]["loss_curve"])
        lines += _probe_table(r["train"].get("probes"))
    return "\n".join(lines) + "\n"


def write_results(res: dict, results_dir: Path, t0: float) -> None:
    """train_results.{json,md}, with the overall verdict and the warnings up front."""
    flags = [r.get("retrieval_learned") for r in res["variants"].values()]
    res["retrieval_learned"] = bool(flags) and all(f is True for f in flags)
    res["warnings"] = warnings_of(res)
    res["total_time_s"] = round(time.perf_counter() - t0, 1)
    (results_dir / "train_results.json").write_text(json.dumps(res, indent=2) + "\n")
    (results_dir / "train_results.md").write_text(to_markdown(res))
