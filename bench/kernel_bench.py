#!/usr/bin/env python3
"""Extend-attention kernels side by side on one GPU: speed (TFLOP/s) and accuracy vs float64.

Not a test. Kernels: sage_extend_attention (this package; FP8 and FP16 P·V), sageattention
1.0.6 `sageattn` (causal dense, q_len == kv_len only), torch SDPA with CUDNN_ATTENTION and
FLASH_ATTENTION, SGLang's Triton `extend_attention_fwd`.
Shapes: bf16, batch 1, 32 query / 8 kv heads, D=128; causal prefill at 1K/4K/16K/32K, and a
4K chunk over 4K and 28K cached prefixes (bottom-right causal).

FLOPs = 4 * Hq * D * (sum over queries of visible keys): S(S+1)/2 per head for prefill,
Sq*P + Sq(Sq+1)/2 for a chunk of Sq over a prefix P. Timing: triton.testing.do_bench, median,
which flushes L2 between runs (so no input rotation is needed even at 1K).
SDPA on chunk-over-prefix: `torch.nn.attention.bias.causal_lower_right` (bottom-right mask,
handled natively by the flash backend; cuDNN may refuse it), K/V expanded to 32 heads when
enable_gqa is refused. Where SDPA refuses, compare per FLOP with its prefill at the same kv
length. Also: per-config timings and compiled metadata (registers, spills, shared memory) of
the Sage extend kernel. LLM-like inputs and Q smoothing: bench/llm_accuracy.py.

usage: python3 bench/kernel_bench.py --out DIR [--seqs 1024 4096 16384 32768]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

HQ, HKV, D = 32, 8, 128
G = HQ // HKV
SCALE = 1.0 / math.sqrt(D)
DT = torch.bfloat16


def log(*a):
    print(*a, flush=True)


def flops(sq: int, prefix: int) -> float:
    return 4.0 * HQ * D * (sq * prefix + sq * (sq + 1) / 2)


class Problem:
    """One extend problem in every layout the kernels want (bf16, fresh random inputs)."""

    def __init__(self, sq: int, prefix: int, seed: int):
        g = torch.Generator(device="cuda").manual_seed(seed)
        skv = prefix + sq
        self.sq, self.prefix, self.skv = sq, prefix, skv
        self.q = torch.randn(sq, HQ, D, generator=g, device="cuda").to(DT)
        k_all = torch.randn(skv, HKV, D, generator=g, device="cuda").to(DT)
        v_all = torch.randn(skv, HKV, D, generator=g, device="cuda").to(DT)
        self.k_all, self.v_all = k_all, v_all
        self.k, self.v = k_all[prefix:].contiguous(), v_all[prefix:].contiguous()
        # KV pool with scattered slots, as SGLang's allocator leaves it after a while
        pool = skv + 1024
        perm = torch.randperm(pool, generator=g, device="cuda")[:prefix]
        self.k_buffer = torch.zeros(pool, HKV, D, device="cuda", dtype=DT)
        self.v_buffer = torch.zeros(pool, HKV, D, device="cuda", dtype=DT)
        self.k_buffer[perm] = k_all[:prefix]
        self.v_buffer[perm] = v_all[:prefix]
        self.kv_indices = perm.to(torch.int64)
        self.qo_indptr = torch.tensor([0, sq], dtype=torch.int32, device="cuda")
        self.kv_indptr = torch.tensor([0, prefix], dtype=torch.int32, device="cuda")
        self.o = torch.empty_like(self.q)

    def hnd(self):
        """[1, H, S, D] views for SDPA / sageattn."""
        q = self.q.transpose(0, 1).unsqueeze(0)
        k = self.k_all.transpose(0, 1).unsqueeze(0)
        v = self.v_all.transpose(0, 1).unsqueeze(0)
        return q, k, v


def reference(p: Problem) -> torch.Tensor:
    q = p.q.double().transpose(0, 1)
    k = p.k_all.double().transpose(0, 1).repeat_interleave(G, 0)
    v = p.v_all.double().transpose(0, 1).repeat_interleave(G, 0)
    s = (q @ k.transpose(-1, -2)) * SCALE
    i = torch.arange(p.sq, device="cuda")[:, None]
    j = torch.arange(p.skv, device="cuda")[None, :]
    s = s.masked_fill(j > i + p.prefix, float("-inf"))
    return (s.softmax(-1) @ v).transpose(0, 1)  # [Sq, Hq, D]


def kernels(p: Problem) -> dict:
    """name -> zero-arg callable returning [Sq, Hq, D] (or raising if unsupported)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from sglang_sage_ext.kernels.paged_sage import sage_extend_attention

    out = {}
    for mode in ("fp8", "fp16"):

        def sage_ext(mode=mode):
            sage_extend_attention(
                p.q, p.k, p.v, p.o, p.k_buffer, p.v_buffer, p.qo_indptr, p.kv_indptr,
                p.kv_indices, p.sq, SCALE, pv_mode=mode,
            )  # fmt: skip
            return p.o

        out[f"sage_ext_{mode}"] = sage_ext

    q, k, v = p.hnd()
    if p.prefix == 0:
        try:
            from sageattention import sageattn

            kk = k.clone()  # sageattn 1.0.6 smooths K in place

            def sage106():
                o = sageattn(q, kk, v, tensor_layout="HND", is_causal=True, sm_scale=SCALE)
                return o[0].transpose(0, 1)

            out["sageattn_1.0.6"] = sage106
        except Exception as exc:
            out["sageattn_1.0.6"] = exc
    ke, ve = k.repeat_interleave(G, 1), v.repeat_interleave(G, 1)
    for name, be in (
        ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION),
        ("sdpa_flash", SDPBackend.FLASH_ATTENTION),
    ):

        def sdpa(be=be):
            with sdpa_kernel(be):
                if p.prefix == 0:
                    try:
                        o = F.scaled_dot_product_attention(
                            q, k, v, is_causal=True, scale=SCALE, enable_gqa=True
                        )
                    except RuntimeError:
                        o = F.scaled_dot_product_attention(q, ke, ve, is_causal=True, scale=SCALE)
                else:
                    from torch.nn.attention.bias import causal_lower_right

                    mask = causal_lower_right(p.sq, p.skv)
                    o = F.scaled_dot_product_attention(q, ke, ve, attn_mask=mask, scale=SCALE)
            return o[0].transpose(0, 1)

        out[name] = sdpa
    try:
        try:
            from sglang.kernels.ops.attention.extend_attention import extend_attention_fwd
        except ImportError:
            from sglang.srt.layers.attention.triton_ops.extend_attention import (
                extend_attention_fwd,
            )
        o_sgl = torch.empty_like(p.q)

        def sgl():
            extend_attention_fwd(
                p.q, p.k, p.v, o_sgl, p.k_buffer, p.v_buffer, p.qo_indptr, p.kv_indptr,
                p.kv_indices, None, True, None, p.sq, 1.0, 1.0, sm_scale=SCALE,
            )  # fmt: skip
            return o_sgl

        out["sgl_triton_extend"] = sgl
    except Exception as exc:
        out["sgl_triton_extend"] = exc
    return out


def errs(o: torch.Tensor, ref: torch.Tensor) -> dict:
    o = o.double()
    d = o - ref
    return {
        "rel_l2": float(d.norm() / ref.norm()),
        "max_abs": float(d.abs().max()),
        "cos": float(F.cosine_similarity(o.flatten(), ref.flatten(), dim=0)),
        "nan": bool(o.isnan().any()),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqs", type=int, nargs="+", default=[1024, 4096, 16384, 32768])
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--prefixes", type=int, nargs="+", default=[4096, 28672])
    ap.add_argument("--acc-seq", type=int, default=2048)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False

    import sglang_sage_ext.kernels.paged_sage as sek

    res = {
        "command": "python3 " + " ".join(sys.argv),
        "device": torch.cuda.get_device_name(),
        "capability": list(torch.cuda.get_device_capability()),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "shape": {"hq": HQ, "hkv": HKV, "d": D, "dtype": "bf16", "batch": 1},
        "accuracy": [],
        "speed": [],
        "configs": [],
        "notes": [],
    }

    # ---- accuracy at acc-seq (prefill) and one chunk-over-prefix ----
    for sq, prefix in ((args.acc_seq, 0), (512, args.acc_seq - 512)):
        p = Problem(sq, prefix, seed=1)
        ref = reference(p)
        for name, fn in kernels(p).items():
            row = {"kernel": name, "sq": sq, "prefix": prefix}
            try:
                if isinstance(fn, Exception):
                    raise fn
                row.update(errs(fn(), ref))
                torch.cuda.synchronize()
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            res["accuracy"].append(row)
            log("acc", json.dumps(row))
        del ref, p
        torch.cuda.empty_cache()

    # ---- per-config metadata + timings of the Sage extend kernel ----
    probs = {"prefill4K": Problem(4096, 0, 2), "chunk4K@28K": Problem(4096, 28672, 3)}
    for mode in ("fp8", "fp16"):
        for cfg in sek.CONFIGS:
            for pname, p in probs.items():
                row = {"pv_mode": mode, **cfg, "problem": pname}
                try:
                    meta = sek.sage_extend_attention(
                        p.q, p.k, p.v, p.o, p.k_buffer, p.v_buffer, p.qo_indptr, p.kv_indptr,
                        p.kv_indices, p.sq, SCALE, pv_mode=mode, config=cfg,
                    )  # fmt: skip
                    row.update(meta or {})
                    ms = do_bench(
                        lambda p=p, cfg=cfg, mode=mode: sek.sage_extend_attention(
                            p.q, p.k, p.v, p.o, p.k_buffer, p.v_buffer, p.qo_indptr,
                            p.kv_indptr, p.kv_indices, p.sq, SCALE, pv_mode=mode, config=cfg,
                        ),
                        warmup=25, rep=100, return_mode="median",
                    )  # fmt: skip
                    row["ms"] = ms
                    row["tflops"] = flops(p.sq, p.prefix) / ms / 1e9
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                res["configs"].append(row)
                log("cfg", json.dumps(row))
    del probs
    torch.cuda.empty_cache()

    # ---- speed ----
    shapes = [(s, 0) for s in args.seqs] + [(args.chunk, pre) for pre in args.prefixes]
    for sq, prefix in shapes:
        p = Problem(sq, prefix, seed=10 + sq + prefix)
        fl = flops(sq, prefix)
        for name, fn in kernels(p).items():
            row = {"kernel": name, "sq": sq, "prefix": prefix, "gflop": fl / 1e9}
            try:
                if isinstance(fn, Exception):
                    raise fn
                fn()
                torch.cuda.synchronize()
                ms = do_bench(fn, warmup=25, rep=100, return_mode="median")
                row.update(ms=ms, tflops=fl / ms / 1e9)
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            res["speed"].append(row)
            log("speed", json.dumps(row))
        del p
        torch.cuda.empty_cache()

    (outdir / "kernel_bench.json").write_text(json.dumps(res, indent=1))
    md = render(res)
    (outdir / "kernel_bench.md").write_text(md)
    log(md)
    return 0


def render(res: dict) -> str:
    lines = [
        f"# Extend attention kernels on {res['device']} (torch {res['torch']}, "
        f"triton {res['triton']})",
        "",
        f"Command: `{res['command']}`. bf16, batch 1, 32 q / 8 kv heads, D=128. "
        "TFLOP/s with causal FLOPs 4*Hq*D*sum(visible keys); do_bench median.",
        "",
    ]
    names = []
    for r in res["speed"]:
        if r["kernel"] not in names:
            names.append(r["kernel"])
    shapes = []
    for r in res["speed"]:
        key = (r["sq"], r["prefix"])
        if key not in shapes:
            shapes.append(key)
    lines.append("| shape | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for sq, pre in shapes:
        cells = []
        for n in names:
            r = next(
                (x for x in res["speed"] if (x["kernel"], x["sq"], x["prefix"]) == (n, sq, pre)),
                None,
            )
            cells.append("-" if r is None or "tflops" not in r else f"{r['tflops']:.0f}")
        label = f"prefill {sq}" if pre == 0 else f"{sq} over {pre}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracy vs float64:", "", "| kernel | shape | rel-L2 | max abs | cos |"]
    lines.append("|---|---|---|---|---|")
    for r in res["accuracy"]:
        shape = f"{r['sq']} over {r['prefix']}"
        if "rel_l2" in r:
            lines.append(
                f"| {r['kernel']} | {shape} | {r['rel_l2']:.2e} | {r['max_abs']:.2e} | "
                f"{r['cos']:.6f} |"
            )
        else:
            lines.append(f"| {r['kernel']} | {shape} | {r.get('error', '-')} | | |")
    lines += ["", "Sage extend kernel configs:", ""]
    lines.append("| pv | BM | BN | warps | stages | problem | regs | spills | smem | TFLOP/s |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["configs"]:
        lines.append(
            f"| {r['pv_mode']} | {r['BLOCK_M']} | {r['BLOCK_N']} | {r['num_warps']} | "
            f"{r['num_stages']} | {r['problem']} | {r.get('n_regs', '-')} | "
            f"{r.get('n_spills', '-')} | {r.get('shared', '-')} | "
            f"{r['tflops']:.0f} |"
            if "tflops" in r
            else f"| {r['pv_mode']} | {r['BLOCK_M']} | {r['BLOCK_N']} | {r['num_warps']} | "
            f"{r['num_stages']} | {r['problem']} | {r.get('error', '-')} | | | |"
        )
    for n in res["notes"]:
        lines.append(f"\nnote: {n}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    t0 = time.time()
    try:
        rc = main()
    except Exception:
        traceback.print_exc()
        rc = 1
    log(f"kernel_bench done in {time.time() - t0:.0f} s (rc={rc})")
    sys.exit(rc)
