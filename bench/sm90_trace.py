#!/usr/bin/env python3
"""Where a CTA of the warp-specialized Hopper kernel spends its time, per shape (GPU, sm90).

Not a test. Launches `bench/variants/trace_phases.cu` (the shipped kernel with SAGE_TRACE on:
clock64 marks per CTA and consumer warpgroup, see csrc/sage_sm90_pipeline.cuh) once per
shape after timing it beside the shipped build, then reports:
* `fit`: a least-squares line, cycles of a consumer = intercept + per_tile * n_tiles, over all
  CTAs; `overhead_tiles` = intercept / per_tile, the fixed cost of a CTA in key tiles;
* `phases`: mean cycles from the CTA's entry to its consumer's start (barrier init), of the Q
  quantization, the first Q·K^T, the first softmax, the main loop, and the last P·V + store;
* `gap_ns`: median globaltimer gap between two CTAs on one SM (launch of the next CTA);
* `loop_per_tile`: main-loop cycles per tile by n_tiles (does a short CTA run slower per tile?).
FLOPs as in sm90_bench.py (causal halved).

usage: python3 bench/sm90_trace.py --out DIR [--shapes prefill_2k_28q4kv,prefill_4k,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch
from sm90_bench import SPEED, Batch, attention_launch
from triton.testing import do_bench

VARIANT = Path(__file__).with_name("variants") / "trace_phases.cu"
SLOTS = 12  # kTraceSlots
DEFAULT_SHAPES = ("prefill_2k_28q4kv", "prefill_4k", "16x_3k_prefix_1k_new", "prefill_32k",
                  "prefill_4k_d64_14q2kv")  # fmt: skip
PHASES = {  # name: (from slot, to slot)
    "cta_start": (4, 5), "q_quant": (5, 6), "first_qk": (6, 7), "first_softmax": (7, 8),
    "main_loop": (8, 9), "last_pv_store": (9, 10), "whole": (4, 10),
}  # fmt: skip


def launches(batch: Batch):
    """(shipped launch, traced launch, trace buffer) of the attention alone, K/V packed once
    (by the shipped kernel: a traced build launched without a buffer would write through null)."""
    from sglang_sage_ext.kernels import sage_sm90
    from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend

    plan, ws = plan_extend(batch.ext, batch.pre, "cuda"), Workspace()
    shipped = attention_launch(batch, plan, ws, sage_sm90.WS_FP16)
    n_tiles = plan.tiles(sage_sm90.WS_FP16.block_m).shape[0]
    trace = torch.zeros(batch.hq * n_tiles * 2 * SLOTS, dtype=torch.int64, device="cuda")
    traced_spec = dataclasses.replace(sage_sm90.WS_FP16, source=VARIANT)
    traced = attention_launch(batch, plan, ws, traced_spec, pack=False, trace=trace)
    return shipped, traced, trace


def least_squares(xs: list[int], ys: list[int]) -> tuple[float, float]:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return my - slope * mx, slope


def summarize(raw: torch.Tensor) -> dict:
    """The report of one traced launch (raw: [CTAs, 2, SLOTS] int64)."""
    rows = [r for cta in raw.tolist() for r in cta if r[4] != 0]  # CTAs without rows: none
    report: dict = {"ctas": len(rows) // 2}
    fits = {}
    for cw in (0, 1):
        mine = rows[cw::2]
        a, b = least_squares([r[1] & 0xFFFFFFFF for r in mine], [r[10] - r[4] for r in mine])
        fits[f"consumer{cw}"] = {"intercept": round(a), "per_tile": round(b),
                                 "overhead_tiles": round(a / b, 2) if b else None}  # fmt: skip
    report["fit"] = fits
    report["phases"] = {
        k: round(statistics.fmean(r[j] - r[i] for r in rows)) for k, (i, j) in PHASES.items()
    }
    by_sm: dict[int, list[tuple[int, int]]] = {}
    for r0, r1 in zip(rows[0::2], rows[1::2], strict=True):
        by_sm.setdefault(r0[0], []).append((r0[2], max(r0[3], r1[3])))
    gaps = []
    for ctas in by_sm.values():
        ctas.sort()
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(ctas)]
    report["gap_ns"] = statistics.median(gaps) if gaps else None
    buckets: dict[int, list[float]] = {}
    for r in rows:
        n = r[1] & 0xFFFFFFFF
        if n > 1:
            bucket = buckets.setdefault(min(1 << (n - 1).bit_length(), 256), [])
            bucket.append((r[9] - r[8]) / (n - 1))
    report["loop_per_tile"] = {
        f"n<={k}": round(statistics.fmean(v)) for k, v in sorted(buckets.items())
    }
    return report


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--shapes", default=",".join(DEFAULT_SHAPES), help="names from sm90_bench.SPEED"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"gpu": torch.cuda.get_device_name(), "shapes": {}}
    for i, name in enumerate(args.shapes.split(",")):
        ext, pre, hq, hkv, *d = SPEED[name]
        batch = Batch.make(ext, pre, hq, hkv, seed=200 + i, d=(d or [128])[0])
        shipped, traced, trace = launches(batch)
        tflops = {}
        for key, fn in (("shipped", shipped), ("traced", traced)):
            ms = do_bench(fn, warmup=30, rep=200, return_mode="median")
            tflops[key] = round(batch.flops() / ms / 1e9, 1)
        trace.zero_()
        traced()
        torch.cuda.synchronize()
        report = {"tflops": tflops, **summarize(trace.view(-1, 2, SLOTS).cpu())}
        result["shapes"][name] = report
        print(name, json.dumps(report), flush=True)
    (args.out / "sm90_trace.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
