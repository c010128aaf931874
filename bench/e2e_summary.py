#!/usr/bin/env python3
"""Summarize `sglang.bench_serving` runs of sage_attn vs the native backend (issue #10 format).

Reads `<dir>/{native,sage}_<workload>.jsonl` (bench_serving --output-file; last line = result)
and writes e2e_vs_native.json ({"gpu", "sglang", "native", "workloads": {NAME: {"metric",
"higher_is_better", "sage_attn", "native", "ratio"}}}, ratio = sage_attn / native speed, so
> 1 means sage_attn is faster) and e2e_vs_native.md. `--workloads` keeps only the named rows
(the ones a step ran), `--tp N` adds "tp": N (tensor parallel size of both servers), `--gpu` /
`--sglang` override what this machine reports (merging the files of two device calls).

usage: python3 bench/e2e_summary.py --jsonl DIR --native flashinfer --out DIR [--stats DIR]
         [--workloads "single_32k c64_1k_128"] [--tp 2] [--gpu NAME] [--sglang VERSION]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: workload -> (bench_serving field, higher is better)
METRICS = {
    "single_1k": ("median_e2e_latency_ms", False),
    "single_8k": ("median_e2e_latency_ms", False),
    "single_32k": ("median_e2e_latency_ms", False),
    "single_128k": ("median_e2e_latency_ms", False),
    "c64_1k_128": ("output_throughput", True),
    "mixed_128_8k": ("output_throughput", True),
    "shared_prefix": ("output_throughput", True),
}


def last_result(path: Path) -> dict | None:
    if not path.is_file():
        return None
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else None


def summarize(jsonl: Path, native: str, workloads: list[str] | None = None) -> dict:
    out: dict = {"native": native, "workloads": {}}
    for name, (field, higher) in METRICS.items():
        if workloads is not None and name not in workloads:
            continue
        s, n = (
            last_result(jsonl / f"sage_{name}.jsonl"),
            last_result(jsonl / f"native_{name}.jsonl"),
        )
        row = {
            "metric": field,
            "higher_is_better": higher,
            "sage_attn": s.get(field) if s else None,
            "native": n.get(field) if n else None,
        }
        if s and n:
            row["completed"] = {"sage_attn": s.get("completed"), "native": n.get("completed")}
            row["sage_attn_median_e2e_ms"] = s.get("median_e2e_latency_ms")
            row["native_median_e2e_ms"] = n.get("median_e2e_latency_ms")
        if row["sage_attn"] and row["native"]:
            a, b = row["sage_attn"], row["native"]
            row["ratio"] = a / b if higher else b / a
        out["workloads"][name] = row
    return out


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def render(res: dict) -> str:
    tp = f", TP={res['tp']}" if res.get("tp") else ""
    title = (
        f"# sage_attn vs {res['native']} ({res.get('gpu', '?')}, SGLang {res.get('sglang', '?')}"
        f"{tp})"
    )
    lines = [title, "", "| workload | metric | sage_attn | native | sage_attn / native (speed) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, r in res["workloads"].items():
        fmt = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.3f}"
        lines.append(
            f"| {name} | {r['metric']} | {fmt(r['sage_attn'])} | {fmt(r['native'])} | {ratio} |"
        )
    if res.get("sage_stats"):
        lines += ["", f"sage_attn route counts (layer calls): `{json.dumps(res['sage_stats'])}`"]
    return "\n".join(lines) + "\n"


def _gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    except Exception:
        return "unknown"


def _sglang_version() -> str:
    try:
        from importlib.metadata import version

        return version("sglang")
    except Exception:
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jsonl", type=Path, required=True)
    ap.add_argument("--native", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stats", type=Path)
    ap.add_argument("--workloads", help="names to report, space or comma separated (default all)")
    ap.add_argument("--tp", type=int, help="tensor parallel size of both servers (adds 'tp')")
    ap.add_argument("--gpu", help="GPU name (default: this machine's)")
    ap.add_argument("--sglang", help="SGLang version (default: the installed one)")
    args = ap.parse_args()
    names = args.workloads.replace(",", " ").split() if args.workloads else None
    unknown = sorted(set(names or ()) - set(METRICS))
    if unknown:
        ap.error(f"unknown workloads {unknown}; known: {', '.join(METRICS)}")
    res = summarize(args.jsonl, args.native, names)
    res["gpu"] = args.gpu or _gpu_name()
    res["sglang"] = args.sglang or _sglang_version()
    if args.tp:
        res["tp"] = args.tp
    if args.stats and args.stats.is_dir():
        merged: dict = {}
        for f in args.stats.glob("*.json"):
            data = json.loads(f.read_text())
            for key in ("sage_calls", "fallback_calls", "sage_kernels"):
                val = data.get(key)
                if isinstance(val, int):
                    merged[key] = merged.get(key, 0) + val
                elif isinstance(val, dict):
                    bucket = merged.setdefault(key, {})
                    for k, v in val.items():
                        bucket[k] = bucket.get(k, 0) + v
        res["sage_stats"] = merged
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "e2e_vs_native.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "e2e_vs_native.md").write_text(render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
