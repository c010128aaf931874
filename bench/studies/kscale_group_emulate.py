#!/usr/bin/env python3
"""CPU study for issue 11 (not a test): the granularity of the INT8 K scale. The Hopper kernel
has one scale per key, so each score costs an FFMA for the key scale before the row max. With one
scale per group of the keys one thread holds in the wgmma accumulator layout (SageAttention2's
"per-thread" granularity), the scale folds into the exponent's FFMA: -1 instruction per score.

Same arithmetic as bench/sage_emulate.py (whose int8/_sample it reuses): K smoothed by the mean of
<= 64 sampled keys per (request, kv head), INT8 Q per row (optionally smoothed, c_j added back
exactly), integer Q.K exact, softmax in float64 with the exact row max, P and V in fp16, output
rounded to bf16. Only the K scale changes. Key j counts from the request's start (in the packed
copy a request starts on a 64-key boundary and its 128-key tiles from there); a group holds only
the request's own keys (the pre-pass's padding is zero). Granularities:
  key     one scale per key (the kernel today)
  thread  4 interleaved groups of 32 keys per 128-key tile: group (j // 128, (j % 8) // 2), the
          keys {8i + 2*t4, 8i + 2*t4 + 1 : i < 16} of lane t4 = lane % 4 in the accumulator
  blk32   per contiguous 32-key block (j // 32)
  tile    per 128-key tile (j // 128, SageAttention1's per-block)
Query rows are subsampled per request (evenly spaced, the last row included) and the float64
reference is computed for those rows only; --all-rows evaluates every row, and --check compares
"key" with sage_emulate.emulate on the same batches (CPU_SHAPES and the smaller GPU_SHAPES).
Run from bench/: `PYTHONPATH=. python3 studies/kscale_group_emulate.py [--out FILE.jsonl]`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import llm_like_inputs as llm
import torch
from sage_emulate import LOG2E, _sample, emulate, int8

GRANS = ("key", "thread", "blk32", "tile")
MODES = tuple((g, qs) for qs in (False, True) for g in GRANS)


def group_ids(n: int, gran: str) -> torch.Tensor:
    """Scale group of each of a request's n keys (key index from the request's start)."""
    j = torch.arange(n)
    if gran == "key":
        return j
    if gran == "thread":
        return (j // 128) * 4 + (j % 8) // 2
    return j // (32 if gran == "blk32" else 128)


def quant_k(ks: torch.Tensor, gran: str) -> tuple[torch.Tensor, torch.Tensor]:
    """INT8 K (as float64) and per-key scales [N, 1], one scale (amax / 127) per group."""
    if gran == "key":
        return int8(ks)
    gid = group_ids(ks.shape[0], gran)
    amax = ks.abs().amax(-1)
    g_amax = torch.zeros(int(gid.max()) + 1, dtype=ks.dtype).scatter_reduce(
        0, gid, amax, "amax", include_self=True
    )
    scale = (g_amax[gid].clamp_min(1e-12) / 127)[:, None]
    y = ks / scale
    return torch.trunc(y + 0.5 * torch.sign(y)), scale


def _rows_out(q, rows, keys, vals, pre, kq, q_smooth, chunk=512):
    """Emulated output of the selected query rows of one head. q [n, D] in log2 units."""
    ks, (k_i, k_s) = kq
    c = torch.zeros(keys.shape[0], dtype=torch.float64)
    if q_smooth:
        q_mean = q[_sample(q.shape[0])].mean(0)
        q, c = q - q_mean, ks @ q_mean
    q_i, q_s = int8(q)
    v = vals.half().double()
    kT = k_i.float().T
    j = torch.arange(keys.shape[0])[None, :]
    out = torch.empty(len(rows), q.shape[1], dtype=torch.float64)
    for r0 in range(0, len(rows), chunk):
        r = rows[r0 : r0 + chunk]
        s = (q_i[r].float() @ kT).double() * q_s[r] * k_s.T + c
        s = s.masked_fill(j > pre + r[:, None], -math.inf)
        p = torch.exp2(s - s.amax(-1, keepdim=True))
        out[r0 : r0 + chunk] = (p.half().double() @ v) / p.sum(-1, keepdim=True)
    return out


def _ref_rows(q, rows, keys, vals, pre, chunk=512):
    """float64 exact attention of the selected rows (q in log2 units)."""
    out = torch.empty(len(rows), q.shape[1], dtype=torch.float64)
    j = torch.arange(keys.shape[0])[None, :]
    for r0 in range(0, len(rows), chunk):
        r = rows[r0 : r0 + chunk]
        s = (q[r] @ keys.T) / LOG2E
        s = s.masked_fill(j > pre + r[:, None], -math.inf)
        out[r0 : r0 + chunk] = s.softmax(-1) @ vals
    return out


def run_batch(batch: llm.Batch, rows_total: int | None):
    """{(gran, q_smooth): out [R, Hq, D]} (bf16 values) and the reference [R, Hq, D]."""
    hq, hkv = batch.q.shape[1], batch.k.shape[1]
    qo, kvp = batch.qo_indptr.tolist(), batch.kv_indptr.tolist()
    nreq = len(qo) - 1
    outs: dict = {m: [] for m in MODES}
    refs = []
    for b in range(nreq):
        n, pre = qo[b + 1] - qo[b], kvp[b + 1] - kvp[b]
        if rows_total is None:
            rows = torch.arange(n)
        else:
            r = min(n, max(8, rows_total // nreq))
            rows = torch.tensor([((i + 1) * n) // r - 1 for i in range(r)])
        idx = batch.kv_indices[kvp[b] : kvp[b + 1]]
        k_all = torch.cat([batch.k_buffer[idx], batch.k[qo[b] : qo[b + 1]]]).double()
        v_all = torch.cat([batch.v_buffer[idx], batch.v[qo[b] : qo[b + 1]]]).double()
        per_head: dict = {m: [] for m in MODES}
        ref_h = []
        for kh in range(hkv):
            keys, vals = k_all[:, kh], v_all[:, kh]
            ks = keys - keys[_sample(keys.shape[0])].mean(0)
            kq = {g: (ks, quant_k(ks, g)) for g in GRANS}
            for h in range(kh * (hq // hkv), (kh + 1) * (hq // hkv)):
                q = batch.q[qo[b] : qo[b + 1], h].double() * batch.sm_scale * LOG2E
                ref_h.append(_ref_rows(q, rows, keys, vals, pre))
                for g, qs in MODES:
                    per_head[(g, qs)].append(_rows_out(q, rows, keys, vals, pre, kq[g], qs))
        refs.append(torch.stack(ref_h, 1))
        for m in MODES:
            outs[m].append(torch.stack(per_head[m], 1))
    ref = torch.cat(refs)
    return {m: torch.cat(v).to(torch.bfloat16).double() for m, v in outs.items()}, ref


def check(heads: int, seed: int) -> None:
    """'key' with every row vs sage_emulate.emulate (fp16 P.V) on the same batches."""
    shapes = list(llm.CPU_SHAPES) + [
        llm.Shape(s.name, s.prefix, s.extend, heads, 1, s.d)
        for s in llm.GPU_SHAPES
        if s.name in ("prefill 2K", "prefill 4K d64")
    ]
    worst = 0.0
    for shape in shapes:
        for family in llm.FAMILIES:
            batch = llm.make_batch(family, shape, seed)
            outs, _ = run_batch(batch, None)
            ref = llm.reference(batch)
            for qs in (False, True):
                se = emulate(batch, qs, "fp16")
                mine = outs[("key", qs)]
                e_se, e_me = llm.rel_l2(se, ref), llm.rel_l2(mine, ref)
                diff = float((mine - se).abs().max())
                worst = max(worst, abs(e_me / e_se - 1))
                print(
                    f"{shape.name:22s} {family:9s} smooth={qs!s:5s} sage_emulate={e_se:.4e} "
                    f"key={e_me:.4e} max|diff|={diff:.1e}",
                    flush=True,
                )
    print(f"worst relative difference of rel-L2: {worst:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=2, help="query heads per shape (1 kv head)")
    ap.add_argument("--rows", type=int, default=1024, help="query rows per shape (all requests)")
    ap.add_argument("--all-rows", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[5])
    ap.add_argument("--shapes", nargs="+", help="names from llm_like_inputs.GPU_SHAPES")
    ap.add_argument("--check", action="store_true", help="compare 'key' with sage_emulate")
    ap.add_argument("--out", help="append one JSON line per (seed, shape, family)")
    ap.add_argument("--summarize", nargs="+", help="only print the table of --out files")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.check:
        check(args.heads, args.seeds[0])
        return
    found: dict[str, list[dict]] = {f: [] for f in llm.FAMILIES}
    if args.summarize:
        for name in args.summarize:
            with open(name, encoding="utf-8") as fi:
                for line in fi:
                    rec = json.loads(line)
                    found[rec["family"]].append(rec["errs"])
        print("\n".join(table(found)))
        return
    runs = llm.study_batches(args.seeds, args.shapes, args.heads, llm.FAMILIES)
    for seed, family, batch in runs:
        t0 = time.time()
        outs, ref = run_batch(batch, None if args.all_rows else args.rows)
        errs = {f"{g}/{'on' if qs else 'off'}": llm.rel_l2(o, ref) for (g, qs), o in outs.items()}
        found[family].append(errs)
        llm.log_study_run(args.out, seed, family, batch, errs, t0)
    print("\n".join(table(found)))


def table(found: dict[str, list[dict]]) -> list[str]:
    """Markdown: median rel-L2 per family and smoothing, (x key) = ratio of the medians, and the
    range over runs of the per-run ratio thread / key."""
    lines = ["| family | Q smooth | " + " | ".join(GRANS) + " | thread / key per run |"]
    lines.append("|---|---|" + "---|" * (len(GRANS) + 1))
    for family, runs in found.items():
        if not runs:
            continue
        for sm in ("off", "on"):
            med = {g: statistics.median(r[f"{g}/{sm}"] for r in runs) for g in GRANS}
            cells = [
                f"{med[g]:.2e}" + ("" if g == "key" else f" ({med[g] / med['key']:.2f})")
                for g in GRANS
            ]
            rat = [r[f"thread/{sm}"] / r[f"key/{sm}"] for r in runs]
            cells.append(f"{min(rat):.2f}-{max(rat):.2f}")
            lines.append(f"| {family} | {sm} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()
