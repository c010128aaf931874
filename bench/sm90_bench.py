#!/usr/bin/env python3
"""The Hopper CUDA Sage kernel (kernels/sage_sm90) on one GPU: correctness, then TFLOP/s.

Not a test. Per shape (bf16, D=128 unless the name says d64, SGLang's extend layout with a
scattered KV pool):
* correctness: rel-L2 vs float64 for sm90 and the Triton kernel (FP16 and FP8 P·V, with and
  without Q smoothing), outputs poisoned with NaN first so an unwritten row shows; the two Sage
  kernels must also agree closely in the same mode;
* speed: triton.testing.do_bench medians of the whole call (pre-pass + attention), of the
  sm90 attention launch alone (with and without Q smoothing), of the Triton kernel, and of
  cuDNN SDPA (prefill shapes, is_causal; chunk shapes with a bottom-right mask). FLOPs count
  visible (query, key) pairs (causal halved): 4 * Hq * D * pairs.

usage: python3 bench/sm90_bench.py --out DIR [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import llm_like_inputs as llm
import torch
import torch.nn.functional as F
from triton.testing import do_bench

LOG2E = 1.4426950408889634
DEVICE = "cuda"


@dataclass
class Batch(llm.Batch):
    """An i.i.d. extend batch (`llm_like_inputs.make_batch`: SGLang's layout, scattered KV pool)
    with an output buffer and what the checks and timings need."""

    o: torch.Tensor | None = None

    @classmethod
    def make(cls, ext, pre, hq, hkv, seed, dtype=torch.bfloat16, qo64=False, d=128) -> Batch:
        """Fresh inputs; `qo64`: an int64 qo_indptr beside the int32 kv_indptr, as SGLang 0.5.17
        passes them."""
        shape = llm.Shape(f"{len(ext)} requests", tuple(pre), tuple(ext), hq, hkv, d)
        batch = cls(**vars(llm.make_batch("iid", shape, seed, device=DEVICE, dtype=dtype)))
        batch.o = torch.empty_like(batch.q)
        if qo64:
            batch.qo_indptr = batch.qo_indptr.to(torch.int64)
        return batch

    @property
    def ext(self) -> list[int]:
        return list(self.shape.extend)

    @property
    def pre(self) -> list[int]:
        return list(self.shape.prefix)

    @property
    def hq(self) -> int:
        return self.shape.hq

    @property
    def hkv(self) -> int:
        return self.shape.hkv

    @property
    def d(self) -> int:
        return self.shape.d

    def pairs(self) -> float:
        return float(sum(e * p + e * (e + 1) / 2 for e, p in zip(self.ext, self.pre, strict=True)))

    def flops(self) -> float:
        return 4.0 * self.hq * self.d * self.pairs()

    def request(self, b):
        """(q, k_all, v_all) of request b in [S, H, D]."""
        q0, p0 = int(self.qo_indptr[b]), int(self.kv_indptr[b])
        q1, p1 = int(self.qo_indptr[b + 1]), int(self.kv_indptr[b + 1])
        idx = self.kv_indices[p0:p1]
        k = torch.cat([self.k_buffer[idx], self.k[q0:q1]])
        v = torch.cat([self.v_buffer[idx], self.v[q0:q1]])
        return self.q[q0:q1], k, v

    def sage(self, kernel, plan, ws, pv="fp16", spec=None, q_smooth="auto"):
        from sglang_sage_ext.kernels.paged_sage import sage_extend_attention

        sage_extend_attention(
            self.q, self.k, self.v, self.o, self.k_buffer, self.v_buffer, self.qo_indptr,
            self.kv_indptr, self.kv_indices, max(self.ext), self.d**-0.5, pv_mode=pv,
            q_smooth=q_smooth, plan=plan, workspace=ws, kernel=kernel, sm90_spec=spec,
        )  # fmt: skip
        return self.o


def check(name, batch, out_rows):
    from sglang_sage_ext.kernels import sage_sm90
    from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend

    ref = llm.reference(batch)
    plan, ws = plan_extend(batch.ext, batch.pre, DEVICE), Workspace()
    row = {"shape": name}
    outs = {}
    # "auto" smooths Q with FP16 P·V on Triton only (`resolve_q_smooth`); "_plain" / "_smooth"
    # force it off / on, so that each kernel is compared with the other in the same mode
    runs = (("sm90", "sm90", "fp16", None, "auto"), ("triton", "triton", "fp16", None, "auto"),
            ("sm90_smooth", "sm90", "fp16", None, "on"),
            ("triton_plain", "triton", "fp16", None, "off"),
            ("sm90_fp8", "sm90", "fp8", None, "auto"),
            ("triton_fp8", "triton", "fp8", None, "auto"),
            ("sm90_fp8_smooth", "sm90", "fp8", None, "on"),
            ("sm90_1wg", "sm90", "fp16", sage_sm90.ONE_WG_FP16, "on"))  # fmt: skip
    for name, kernel, pv, spec, q_smooth in runs:
        if kernel == "sm90" and not _has_sm90(batch.d, pv, spec):
            continue  # head_dim 64: FP16 P·V on the warp-specialized kernel only
        batch.o.fill_(float("nan"))
        o = batch.sage(kernel, plan, ws, pv, spec, q_smooth).clone()
        torch.cuda.synchronize()
        row[f"{name}_nan"] = bool(o.isnan().any())
        row[f"{name}_rel_l2"] = llm.rel_l2(o, ref)
        outs[name] = o
    pairs = {"sm90_smooth_vs_triton": ("sm90_smooth", "triton"),
             "sm90_vs_triton_plain": ("sm90", "triton_plain"),
             "ws_vs_1wg_smooth": ("sm90_smooth", "sm90_1wg"),
             "sm90_fp8_vs_triton_fp8": ("sm90_fp8", "triton_fp8")}  # fmt: skip
    for key, (a, b) in pairs.items():
        if a in outs and b in outs:
            row[key] = llm.rel_l2(outs[a], outs[b].double())
    out_rows.append(row)
    print(json.dumps(row), flush=True)


def _has_sm90(head_dim: int, pv: str, spec) -> bool:
    """Whether a Hopper kernel runs this head_dim and P·V mode (`spec`: a forced one)."""
    from sglang_sage_ext.kernels import sage_sm90

    if spec is not None:
        return head_dim in spec.head_dims
    return sage_sm90.head_dim_problem(head_dim, pv == "fp8") is None


def cudnn_call(batch):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right

    assert len(batch.ext) == 1
    q, k, v = (x.transpose(0, 1).unsqueeze(0) for x in batch.request(0))
    g = batch.hq // batch.hkv
    ke, ve = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    sq, skv = q.shape[2], k.shape[2]

    def run():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            if sq == skv:
                return F.scaled_dot_product_attention(q, ke, ve, is_causal=True)
            mask = causal_lower_right(sq, skv)
            return F.scaled_dot_product_attention(q, ke, ve, attn_mask=mask)

    return run


def attention_launch(batch, plan, ws, spec, pack=True, **launch_kw):
    """The sm90 attention launch alone, as a callable, over the K/V (and Q smoothing's terms)
    that one whole call first packs in spec's layout (`pack=False`: an earlier call did).
    `launch_kw` goes on to `sage_sm90.launch` (bench/sm90_trace.py passes `trace`)."""
    from sglang_sage_ext.kernels import sage_sm90

    d = batch.d
    spec = dataclasses.replace(spec, head_dim=d)
    if pack:
        batch.sage("sm90", plan, ws, spec=spec, q_smooth="on" if spec.q_smooth else "off")
    b, dev = len(batch.ext), batch.q.device
    kq, ks, vq, _ = ws.buffers(batch.hkv, plan.n_pad, d, b, False, dev, spec.blocked)
    terms = None
    if spec.q_smooth:  # (qmean, cq), as launch takes them
        terms = ws.q_smooth_buffers(batch.hq, plan.n_pad, d, b, dev)[::-1]
    tiles = plan.tiles(spec.block_m)
    return lambda: sage_sm90.launch(
        batch.q, batch.o, kq, ks, vq, batch.qo_indptr, batch.kv_indptr, plan.blk_indptr,
        tiles, d**-0.5 * LOG2E, spec=spec, q_terms=terms, **launch_kw,
    )  # fmt: skip


def speed(name, batch, out_rows):
    from sglang_sage_ext.kernels import sage_sm90
    from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend

    plan, ws = plan_extend(batch.ext, batch.pre, DEVICE), Workspace()
    fl = batch.flops()
    row = {"shape": name, "pairs": batch.pairs()}

    d = batch.d

    def attn_only(spec):
        return attention_launch(batch, plan, ws, spec)

    ws_smooth = sage_sm90.spec_for(False, q_smooth=True)
    fns = {
        "sm90": lambda: lambda: batch.sage("sm90", plan, ws),
        "sm90_smooth": lambda: lambda: batch.sage("sm90", plan, ws, q_smooth="on"),
        "sm90_attn_only": lambda: attn_only(sage_sm90.WS_FP16),
        "sm90_smooth_attn_only": lambda: attn_only(ws_smooth),
    }
    if d in sage_sm90.ONE_WG_FP8.head_dims:
        fns["sm90_fp8"] = lambda: lambda: batch.sage("sm90", plan, ws, "fp8")
        fns["sm90_1wg_attn_only"] = lambda: attn_only(sage_sm90.ONE_WG_FP16)
    for i, variant in enumerate(VARIANTS):
        base = ws_smooth if variant_smooths_q(variant) else sage_sm90.WS_FP16
        spec = dataclasses.replace(base, source=variant)
        fns[f"variant{i}_attn_only"] = lambda spec=spec: attn_only(spec)
    fns |= {
        "triton_fp16": lambda: lambda: batch.sage("triton", plan, ws),
        "triton_fp8": lambda: lambda: batch.sage("triton", plan, ws, "fp8"),
    }
    if len(batch.ext) == 1:
        fns["cudnn"] = lambda: cudnn_call(batch)
    for key, make in fns.items():
        try:
            ms = do_bench(make(), warmup=50, rep=300, return_mode="median")
            row[key] = round(fl / ms / 1e9, 1)
        except Exception as exc:  # a comparator that refuses a shape is reported, not fatal
            row[key] = f"{type(exc).__name__}: {str(exc)[:120]}"
    out_rows.append(row)
    print(json.dumps(row), flush=True)


CHECKS = {
    "prefill_1000_32q8kv": ([1000], [0], 32, 8),
    "chunk_300_over_1700": ([300], [1700], 32, 8),
    "mixed_batch": ([1, 77, 200, 1024], [5000, 0, 130, 64], 32, 8),
    "mixed_batch_int64_qo": ([3, 500, 16], [100, 2000, 0], 32, 8),
    "prefill_2048_28q4kv": ([2048], [0], 28, 4),
    "prefill_1000_d64_14q2kv": ([1000], [0], 14, 2, 64),
    "mixed_batch_d64": ([1, 77, 200, 1024], [5000, 0, 130, 64], 14, 2, 64),
}
SPEED = {
    "prefill_2k_28q4kv": ([2048], [0], 28, 4),
    "prefill_4k": ([4096], [0], 32, 8),
    "prefill_8k": ([8192], [0], 32, 8),
    "prefill_16k_28q4kv": ([16384], [0], 28, 4),
    "prefill_16k": ([16384], [0], 32, 8),
    "prefill_32k": ([32768], [0], 32, 8),
    "chunk_8k_over_24k": ([8192], [24576], 32, 8),
    "16x_3k_prefix_1k_new": ([1024] * 16, [3072] * 16, 32, 8),
    "prefill_4k_d64_14q2kv": ([4096], [0], 14, 2, 64),
    "prefill_16k_d64_14q2kv": ([16384], [0], 14, 2, 64),
}


VARIANTS: list[Path] = []


def variant_smooths_q(variant: Path) -> bool:
    """Whether a variant .cu is a Q-smoothing build (the file itself defines SAGE_Q_SMOOTH 1):
    it is then launched with the Q-smoothing terms."""
    text = variant.read_text()
    return "#define SAGE_Q_SMOOTH 1" in text


def check_line(r: dict) -> str:
    """One check row in a line; '-' where a run did not apply (head_dim 64 has no FP8 or
    one-warpgroup Hopper kernel)."""

    def val(key: str, fmt: str = ".2e") -> str:
        return format(r[key], fmt) if key in r else "-"

    return (
        f"{r['shape']:24} rel-L2 sm90 {val('sm90_rel_l2')} 1wg {val('sm90_1wg_rel_l2')} "
        f"triton {val('triton_rel_l2')} smooth: sm90 {val('sm90_smooth_rel_l2')} "
        f"fp8: sm90 {val('sm90_fp8_rel_l2')} triton {val('triton_fp8_rel_l2')} "
        f"sm90+smooth {val('sm90_fp8_smooth_rel_l2')} sm90-vs-triton (smooth/plain/fp8) "
        f"{val('sm90_smooth_vs_triton', '.1e')}/{val('sm90_vs_triton_plain', '.1e')}/"
        f"{val('sm90_fp8_vs_triton_fp8', '.1e')} ws-vs-1wg {val('ws_vs_1wg_smooth', '.1e')} "
        f"nan {sum(v for k, v in r.items() if k.endswith('_nan'))}"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="checks and two speed shapes only")
    ap.add_argument(
        "--variant",
        type=Path,
        action="append",
        default=[],
        help="another .cu to time beside the shipped one (attention launch only)",
    )
    args = ap.parse_args()
    VARIANTS.extend(args.variant)
    args.out.mkdir(parents=True, exist_ok=True)
    from sglang_sage_ext.kernels import sage_sm90

    t0 = time.perf_counter()
    path, secs = sage_sm90.build_cubin()
    print(f"build: {secs:.1f} s ({path}); problem: {sage_sm90.problem(torch.device('cuda'), 128)}")
    print(f"head_dim 64: {sage_sm90.problem(torch.device('cuda'), 64) or 'builds'}")
    print(f"gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    checks, speeds = [], []
    for i, (name, (ext, pre, hq, hkv, *d)) in enumerate(CHECKS.items()):
        batch = Batch.make(ext, pre, hq, hkv, seed=i, qo64="int64_qo" in name, d=(d or [128])[0])
        check(name, batch, checks)
    fp16 = Batch.make([1000], [0], 32, 8, seed=9, dtype=torch.float16)
    check("prefill_1000_fp16", fp16, checks)
    shapes = list(SPEED.items())[:2] if args.quick else SPEED.items()
    for i, (name, (ext, pre, hq, hkv, *d)) in enumerate(shapes):
        speed(name, Batch.make(ext, pre, hq, hkv, seed=100 + i, d=(d or [128])[0]), speeds)
    result = {"gpu": torch.cuda.get_device_name(), "checks": checks, "speed": speeds}
    (args.out / "sm90_bench.json").write_text(json.dumps(result, indent=1))
    variants = [f"variant{i}_attn_only" for i in range(len(VARIANTS))]
    var_heads = [f"var{i}" for i in range(len(VARIANTS))]
    heads = ["sm90", "smooth", "attn", "attn_sm", "1wg", *var_heads, "sm90f8", "triton", "tri_f8"]
    print("\n" + f"{'shape':24} " + " ".join(f"{h:>7}" for h in [*heads, "cudnn"]))
    for r in speeds:
        keys = ("sm90", "sm90_smooth", "sm90_attn_only", "sm90_smooth_attn_only")
        keys += ("sm90_1wg_attn_only", *variants, "sm90_fp8")
        keys += ("triton_fp16", "triton_fp8")
        keys += ("cudnn",)
        vals = [r.get(k, "-") for k in keys]
        print(
            f"{r['shape']:24} " + " ".join(f"{v if isinstance(v, float) else 'x':>7}" for v in vals)
        )
    for r in checks:
        print(check_line(r))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
