#!/usr/bin/env python3
"""Calibrate `sage_attn`'s cost model: Sage kernel vs the native prefill kernel, same GPU.

Not a test. For a sweep of extend-batch shapes (single prompts, batches of short prompts,
chunks over cached prefixes; 32 q / 8 kv heads, D=128, bf16 as Llama-3.1-8B at TP1) it times,
with triton.testing.do_bench (median, L2 flushed):
* `sage`: the paged Sage kernel as the backend runs it per layer (plan built once per batch
  outside the timing, workspace reused: pre-pass + attention launches);
* `native`: what SGLang's flashinfer backend runs per layer on sm90: a ragged causal prefill
  (backend "auto") over the new tokens and, with a prefix, a paged non-causal prefill
  (backend "fa2") over the prefix merged by `merge_state` (planning excluded, done per batch);
* `before`: the paged Sage kernel of the previous release (per-call allocations, device-side
  cumsum, a (max_len tiles x Hq x B) grid), when `--old-kernel FILE` is given;
* `cudnn`: torch SDPA on cuDNN, single prompts without prefix only.
Then it derives the thresholds (`sglang_sage_ext.backend.cost_model`): the smallest
(min_kv_len, min_pairs) such that every measured batch at or above both has sage / native
speedup >= --margin, and writes `<arch>-flashinfer.json` (for backend/cost_tables/), plus
calibration.json and calibration.md with every point.

usage: python3 bench/calibrate.py --out DIR [--old-kernel old_paged_sage.py] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import torch
from triton.testing import do_bench

HQ, HKV, D = 32, 8, 128
DT = torch.bfloat16
SCALE = 1.0 / math.sqrt(D)
#: (name, [(new tokens, prefix tokens) per request])
SHAPES = [
    ("prefill 512", [(512, 0)]),
    ("prefill 1K", [(1024, 0)]),
    ("prefill 2K", [(2048, 0)]),
    ("prefill 4K", [(4096, 0)]),
    ("prefill 8K", [(8192, 0)]),
    ("prefill 16K", [(16384, 0)]),
    ("prefill 32K", [(32768, 0)]),
    ("8 x 512", [(512, 0)] * 8),
    ("32 x 1K", [(1024, 0)] * 32),
    ("4 x 2K", [(2048, 0)] * 4),
    ("64 x 128 (mixed decode-like)", [(128, 0)] * 64),
    ("chunk 2K over 2K", [(2048, 2048)]),
    ("chunk 4K over 4K", [(4096, 4096)]),
    ("chunk 8K over 8K", [(8192, 8192)]),
    ("chunk 8K over 24K", [(8192, 24576)]),
    ("chunk 8K over 56K", [(8192, 57344)]),
    ("chunk 8K over 120K", [(8192, 122880)]),
    ("16 x (1K over 3K)", [(1024, 3072)] * 16),
    ("16 x (600 over 6K)", [(600, 6000)] * 16),
    ("mixed 128..8K", [(128, 0), (512, 0), (1024, 0), (2048, 0), (4096, 0), (8192, 0)]),
]


def log(*a) -> None:
    print(*a, flush=True)


def pairs_of(reqs) -> float:
    return sum(n * p + n * (n + 1) / 2 for n, p in reqs)


class Batch:
    """One extend batch in SGLang's layout: packed new tokens, a scattered KV pool for prefixes."""

    def __init__(self, reqs, seed: int = 0) -> None:
        g = torch.Generator(device="cuda").manual_seed(seed)
        self.reqs = reqs
        n_new = sum(n for n, _ in reqs)
        n_pre = sum(p for _, p in reqs)
        self.q = torch.randn(n_new, HQ, D, generator=g, device="cuda").to(DT)
        self.k = torch.randn(n_new, HKV, D, generator=g, device="cuda").to(DT)
        self.v = torch.randn(n_new, HKV, D, generator=g, device="cuda").to(DT)
        self.o = torch.empty_like(self.q)
        pool = n_pre + 1024
        self.k_buffer = torch.randn(pool, HKV, D, generator=g, device="cuda").to(DT)
        self.v_buffer = torch.randn(pool, HKV, D, generator=g, device="cuda").to(DT)
        self.kv_indices = torch.randperm(pool, generator=g, device="cuda")[:n_pre].to(torch.int64)
        qo, kv = [0], [0]
        for n, p in reqs:
            qo.append(qo[-1] + n)
            kv.append(kv[-1] + p)
        self.qo_indptr = torch.tensor(qo, dtype=torch.int32, device="cuda")
        self.kv_indptr = torch.tensor(kv, dtype=torch.int32, device="cuda")
        self.max_len = max(n for n, _ in reqs)
        self.has_prefix = n_pre > 0


def sage_kernel() -> tuple[str, str]:
    """The Sage kernel the backend would pick on this GPU (FP16 P·V) and why."""
    from sglang_sage_ext.kernels.sage_ops import paged_kernel_choice

    return paged_kernel_choice(torch.device("cuda"), "fp16")


def sage_fn(b: Batch):
    from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend
    from sglang_sage_ext.kernels.paged_sage import sage_extend_attention

    plan = plan_extend([n for n, _ in b.reqs], [p for _, p in b.reqs], "cuda")
    ws = Workspace()
    kernel = sage_kernel()[0]

    def run():
        sage_extend_attention(
            b.q, b.k, b.v, b.o, b.k_buffer, b.v_buffer, b.qo_indptr, b.kv_indptr,
            b.kv_indices, b.max_len, SCALE, pv_mode="fp16", plan=plan, workspace=ws,
            kernel=kernel,
        )  # fmt: skip

    return run


def old_fn(b: Batch, module):
    def run():
        module.sage_extend_attention(
            b.q, b.k, b.v, b.o, b.k_buffer, b.v_buffer, b.qo_indptr, b.kv_indptr,
            b.kv_indices, b.max_len, SCALE, pv_mode="fp16",
            num_prefix_tokens=sum(p for _, p in b.reqs),
        )  # fmt: skip

    return run


def native_fn(b: Batch):
    """SGLang flashinfer backend's per-layer extend work (ragged + paged prefix + merge)."""
    import flashinfer
    from flashinfer.cascade import merge_state

    ws = torch.empty(512 << 20, dtype=torch.uint8, device="cuda")
    rag = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, "NHD", backend="auto")
    rag.plan(b.qo_indptr, b.qo_indptr, HQ, HKV, D, causal=True, q_data_type=DT,
             sm_scale=SCALE)  # fmt: skip
    if not b.has_prefix:
        return lambda: rag.run(b.q, b.k, b.v)
    ws2 = torch.empty(512 << 20, dtype=torch.uint8, device="cuda")
    paged = flashinfer.BatchPrefillWithPagedKVCacheWrapper(ws2, "NHD", backend="fa2")
    last = torch.ones(len(b.reqs), dtype=torch.int32, device="cuda")
    paged.plan(b.qo_indptr, b.kv_indptr, b.kv_indices.to(torch.int32), last, HQ, HKV, D, 1,
               causal=False, q_data_type=DT, sm_scale=SCALE)  # fmt: skip
    cache = (b.k_buffer.view(-1, 1, HKV, D), b.v_buffer.view(-1, 1, HKV, D))

    def run():
        o1, s1 = rag.run_return_lse(b.q, b.k, b.v)
        o2, s2 = paged.run_return_lse(b.q, cache)
        merge_state(o1, s1, o2, s2)

    return run


def cudnn_fn(b: Batch):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = b.q.transpose(0, 1).unsqueeze(0)
    k = b.k.transpose(0, 1).unsqueeze(0)
    v = b.v.transpose(0, 1).unsqueeze(0)

    def run():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                             enable_gqa=True)  # fmt: skip

    return run


def time_ms(make, *args) -> tuple[float | None, str]:
    try:
        fn = make(*args)
        fn()
        torch.cuda.synchronize()
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median")), ""
    except Exception as exc:  # a refused shape is a data point, not a crash
        return None, f"{type(exc).__name__}: {str(exc)[:160]}"


def measure(shapes, old_module) -> list[dict]:
    rows = []
    for name, reqs in shapes:
        b = Batch(reqs)
        flops = 4.0 * HQ * D * pairs_of(reqs)
        row = {"shape": name, "requests": len(reqs), "reqs": reqs, "pairs": pairs_of(reqs)}
        row["mean_kv"] = sum((n * p + n * (n + 1) / 2) * (n + p) for n, p in reqs) / row["pairs"]
        row["prefix_fraction"] = sum(n * p for n, p in reqs) / row["pairs"]
        kernels = {"sage": (sage_fn, b), "native": (native_fn, b)}
        if old_module is not None:
            kernels["before"] = (lambda bb: old_fn(bb, old_module), b)
        if len(reqs) == 1 and not b.has_prefix:
            kernels["cudnn"] = (cudnn_fn, b)
        for key, (make, arg) in kernels.items():
            ms, err = time_ms(make, arg)
            row[f"{key}_ms"] = ms
            row[f"{key}_tflops"] = flops / ms / 1e9 if ms else None
            if err:
                row[f"{key}_error"] = err
        if row.get("sage_ms") and row.get("native_ms"):
            row["speedup"] = row["native_ms"] / row["sage_ms"]
        log(json.dumps({k: v for k, v in row.items() if k != "reqs"}))
        rows.append(row)
        del b
        torch.cuda.empty_cache()
    return rows


def _selected(pts: list[dict], kv_t: float, pair_t: float, frac_t: float) -> list[dict]:
    return [
        r
        for r in pts
        if r["mean_kv"] >= kv_t and r["pairs"] >= pair_t and r["prefix_fraction"] >= frac_t
    ]


def derive(rows: list[dict], margin: float) -> dict:
    """Thresholds that send the most measured batches to Sage with none below `margin`.

    Ties go to the largest thresholds (the most conservative table that selects the same
    points), so an unmeasured shape between two measured ones stays on the native backend.
    """
    pts = [r for r in rows if r.get("speedup") is not None]
    best = None
    for kv_t in sorted({0.0} | {r["mean_kv"] for r in pts}):
        for pair_t in sorted({0.0} | {r["pairs"] for r in pts}):
            for frac_t in sorted({0.0} | {r["prefix_fraction"] for r in pts}):
                chosen = _selected(pts, kv_t, pair_t, frac_t)
                if not chosen or any(r["speedup"] < margin for r in chosen):
                    continue
                key = (len(chosen), kv_t, pair_t, frac_t)
                if best is None or key > best[0]:
                    best = (key, [r["shape"] for r in chosen])
    if best is None:
        return {"enabled": False, "sage_shapes": []}
    (_, kv_t, pair_t, frac_t), shapes = best
    return {
        "enabled": True,
        "min_kv_len": math.ceil(kv_t),
        "min_pairs": math.ceil(pair_t),
        "min_prefix_fraction": math.floor(frac_t * 1000) / 1000,
        "sage_shapes": shapes,
    }


def render(rows: list[dict], table: dict, gpu: str) -> str:
    def f(x, nd=1):
        return "-" if x is None else f"{x:.{nd}f}"

    lines = [f"# Sage kernel vs native prefill ({gpu}; TFLOP/s, causal FLOPs halved)", "",
             "| shape | sage | native (flashinfer) | speedup | before (prev. Sage) | cuDNN |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['shape']} | {f(r.get('sage_tflops'))} | {f(r.get('native_tflops'))} | "
            f"{f(r.get('speedup'), 2)} | {f(r.get('before_tflops'))} | {f(r.get('cudnn_tflops'))} |"
        )
    lines += ["", f"Derived table: `{json.dumps({k: v for k, v in table.items()})}`"]
    return "\n".join(lines) + "\n"


def rederive(log_path: Path, out: Path, margin: float) -> int:
    """The table from a device run's printed rows (no GPU needed): one JSON row per line."""
    names = dict(SHAPES)
    rows = []
    for line in log_path.read_text().splitlines():
        if line.startswith('{"shape"'):
            row = json.loads(line)
            reqs = names[row["shape"]]
            row["prefix_fraction"] = sum(n * p for n, p in reqs) / row["pairs"]
            rows.append(row)
    gpu = next((ln.split(" (", 1)[1].split(";")[0] for ln in log_path.read_text().splitlines()
                if ln.startswith("# Sage kernel vs native prefill")), "unknown GPU")  # fmt: skip
    table = derive(rows, margin)
    table["source"] = (
        f"bench/calibrate.py on {gpu} (rows of {log_path.name}): Sage kernel vs SGLang's "
        f"flashinfer prefill, {len(rows)} batch shapes, margin {margin}"
    )
    (out / "sm90-flashinfer.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "calibration.md").write_text(render(rows, table, gpu))
    print(render(rows, table, gpu))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--old-kernel", type=Path, default=None)
    ap.add_argument("--margin", type=float, default=1.02)
    ap.add_argument("--quick", action="store_true", help="a few shapes (dry runs)")
    ap.add_argument("--from-log", type=Path, help="re-derive from the JSON rows of a calibrate log")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_log:
        return rederive(args.from_log, args.out, args.margin)
    old = None
    if args.old_kernel and args.old_kernel.is_file():
        spec = importlib.util.spec_from_file_location("old_paged_sage", args.old_kernel)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    shapes = SHAPES[:3] if args.quick else SHAPES
    gpu = torch.cuda.get_device_name()
    cap = torch.cuda.get_device_capability()
    t0 = time.time()
    kernel, why = sage_kernel()
    log(f"Sage kernel: {why}")
    rows = measure(shapes, old)
    table = derive(rows, args.margin)
    arch = f"sm{cap[0]}{cap[1]}"
    table["source"] = (
        f"bench/calibrate.py on {gpu}, {time.strftime('%Y-%m-%d')}: Sage kernel ({kernel}) vs "
        f"SGLang's flashinfer prefill, {len(rows)} batch shapes, margin {args.margin}"
    )
    (args.out / f"{arch}-flashinfer.json").write_text(json.dumps(table, indent=2) + "\n")
    (args.out / "calibration.json").write_text(json.dumps(
        {"gpu": gpu, "arch": arch, "torch": torch.__version__, "seconds": time.time() - t0,
         "sage_kernel": why,
         "rows": rows, "table": table}, indent=2) + "\n")  # fmt: skip
    (args.out / "calibration.md").write_text(render(rows, table, gpu))
    log(render(rows, table, gpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
