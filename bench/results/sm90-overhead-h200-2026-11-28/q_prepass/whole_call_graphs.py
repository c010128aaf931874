"""Whole call and its parts under CUDA graphs (no host time), the Q pre-pass build against
47fd410's kernel. Needs `q_prepass.patch` applied and 47fd410's csrc copied to
bench/variants/tmp_prev/ with bench/variants/tmp_prev_47fd410.cu including its
sage_sm90_ws.cu. Run from the repo root: python3 <this file> OUT.json
"""

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, "bench")
import sm90_bench as sb
import torch
from triton.testing import do_bench

from sglang_sage_ext.kernels import paged_sage, sage_sm90
from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend

SHAPES = {
    "2k": ([2048], [0], 28, 4),
    "4k": ([4096], [0], 32, 8),
    "8k": ([8192], [0], 32, 8),
    "16x": ([1024] * 16, [3072] * 16, 32, 8),
    "32k": ([32768], [0], 32, 8),
}
OLD = dataclasses.replace(sage_sm90.WS_FP16, source=Path("bench/variants/tmp_prev_47fd410.cu"))


def graphed(fn):
    """fn captured once in a CUDA graph; returns its replay."""
    fn()
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def measure(ext, pre, hq, hkv) -> dict:
    b = sb.Batch.make(ext, pre, hq, hkv, seed=1)
    plan, ws = plan_extend(b.ext, b.pre, "cuda"), Workspace()

    def whole():
        b.sage("sm90", plan, ws, q_smooth="off")

    whole()
    dev = b.q.device
    kq, ks, vq, _ = ws.buffers(hkv, plan.n_pad, 128, len(ext), False, dev, True)
    qq, qs = ws.q_buffers(hq, plan.n_qrows, dev)
    tiles = plan.tiles(128)
    args = (b.q, b.o, kq, ks, vq, b.qo_indptr, b.kv_indptr, plan.blk_indptr, tiles, 0.1)

    def kernel(spec):
        return lambda: sage_sm90.launch(*args, spec=spec, q_int8=(qq, qs, plan.qblk_indptr))

    def q_quant():
        paged_sage._q_quant_kernel[(plan.n_qblk, hq)](
            b.q, ks, b.qo_indptr, plan.qblk_indptr, qq, qs, 0.1, len(ext), hq, b.q.stride(0),
            b.q.stride(1), plan.n_qrows, HEAD_DIM=128, BLOCK_D=128, Q_SMOOTH=False, num_warps=4,
        )  # fmt: skip

    parts = {"whole_new": whole, "q_quant": q_quant}
    parts |= {"kernel_new": kernel(sage_sm90.WS_FP16), "kernel_old": kernel(OLD)}
    us = {
        k: round(do_bench(graphed(f), warmup=20, rep=200, return_mode="median") * 1e3, 2)
        for k, f in parts.items()
    }
    us["whole_old_est"] = round(
        us["whole_new"] - us["q_quant"] - us["kernel_new"] + us["kernel_old"], 2
    )
    tflops = {k: round(b.flops() / (v * 1e-6) / 1e12, 1) for k, v in us.items() if k != "q_quant"}
    q_bytes = b.q.numel() * 2 * 1.5 + plan.n_qrows * hq * 4
    return {
        "us": us,
        "tflops": tflops,
        "q_quant_GBps": round(q_bytes / (us["q_quant"] * 1e-6) / 1e9),
    }


if __name__ == "__main__":
    out = {name: measure(*shape) for name, shape in SHAPES.items()}
    print(json.dumps(out, indent=1))
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
