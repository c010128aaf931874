#!/usr/bin/env python3
"""The paged Sage kernel on LLM-like inputs: rel-L2 vs float64 per family and shape, both P·V
modes, Q smoothing off and on, and what Q smoothing costs in speed (issue 11).

Not a test (tests/gpu/test_sage_llm_inputs_gpu.py asserts). Inputs: bench/llm_like_inputs.py
(families: i.i.d. control, q_bias, k_offset, v_outlier, llm = all three; the issue's shapes).
Speed: triton.testing.do_bench median of one layer call (pre-pass + attention, with the host
plan, as the backend calls it) on the `llm` inputs of each shape, TFLOP/s with causal FLOPs
4 * Hq * D * (visible keys summed over queries).

usage: python3 bench/llm_accuracy.py --out DIR [--shapes NAME ...] [--no-speed]
       TRITON_INTERPRET=1 python3 bench/llm_accuracy.py --cpu --out DIR   # dry run, small shapes
Prints a markdown table last and writes DIR/llm_accuracy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import llm_like_inputs as llm
import torch

MODES = llm.MODES
SEED = 7


def flops(shape: llm.Shape) -> float:
    visible = sum(p * n + n * (n + 1) / 2 for p, n in zip(shape.prefix, shape.extend, strict=True))
    return 4.0 * shape.hq * shape.d * visible


def timings(batch: llm.Batch, plan, kernel: str) -> list[dict]:
    """do_bench median of one layer call per (P·V mode, Q smoothing)."""
    from triton.testing import do_bench

    rows = []
    for pv, qs in MODES:
        k = kernel_for(kernel, batch.shape.d, pv)
        ms = do_bench(
            lambda pv=pv, qs=qs, k=k: llm.run_sage(batch, pv, qs, plan=plan, kernel=k),
            warmup=25, rep=100, return_mode="median",
        )  # fmt: skip
        rows.append(
            {"shape": batch.shape.name, "pv_mode": pv, "q_smooth": qs, "ms": ms,
             "tflops": flops(batch.shape) / ms / 1e9}
        )  # fmt: skip
    return rows


def kernel_for(kernel: str, head_dim: int, pv: str) -> str:
    """The kernel that runs a mode, as the backend routes it: "sm90" only where a Hopper kernel
    is built for this head_dim and P·V mode (head_dim 64: FP16 P·V only), else "triton"."""
    from sglang_sage_ext.kernels import sage_sm90

    if kernel == "sm90" and sage_sm90.head_dim_problem(head_dim, pv == "fp8"):
        return "triton"
    return kernel


def measure_shape(
    shape: llm.Shape, index: int, speed: bool, device: str, kernel: str = "triton"
) -> tuple[list[dict], list[dict]]:
    """Accuracy rows for every family and, on the `llm` inputs, speed rows for every mode.

    kernel "sm90": the Hopper CUDA kernel where it has the head dim and P·V mode (as the backend
    routes, `kernel_for`)."""
    from sglang_sage_ext.kernels.paged_sage import plan_extend

    plan = plan_extend(shape.extend, shape.prefix, device)
    acc, spd = [], []
    for j, family in enumerate(llm.FAMILIES):
        batch = llm.make_batch(family, shape, SEED + 100 * index + j, device=device)
        ref = llm.reference(batch)
        for pv, qs in MODES:
            k = kernel_for(kernel, shape.d, pv)
            row = llm.score_row(batch, family, ref, pv, qs, plan=plan, kernel=k)
            acc.append(dict(row, kernel=k))
        del ref
        if family == "llm" and speed:
            spd = timings(batch, plan, kernel)
        del batch
        if device == "cuda":
            torch.cuda.empty_cache()
    return acc, spd


def render(res: dict) -> str:
    lines = [
        f"# Paged Sage kernel ({res.get('kernel', 'triton')}), LLM-like inputs ({res['device']}, "
        f"torch {res['torch']}, "
        f"triton {res['triton']})",
        "",
        "rel-L2 vs float64 (bf16 inputs and output), Q smoothing off / on.",
        "",
        *llm.rel_l2_table(res["acc"], res["shapes"]),
    ]
    if res["speed"]:
        sp = {(r["shape"], r["pv_mode"], r["q_smooth"]): r["tflops"] for r in res["speed"]}
        lines += ["", "TFLOP/s (one layer call, `llm` inputs; smooth/plain = speed ratio):", ""]
        lines += ["| shape | fp16 plain | fp16 smooth | ratio | fp8 plain | fp8 smooth | ratio |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for shape in res["shapes"]:
            cells = []
            for pv in ("fp16", "fp8"):
                off, on = sp[(shape, pv, "off")], sp[(shape, pv, "on")]
                cells += [f"{off:.0f}", f"{on:.0f}", f"{on / off:.3f}"]
            lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--shapes", nargs="+", help="shape names (default: all of GPU_SHAPES)")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="dry run: CPU_SHAPES, no speed")
    ap.add_argument(
        "--kernel", choices=("triton", "sm90"), default="triton",
        help="sm90: the Hopper CUDA kernel where it is built (head_dim 128; 64 with FP16 P·V)",
    )  # fmt: skip
    args = ap.parse_args()
    import triton

    device = "cpu" if args.cpu else "cuda"
    pool = llm.CPU_SHAPES if args.cpu else llm.GPU_SHAPES
    shapes = [s for s in pool if not args.shapes or s.name in args.shapes]
    res = {
        "command": "python3 " + " ".join(sys.argv),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (interpreter)",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "shapes": [s.name for s in shapes],
        "kernel": args.kernel,
        "acc": [],
        "speed": [],
    }
    for i, shape in enumerate(shapes):
        t0 = time.time()
        acc, spd = measure_shape(shape, i, not (args.no_speed or args.cpu), device, args.kernel)
        res["acc"] += acc
        res["speed"] += spd
        print(f"[llm_accuracy] {shape.name}: {time.time() - t0:.0f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "llm_accuracy.json").write_text(json.dumps(res, indent=1))
    md = render(res)
    (out / "llm_accuracy.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
