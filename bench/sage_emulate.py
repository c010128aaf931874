#!/usr/bin/env python3
"""A torch emulation of the paged Sage kernel's quantization, for error studies on CPU at real
sizes (the Triton interpreter takes minutes for what this does in seconds).

It mirrors the kernel's arithmetic, not its tiling: K smoothed by the mean of up to 64 evenly
sampled keys per (request, kv head), INT8 with one scale per key; Q (optionally smoothed by the
mean of up to 64 of the request's queries, with c_j = q_mean . k~_j added back from the
unquantized keys) INT8 with one scale per row; round half away from zero; the integer Q·K
product exact (fp32 matmul of integers < 2**24); softmax in float64; P and V in fp16 (or e4m3
with V scaled per channel by amax / 448); the output rounded to bf16. Agreement with the kernel
under the interpreter (bench/llm_like_inputs.py CPU shapes): within 1 % of each rel-L2 with FP16
P·V, within 3 % with FP8 P·V.
Issue 11 used it to find what dominates the error on LLM-like inputs and to predict the GPU
numbers at the issue's shapes.

usage: python3 bench/sage_emulate.py [--heads 2] [--shapes NAME ...]
"""

from __future__ import annotations

import argparse
import statistics

import llm_like_inputs as llm
import torch

LOG2E = 1.4426950408889634


def int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row INT8 values (as float64) and scales, as the kernel rounds them."""
    scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-12) / 127
    y = x / scale
    return torch.trunc(y + 0.5 * torch.sign(y)), scale


def _sample(n: int) -> list[int]:
    m = min(n, 64)
    return [(i * n) // max(m, 1) for i in range(m)]


def _head(q, keys, vals, pre: int, q_smooth: bool, pv: str, rows: int = 1024) -> torch.Tensor:
    """One request and query head: q [n, D] (log2 units), keys/vals [N, D], float64."""
    ks = keys - keys[_sample(keys.shape[0])].mean(0)
    k_i, k_s = int8(ks)
    c = torch.zeros(keys.shape[0], dtype=torch.float64)
    if q_smooth:
        q_mean = q[_sample(q.shape[0])].mean(0)
        q, c = q - q_mean, ks @ q_mean
    q_i, q_s = int8(q)
    if pv == "fp8":
        v_s = vals.abs().amax(0).clamp_min(1e-12) / 448
        v = (vals / v_s).float().to(torch.float8_e4m3fn).double() * v_s
    else:
        v = vals.half().double()
    out = torch.empty_like(q)
    j = torch.arange(keys.shape[0])[None, :]
    for r0 in range(0, q.shape[0], rows):
        r1 = min(q.shape[0], r0 + rows)
        s = (q_i[r0:r1].float() @ k_i.float().T).double() * q_s[r0:r1] * k_s.T + c
        s = s.masked_fill(j > pre + torch.arange(r0, r1)[:, None], float("-inf"))
        p = torch.exp2(s - s.amax(-1, keepdim=True))
        pq = (p * 448).float().to(torch.float8_e4m3fn).double() / 448 if pv == "fp8" else p.half()
        out[r0:r1] = (pq.double() @ v) / p.sum(-1, keepdim=True)
    return out


def emulate(batch: llm.Batch, q_smooth: bool, pv: str = "fp16") -> torch.Tensor:
    """The kernel's output [num_tokens, Hq, D] (bf16 values in float64)."""
    group = batch.q.shape[1] // batch.k.shape[1]
    out = torch.zeros(batch.num_tokens, *batch.q.shape[1:], dtype=torch.float64)
    qo, kvp = batch.qo_indptr.tolist(), batch.kv_indptr.tolist()
    for b in range(len(qo) - 1):
        idx = batch.kv_indices[kvp[b] : kvp[b + 1]]
        keys = torch.cat([batch.k_buffer[idx], batch.k[qo[b] : qo[b + 1]]]).double()
        vals = torch.cat([batch.v_buffer[idx], batch.v[qo[b] : qo[b + 1]]]).double()
        for h in range(batch.q.shape[1]):
            q = batch.q[qo[b] : qo[b + 1], h].double() * batch.sm_scale * LOG2E
            o = _head(
                q, keys[:, h // group], vals[:, h // group], kvp[b + 1] - kvp[b], q_smooth, pv
            )
            out[qo[b] : qo[b + 1], h] = o
    return out.to(torch.bfloat16).double()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=2, help="query heads per shape (1 kv head)")
    ap.add_argument("--shapes", nargs="+", help="names from llm_like_inputs.GPU_SHAPES")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    modes = [(pv, qs) for pv in ("fp16", "fp8") for qs in (False, True)]
    found: dict[tuple[str, str], list[float]] = {}
    for s in llm.GPU_SHAPES:
        if args.shapes and s.name not in args.shapes:
            continue
        shape = llm.Shape(s.name, s.prefix, s.extend, args.heads, 1, s.d)
        for family in llm.FAMILIES:
            batch = llm.make_batch(family, shape, args.seed)
            ref = llm.reference(batch)
            errs = [llm.rel_l2(emulate(batch, qs, pv), ref) for pv, qs in modes]
            found[(s.name, family)] = errs
            print(f"{s.name:22s} {family:9s} " + " ".join(f"{e:.3e}" for e in errs), flush=True)
    print("median per family (fp16 plain, fp16 smooth, fp8 plain, fp8 smooth):")
    for family in llm.FAMILIES:
        per = [v for (_, f), v in found.items() if f == family]
        meds = [statistics.median(col) for col in zip(*per, strict=True)]
        print(f"{family:9s} " + " ".join(f"{m:.3e}" for m in meds))


if __name__ == "__main__":
    main()
