"""`sage_extend_attention` on a GPU: >= 1000 random extend batches against float64.

Families: plain prefill, chunk over a paged prefix, decode-like (1-token chunks), mixed batches,
large (prefix up to 8K, chunk up to 4K), K with per-channel outliers. Each case draws fresh
inputs (shapes, GQA ratio 1/4/8, head dim 64/128, fp16/bf16, scattered pool slots, strided
q/k/v views) and runs both P·V modes. Output is poisoned with NaN; rows past the real tokens
must stay untouched. Per-family numbers go to $SGLANG_SAGE_RESULTS_DIR/sage_extend_gpu.{json,md}.

Thresholds. FP16 P·V: the issue's median <= 1e-2 per family and worst <= 3e-2 (CPU interpreter
measured ~7e-3). FP8 (e4m3) P·V: rounding P and V to 3 mantissa bits costs ~3.3e-2 rel-L2 on
i.i.d. normal inputs on its own (float64 PyTorch emulation; SageAttention2 reports the same
order for FP8 P·V), so the issue's 1e-2 target is out of reach by construction there; FP8 is
held to median <= 4.5e-2, worst <= 6e-2, cosine >= 0.998, and the numbers are reported.
"""

from __future__ import annotations

import math
import random
import statistics
import time

import pytest
import torch

from tests.gpu._results import fmt, write_json, write_text

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

N_CASES = 1000
DEVICE = "cuda"  # a CPU dry run (TRITON_INTERPRET=1) may override both
PAD_ROWS = 4
BOUNDS = {  # pv_mode -> (median rel-L2 per family, worst rel-L2, min cosine)
    "fp16": (1.0e-2, 3.0e-2, 0.999),
    "fp8": (4.5e-2, 6.0e-2, 0.998),
    "sm90": (1.0e-2, 3.0e-2, 0.999),  # the Hopper CUDA kernel (FP16 P·V), head_dim 64 and 128
    "sm90_smooth": (1.0e-2, 3.0e-2, 0.999),  # its SAGE_Q_SMOOTH build (SGLANG_SAGE_Q_SMOOTH=on)
}
CUDA_MODES = {"sm90": "off", "sm90_smooth": "on"}  # pv_mode -> q_smooth of the CUDA kernel
FAMILIES = ("prefill", "chunk_over_prefix", "decode_like", "mixed", "large", "k_outliers")


def _draw(rng: random.Random, family: str) -> dict:
    """Shapes for one case of a family (modest sizes except 'large')."""
    d = rng.choice((64, 128))
    group = rng.choice((1, 4, 8))
    hkv = rng.choice((1, 2)) if family != "large" else 1
    if family == "prefill":
        bs = rng.randint(1, 4)
        pre = [0] * bs
        ext = [rng.randint(1, 384) for _ in range(bs)]
    elif family == "chunk_over_prefix":
        bs = rng.randint(1, 3)
        pre = [rng.randint(1, 2048) for _ in range(bs)]
        ext = [rng.randint(1, 384) for _ in range(bs)]
    elif family == "decode_like":
        bs = rng.randint(1, 8)
        pre = [rng.randint(0, 2048) for _ in range(bs)]
        ext = [1] * bs
    elif family == "large":
        bs = 1
        pre = [rng.randint(0, 8192)]
        ext = [rng.randint(1, 4096)]
    else:  # mixed and k_outliers: requests with and without prefix
        bs = rng.randint(2, 5)
        pre = [rng.choice((0, rng.randint(1, 1500))) for _ in range(bs)]
        ext = [rng.choice((1, rng.randint(2, 300))) for _ in range(bs)]
    return {
        "d": d,
        "hq": hkv * group,
        "hkv": hkv,
        "dtype": rng.choice(("bf16", "fp16")),
        "pre": pre,
        "ext": ext,
        "strided": rng.random() < 0.3,
        "qo64": rng.random() < 0.3,  # SGLang 0.5.17 passes an int64 qo_indptr, int32 kv_indptr
        "outlier": rng.choice((8.0, 30.0)) if family == "k_outliers" else 0.0,
    }


def _inputs(spec: dict, gen: torch.Generator):
    dev = DEVICE
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[spec["dtype"]]
    hq, hkv, d = spec["hq"], spec["hkv"], spec["d"]
    n = sum(spec["ext"])
    t = n + PAD_ROWS
    pool = sum(spec["pre"]) + 64

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, device=dev)

    kb, vb = rnd(pool, hkv, d), rnd(pool, hkv, d)
    if spec["strided"]:
        qkv = rnd(t, hq + 2 * hkv, d)
        q, k, v = qkv[:, :hq], qkv[:, hq : hq + hkv], qkv[:, hq + hkv :]
    else:
        q, k, v = rnd(t, hq, d), rnd(t, hkv, d), rnd(t, hkv, d)
    if spec["outlier"]:
        bias = torch.zeros(d, device=dev)
        bias[:: max(1, d // 8)] = spec["outlier"]
        kb, k = kb + bias, k + bias
    q, k, v, kb, vb = (x.to(dt) for x in (q, k, v, kb, vb))
    qo = torch.tensor([0, *torch.tensor(spec["ext"]).cumsum(0).tolist()], dtype=torch.int32)
    kvp = torch.tensor([0, *torch.tensor(spec["pre"]).cumsum(0).tolist()], dtype=torch.int32)
    perm = torch.randperm(pool, generator=gen, device=dev)
    kvi = perm[: sum(spec["pre"])].to(torch.int64)
    if spec["qo64"]:
        qo = qo.to(torch.int64)
    return q, k, v, kb, vb, qo.to(dev), kvp.to(dev), kvi


def _reference(q, k, v, kb, vb, qo, kvp, kvi, sm_scale, rows_per_chunk=1024):
    """float64 SGLang extend semantics, per request, in query chunks to bound memory."""
    out = torch.zeros(q.shape, dtype=torch.float64, device=q.device)
    group = q.shape[1] // k.shape[1]
    qo_l, kvp_l = qo.tolist(), kvp.tolist()
    for b in range(len(qo_l) - 1):
        qs, qe, ps, pe = qo_l[b], qo_l[b + 1], kvp_l[b], kvp_l[b + 1]
        idx = kvi[ps:pe]
        keys = torch.cat([kb[idx], k[qs:qe]]).double().repeat_interleave(group, 1)
        vals = torch.cat([vb[idx], v[qs:qe]]).double().repeat_interleave(group, 1)
        pre = pe - ps
        j = torch.arange(keys.shape[0], device=q.device)[None, :]
        for c0 in range(0, qe - qs, rows_per_chunk):
            c1 = min(qe - qs, c0 + rows_per_chunk)
            s = torch.einsum("qhd,khd->hqk", q[qs + c0 : qs + c1].double(), keys) * sm_scale
            i = torch.arange(c0, c1, device=q.device)[:, None]
            s = s.masked_fill(j > pre + i, float("-inf"))
            out[qs + c0 : qs + c1] = torch.einsum("hqk,khd->qhd", s.softmax(-1), vals)
    return out


def _modes() -> list[str]:
    """Triton FP16 and FP8 P·V everywhere; both Hopper CUDA builds too where they run."""
    from sglang_sage_ext.kernels import sage_sm90

    if DEVICE != "cuda" or sage_sm90.problem(torch.device("cuda"), 128) is not None:
        return ["fp16", "fp8"]
    return ["fp16", "fp8", *CUDA_MODES]


@pytest.fixture(scope="module")
def measured() -> list[dict]:
    from sglang_sage_ext.kernels import sage_sm90
    from sglang_sage_ext.kernels.paged_sage import sage_extend_attention

    modes = _modes()
    rng = random.Random(20261121)
    gen = torch.Generator(device=DEVICE).manual_seed(20261121)
    rows = []
    t0 = time.time()
    for i in range(N_CASES):
        family = FAMILIES[i % len(FAMILIES)]
        if family == "large" and i % (6 * len(FAMILIES)) != len(FAMILIES) - 2:
            family = "mixed"  # ~1 in 6 "large" slots: ~4 min for 4 kernels (H200)
        spec = _draw(rng, family)
        q, k, v, kb, vb, qo, kvp, kvi = _inputs(spec, gen)
        sm_scale = 1.0 / math.sqrt(spec["d"])
        ref = _reference(q, k, v, kb, vb, qo, kvp, kvi, sm_scale)
        n = sum(spec["ext"])
        for pv_mode in modes:
            kernel = "sm90" if pv_mode in CUDA_MODES else "triton"
            if kernel == "sm90" and sage_sm90.head_dim_problem(spec["d"], False):
                continue
            o = torch.full((q.shape[0], spec["hq"], spec["d"]), float("nan"), dtype=q.dtype)
            o = o.to(DEVICE)
            sage_extend_attention(
                q, k, v, o, kb, vb, qo, kvp, kvi, max(spec["ext"]), sm_scale,
                pv_mode="fp16" if kernel == "sm90" else pv_mode, kernel=kernel,
                q_smooth=CUDA_MODES.get(pv_mode, "auto"),
            )  # fmt: skip
            out = o[:n].double()
            diff = out - ref[:n]
            rows.append(
                {
                    "case": i,
                    "family": family,
                    "pv_mode": pv_mode,
                    **{key: spec[key] for key in ("d", "hq", "hkv", "dtype", "strided")},
                    "pre": spec["pre"] if len(spec["pre"]) <= 8 else "...",
                    "ext": spec["ext"] if len(spec["ext"]) <= 8 else "...",
                    "rel_l2": float(diff.norm() / ref[:n].norm()),
                    "max_abs": float(diff.abs().max()),
                    "cos": float(
                        torch.nn.functional.cosine_similarity(
                            out.flatten(), ref[:n].flatten(), dim=0
                        )
                    ),
                    "nan": bool(out.isnan().any()),
                    "pad_untouched": bool(o[n:].isnan().all()),
                }
            )
    elapsed = time.time() - t0
    _report(rows, elapsed)
    return rows


def _summary(rows: list[dict]) -> list[dict]:
    out = []
    for pv_mode in BOUNDS:
        for family in FAMILIES:
            sel = [r for r in rows if r["family"] == family and r["pv_mode"] == pv_mode]
            if not sel:
                continue
            rel = [r["rel_l2"] if not r["nan"] else float("inf") for r in sel]
            out.append(
                {
                    "pv_mode": pv_mode,
                    "family": family,
                    "cases": len(sel),
                    "median_rel_l2": statistics.median(rel),
                    "worst_rel_l2": max(rel),
                    "max_abs": max(r["max_abs"] for r in sel),
                    "min_cos": min(r["cos"] for r in sel),
                    "nan_cases": sum(r["nan"] for r in sel),
                }
            )
    return out


def _report(rows: list[dict], elapsed: float) -> None:
    summary = _summary(rows)
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE
    write_json(
        "sage_extend_gpu.json",
        {
            "device": device,
            "torch": torch.__version__,
            "elapsed_s": elapsed,
            "bounds": BOUNDS,
            "summary": summary,
            "cases": rows,
        },
    )
    lines = [
        f"# sage_extend_attention vs float64 ({device}, {elapsed:.0f} s)",
        "",
        "| pv | family | cases | median rel-L2 | worst rel-L2 | max abs | min cos | NaN |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['pv_mode']} | {s['family']} | {s['cases']} | {fmt(s['median_rel_l2'])} | "
            f"{fmt(s['worst_rel_l2'])} | {fmt(s['max_abs'])} | {s['min_cos']:.6f} | "
            f"{s['nan_cases']} |"
        )
    write_text("sage_extend_gpu.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def test_case_count(measured):
    assert len({r["case"] for r in measured}) >= 1000


def test_no_nan_and_padding_untouched(measured):
    assert not [r for r in measured if r["nan"]]
    assert all(r["pad_untouched"] for r in measured)


@pytest.mark.parametrize("pv_mode", list(BOUNDS))
def test_accuracy_per_family(measured, pv_mode):
    if pv_mode not in _modes():
        pytest.skip("the Hopper CUDA kernel does not run on this GPU")
    med_max, worst_max, cos_min = BOUNDS[pv_mode]
    bad = []
    families = [s for s in _summary(measured) if s["pv_mode"] == pv_mode]
    assert len(families) == len(FAMILIES)
    for s in families:
        if s["median_rel_l2"] > med_max or s["worst_rel_l2"] > worst_max or s["min_cos"] < cos_min:
            bad.append(s)
    assert not bad, bad
