#!/usr/bin/env python3
"""Host time of one Sage layer call around its kernel launches (CPU; no GPU needed).

Prefill is not CUDA-graph captured, so every layer call pays its Python on the host, and at
2K tokens the attention kernel itself takes ~80 us on an H200: a whole call that spends as long
on the host leaves the GPU waiting (bench/results/sm90-d64-h200-2026-11-28: 2K whole call 322
vs 377 TFLOP/s for the launch alone). This times what is ours: `sage_extend_attention` with
the two launches replaced by no-ops (the Triton pre-pass launch and the CUDA driver call), and
`sage_sm90.layout_problem` + `sage_sm90.launch` with only the driver call stubbed. Triton's own
launcher and the driver are not in these numbers.

usage: python3 bench/host_overhead.py [--calls 5000]
"""

from __future__ import annotations

import argparse
import time

import torch

from sglang_sage_ext.kernels import paged_sage, sage_sm90
from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend


class _NoLaunch:
    """Stands in for a @triton.jit kernel: kernel[grid](...) does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


class _NoDriver:
    def cuLaunchKernel(self, *args):  # the driver's name
        return 0


class _Stream:
    cuda_stream = 0


def _per_call_us(fn, calls: int) -> float:
    for _ in range(200):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    args = ap.parse_args()
    tokens, hq, hkv, d = 2048, 28, 4, 128  # the 2K prefill shape of bench/sm90_bench.py
    q = torch.randn(tokens, hq, d, dtype=torch.bfloat16)
    k = torch.randn(tokens, hkv, d, dtype=torch.bfloat16)
    o, v = torch.empty_like(q), k.clone()
    pool = torch.randn(16, hkv, d, dtype=torch.bfloat16)
    qo = torch.tensor([0, tokens], dtype=torch.int32)
    kv = torch.tensor([0, 0], dtype=torch.int32)
    kv_indices = torch.zeros(0, dtype=torch.int32)
    plan, ws = plan_extend([tokens], [0], "cpu"), Workspace()

    # ours around the launches: what a server pays per layer call besides the two launches
    paged_sage._kv_prep_kernel = _NoLaunch()
    real_launch, sage_sm90.launch = sage_sm90.launch, lambda *a, **k: None
    paged_sage._sm90_or_triton = lambda *a: "sm90"
    paged_sage.resolve_pv_mode = lambda mode, device: False

    def layer_call():
        paged_sage.sage_extend_attention(
            q, k, v, o, pool, pool, qo, kv, kv_indices, tokens, None, pv_mode="fp16",
            plan=plan, workspace=ws, kernel="sm90",
        )  # fmt: skip

    whole = _per_call_us(layer_call, args.calls)
    # the CUDA launch's own Python (parameter block, layout check), driver call stubbed
    sage_sm90.launch = real_launch
    sage_sm90._load = lambda device, spec: (_NoDriver(), None, 0)
    sage_sm90.torch.cuda.current_stream = lambda device: _Stream()
    kq, ks, vq, _ = ws.buffers(hkv, plan.n_pad, d, 1, False, q.device, blocked=True)
    tiles = plan.tiles(128)

    def cuda_launch():
        sage_sm90.layout_problem(q, o, qo, kv)
        sage_sm90.launch(q, o, kq, ks, vq, qo, kv, plan.blk_indptr, tiles, 0.1)

    launch = _per_call_us(cuda_launch, args.calls)
    print(f"sage_extend_attention around its launches: {whole:.1f} us per layer call")
    print(f"sage_sm90 layout check + launch (driver stubbed): {launch:.1f} us per layer call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
