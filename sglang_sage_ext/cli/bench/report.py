"""`bench report`: one markdown + JSON report, with PNG plots, from the result JSONs.

Reads `<dir>/{throughput,mmlu,logits,perplexity,drift}.json` (whichever exist) and writes
`report.md`, `report.json` and `ttft_vs_prompt_length.png`, `output_tps_vs_concurrency.png`,
`kl_vs_context_length.png`, `drift_layers.png` where the data exists. matplotlib is optional
(`pip install 'sglang-sage-ext[plots]'`) and imported only to draw. Result files may be strict
JSON (NaN as null, listed under `non_finite`) or older files with bare NaN; report.json is
strict (results.py).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from sglang_sage_ext.cli.bench import results
from sglang_sage_ext.cli.bench.report_plots import (
    ReportError,
    plot_drift,
    plot_kl,
    plot_tps,
    plot_ttft,
    require_matplotlib,
)
from sglang_sage_ext.cli.bench.ui import fmt, pct

KINDS = ("throughput", "mmlu", "logits", "perplexity", "drift")


#: Top-level keys each result kind must have for the report to read it.
_REQUIRED_KEYS = {
    "drift": ("layers", "final"),
    **{kind: ("results", "comparison") for kind in ("throughput", "mmlu", "logits", "perplexity")},
}


def load_runs(output_dir: Path) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        path = output_dir / f"{kind}.json"
        if not path.exists():
            if path.is_symlink():  # exists() follows the link: a dangling one is no "absent"
                raise ReportError(
                    f"{path} is a symlink to {os.readlink(path)!r}, which does not exist; "
                    "restore its target, or remove the link to report without it"
                )
            continue
        try:
            doc = results.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise ReportError(f"cannot read {path}: {exc}") from None
        missing = (
            [key for key in _REQUIRED_KEYS[kind] if key not in doc]
            if isinstance(doc, dict)
            else None
        )
        if missing is None or doc.get("kind") != kind or missing:
            what = f"missing {', '.join(missing)}" if missing else "another kind of file"
            raise ReportError(
                f"{path} is not a `sglang-sage bench {kind}` result ({what}); "
                f"re-run that command with -o {output_dir}, or move the file away"
            )
        runs[kind] = doc
    if not runs:
        raise ReportError(
            f"no result files in {output_dir} (expected any of "
            + ", ".join(f"{k}.json" for k in KINDS)
            + "); run `sglang-sage bench <command> -o DIR` first"
        )
    return runs


def build(output_dir: Path, plots: bool = True) -> list[Path]:
    """Write the report files; returns their paths."""
    runs = load_runs(Path(output_dir))
    plt = require_matplotlib() if plots else None
    written: list[Path] = []
    images: dict[str, str] = {}
    if plt is not None:
        for name, maker in (
            ("ttft_vs_prompt_length.png", plot_ttft),
            ("output_tps_vs_concurrency.png", plot_tps),
            ("kl_vs_context_length.png", plot_kl),
        ):
            path = Path(output_dir) / name
            if maker(plt, runs, path):
                images[name] = name
                written.append(path)
        if "drift" in runs:
            drift_png = plot_drift(runs["drift"], Path(output_dir))
            if drift_png:
                images["drift_layers.png"] = Path(drift_png).name
                written.append(Path(drift_png))
    json_path = Path(output_dir) / "report.json"
    md_path = Path(output_dir) / "report.md"
    try:
        summary = summarize(runs)
        summary["plots"] = sorted(images)
        text = markdown(runs, summary, images)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise ReportError(
            f"a result file in {output_dir} is incomplete ({type(exc).__name__}: {exc}); "
            "re-run its `sglang-sage bench` command"
        ) from None
    try:
        json_path.write_text(results.dumps(summary) + "\n")
        md_path.write_text(text)
    except OSError as exc:
        raise ReportError(f"cannot write the report in {output_dir}: {exc}") from None
    return [md_path, json_path, *written]


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The machine-readable report: gates, thresholds and headline numbers per run."""
    out: dict[str, Any] = {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "runs": {},
        "gates": {},
        "failed_thresholds": [],
    }
    for kind, doc in runs.items():
        entry = {
            "created": doc.get("created"),
            "sglang": doc.get("sglang"),
            "config": doc.get("config"),
            "sage_stats": doc.get("sage_stats"),
            "gates": doc.get("gates"),
        }
        if kind == "mmlu":
            entry["accuracy"] = {r: v.get("accuracy") for r, v in doc["results"].items()}
        elif kind == "perplexity":
            entry["perplexity"] = {r: v.get("perplexity") for r, v in doc["results"].items()}
        elif kind == "logits":
            entry["overall"] = doc["comparison"].get("all")
        elif kind == "throughput":
            entry["comparison"] = doc.get("comparison")
            entry["memory"] = {r: v.get("memory") for r, v in doc["results"].items()}
        elif kind == "drift":
            entry["final"] = doc.get("final")
        out["runs"][kind] = entry
        out["gates"].update(doc.get("gates") or {})
        out["failed_thresholds"] += [
            {**t, "kind": kind} for t in doc.get("thresholds") or [] if t.get("failed")
        ]
    return out


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |" for r in rows
    ]
    return "\n".join(lines) + "\n"


def _stats_line(doc: dict[str, Any]) -> str:
    parts = []
    for role, s in (doc.get("sage_stats") or {}).items():
        if not s:
            parts.append(f"{role}: not recorded")
            continue
        fb = ", ".join(f"{k} {v}" for k, v in s["fallback_calls"].items()) or "no fallback"
        share = "-" if s.get("sage_share") is None else f"{s['sage_share'] * 100:.1f}%"
        parts.append(f"{role}: {s['sage_calls']} Sage calls ({share} of extend calls; {fb})")
    return (
        ("Extend calls on Sage during the workload: " + "; ".join(parts) + ".\n") if parts else ""
    )


def markdown(runs: dict[str, dict[str, Any]], summary: dict, images: dict[str, str]) -> str:
    md = ["# sglang-sage bench report\n", f"Generated {summary['generated']}.\n"]
    failed = summary["failed_thresholds"]
    if failed:
        md.append(
            "**Thresholds exceeded:** "
            + ", ".join(f"{t['gate']} = {fmt(t['value'])} > {t['limit']}" for t in failed)
            + "\n"
        )
    for kind, doc in runs.items():
        cfg = doc.get("config") or {}
        baseline = cfg.get("baseline", "baseline")
        md.append(f"\n## {kind}\n")
        md.append(
            f"SGLang {doc.get('sglang')}, sglang-sage-ext {doc.get('sglang_sage_ext')}, "
            f"model `{cfg.get('model_path')}`, baseline `{baseline}`, {doc.get('created')}.\n"
        )
        md.append(_stats_line(doc))
        md.append("\n" + _section(kind, doc, baseline))
        for name in _images_for(kind):
            if name in images:
                md.append(f"\n![{name}]({images[name]})\n")
        if doc.get("gates"):
            md.append(
                "\nGates: " + ", ".join(f"`{k}` = {fmt(v)}" for k, v in doc["gates"].items()) + "\n"
            )
    return "\n".join(md)


def _images_for(kind: str) -> list[str]:
    return {
        "throughput": ["ttft_vs_prompt_length.png", "output_tps_vs_concurrency.png"],
        "logits": ["kl_vs_context_length.png"],
        "drift": ["drift_layers.png"],
    }.get(kind, [])


def _section(kind: str, doc: dict[str, Any], baseline: str) -> str:
    """The markdown table(s) of one result file; "" for a kind without one."""
    render = _SECTIONS.get(kind)
    return render(doc, baseline) if render else ""


def _throughput_section(doc: dict[str, Any], baseline: str) -> str:
    from sglang_sage_ext.cli.bench import throughput

    rows = throughput.comparison_rows(doc["comparison"], pct)
    text = _md_table(["grid point", "metric", "sage_attn", baseline, "change"], rows)
    mem = [
        [
            role,
            r["memory"].get("peak_server_mib"),
            r["memory"].get("peak_device_mib"),
            r["memory"].get("method"),
        ]
        for role, r in doc["results"].items()
    ]
    return (
        text
        + "\nPeak GPU memory (MiB):\n\n"
        + _md_table(["server", "server processes", "whole device", "measured with"], mem)
    )


def _mmlu_section(doc: dict[str, Any], baseline: str) -> str:
    comp, res = doc["comparison"], doc["results"]
    rows = [[n, c["sage"], c["baseline"], c["delta"]] for n, c in comp["subjects"].items()]
    overall = ["**overall**", res["sage"]["accuracy"], res["baseline"]["accuracy"]]
    rows.append([*overall, comp["accuracy_delta"]])
    return _md_table(["subject", "sage_attn", baseline, "delta"], rows) + (
        f"\nSame answer on {fmt(comp['answer_agreement'])} of the questions.\n"
    )


def _logits_section(doc: dict[str, Any], baseline: str) -> str:
    from sglang_sage_ext.cli.bench import logits

    rows = [row[:-1] for row in logits.comparison_rows(doc["comparison"])]
    header = ["context", "positions", "KL mean", "KL max", "top-1", "max abs dlogprob", "same"]
    return _md_table(header, rows)


def _perplexity_section(doc: dict[str, Any], baseline: str) -> str:
    c = doc["comparison"]
    change = "-" if c["ppl_increase_pct"] is None else f"{c['ppl_increase_pct']:+.3f}%"
    return _md_table(
        ["metric", "sage_attn", baseline, "change"],
        [
            ["perplexity", c["perplexity_sage"], c["perplexity_baseline"], change],
            ["mean abs dlogprob", c["mean_abs_logprob_diff"], "", ""],
        ],
    )


def _drift_section(doc: dict[str, Any], baseline: str) -> str:
    from sglang_sage_ext.cli.bench import drift

    layer_rows, final_rows = drift.table_rows(doc)
    return (
        _md_table(drift.LAYER_HEADER, layer_rows)
        + "\nSage in every layer vs exact attention:\n\n"
        + _md_table(drift.FINAL_HEADER, final_rows)
    )


_SECTIONS = {
    "throughput": _throughput_section,
    "mmlu": _mmlu_section,
    "logits": _logits_section,
    "perplexity": _perplexity_section,
    "drift": _drift_section,
}
