"""`sage_extend_attention` under Triton's CPU interpreter against a float64 reference.

The kernel runs in a fresh interpreter with TRITON_INTERPRET=1 (the variable must be set before
Triton decorates the kernels, and other tests may already have imported Triton). Small random
cases cover: plain prefill (prefix 0), prefix + chunk, one-token chunks, mixed batches, GQA,
head dims 64/96/128, fp16/bf16, strided q/k/v views, padding rows after the real tokens, and K
with strong per-channel outliers (what smoothing is for). Both P·V modes run: the interpreter
executes int8 and fp8 dots exactly (its fp32->fp8 rounding bug is worked around in the kernel).
With the default q_smooth="auto", FP16 P·V runs with Q smoothing and FP8 P·V without, so both
paths of every case are covered (LLM-like inputs: test_sage_llm_inputs_cpu).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests._subproc import run_python

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

pytestmark = pytest.mark.release_independent  # imports no SGLang (tests/_selection.py)

ROOT = Path(__file__).resolve().parents[1]

#: INT8 QK with FP16 PV: ~7e-3 measured here; 3e-2 is the issue's worst-case bound.
FP16_REL_L2_MAX = 3e-2
#: FP8 (e4m3) PV adds ~3.3e-2 on i.i.d. normal data (3 mantissa bits; the PyTorch emulation in
#: the kernel's docstring gives the same); bound with margin, plus a cosine floor.
FP8_REL_L2_MAX = 5e-2
COSINE_MIN = 0.998
PAD_ROWS = 3

# (name, prefix lens, extend lens, Hq, Hkv, D, dtype, K outlier, strided)
CASES = [
    ("prefill", [0], [70], 4, 2, 64, "bf16", 0.0, False),
    ("prefix+chunk", [100], [70], 4, 2, 64, "fp16", 0.0, False),
    ("decode-like", [200, 33], [1, 1], 4, 1, 64, "bf16", 0.0, False),
    ("mixed", [100, 0, 5, 64], [1, 130, 33, 64], 8, 2, 64, "bf16", 0.0, True),
    ("d128-gqa8", [90, 0], [40, 17], 8, 1, 128, "fp16", 0.0, False),
    ("d96", [65], [66], 2, 2, 96, "bf16", 0.0, False),
    ("k-outliers", [300, 7], [40, 65], 4, 2, 64, "bf16", 20.0, False),
]
CONFIG = {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 1}
CONFIG_SMALL = {"BLOCK_M": 32, "BLOCK_N": 128, "num_warps": 4, "num_stages": 1}


def reference(q, k, v, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices, sm_scale):
    """float64 SGLang extend semantics: gather the prefix, append the chunk, bottom-right mask."""
    out = torch.zeros(q.shape, dtype=torch.float64)
    group = q.shape[1] // k.shape[1]
    for b in range(qo_indptr.numel() - 1):
        qs, qe = int(qo_indptr[b]), int(qo_indptr[b + 1])
        ps, pe = int(kv_indptr[b]), int(kv_indptr[b + 1])
        idx = kv_indices[ps:pe].long()
        keys = torch.cat([k_buffer[idx], k[qs:qe]]).double().repeat_interleave(group, 1)
        vals = torch.cat([v_buffer[idx], v[qs:qe]]).double().repeat_interleave(group, 1)
        scores = torch.einsum("qhd,khd->hqk", q[qs:qe].double(), keys) * sm_scale
        n, pre = qe - qs, pe - ps
        i = torch.arange(n)[:, None]
        j = torch.arange(pre + n)[None, :]
        scores = scores.masked_fill(j > pre + i, float("-inf"))
        out[qs:qe] = torch.einsum("hqk,khd->qhd", scores.softmax(-1), vals)
    return out


def make_case(pre, ext, hq, hkv, d, dtype, outlier, strided, seed):
    """Fresh random inputs in SGLang's layout (KV pool with scattered slots)."""
    gen = torch.Generator().manual_seed(seed)
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    n = sum(ext)
    t = n + PAD_ROWS
    pool = sum(pre) + 37

    def rnd(*shape):
        return torch.randn(*shape, generator=gen)

    k_buffer, v_buffer = rnd(pool, hkv, d), rnd(pool, hkv, d)
    if strided:  # q/k/v as views of one fused qkv projection, as models produce them
        qkv = rnd(t, hq + 2 * hkv, d).to(dt)
        q, k, v = qkv[:, :hq], qkv[:, hq : hq + hkv], qkv[:, hq + hkv :]
    else:
        q, k, v = rnd(t, hq, d).to(dt), rnd(t, hkv, d).to(dt), rnd(t, hkv, d).to(dt)
    if outlier:
        bias = torch.zeros(d)
        bias[::7] = outlier
        k_buffer = k_buffer + bias
        k = (k.float() + bias).to(dt)
    k_buffer, v_buffer = k_buffer.to(dt), v_buffer.to(dt)
    qo_indptr = torch.tensor([0, *torch.tensor(ext).cumsum(0).tolist()], dtype=torch.int32)
    kv_indptr = torch.tensor([0, *torch.tensor(pre).cumsum(0).tolist()], dtype=torch.int32)
    kv_indices = torch.randperm(pool, generator=gen)[: sum(pre)].to(torch.int64)
    return q, k, v, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices


def run_cases() -> list[dict]:
    """Run every case in this interpreter (TRITON_INTERPRET=1 must already be set)."""
    from sglang_sage_ext.kernels.paged_sage import plan_extend, sage_extend_attention

    rows = []
    for i, (name, pre, ext, hq, hkv, d, dtype, outlier, strided) in enumerate(CASES):
        for pv_mode in ("fp16", "fp8"):
            # "mixed" also runs a second tile config, int64 indptrs (some SGLang releases
            # pass int64; the kernel's TMA offsets must stay 32-bit), and an over-allocated
            # kv_indices with a host-side plan (SGLang's extend_*_lens_cpu), as the backend runs
            variants = (
                (CONFIG, CONFIG_SMALL, "int64", "overalloc") if name == "mixed" else (CONFIG,)
            )
            for variant in variants:
                cfg = variant if isinstance(variant, dict) else CONFIG
                q, k, v, kb, vb, qo, kvp, kvi = make_case(
                    pre, ext, hq, hkv, d, dtype, outlier, strided, seed=1000 + i
                )
                extra = {}
                if variant == "int64":
                    qo, kvp = qo.long(), kvp.long()
                if variant == "overalloc":
                    extra["plan"] = plan_extend(ext, pre, "cpu")
                    kvi = torch.cat([kvi, torch.full((500,), 10**9, dtype=kvi.dtype)])
                o = torch.full((q.shape[0], hq, d), float("nan"), dtype=q.dtype)
                sm_scale = 1.0 / math.sqrt(d)
                sage_extend_attention(
                    q, k, v, o, kb, vb, qo, kvp, kvi, max(ext), sm_scale,
                    pv_mode=pv_mode, config=cfg, **extra,
                )  # fmt: skip
                ref = reference(q, k, v, kb, vb, qo, kvp, kvi, sm_scale)
                n = sum(ext)
                out = o[:n].double()
                diff = out - ref[:n]
                cos = torch.nn.functional.cosine_similarity(out.flatten(), ref[:n].flatten(), dim=0)
                rows.append(
                    {
                        "case": name + ("" if isinstance(variant, dict) else f"-{variant}"),
                        "pv_mode": pv_mode,
                        "block_m": cfg["BLOCK_M"],
                        "block_n": cfg["BLOCK_N"],
                        "rel_l2": float(diff.norm() / ref[:n].norm()),
                        "max_abs": float(diff.abs().max()),
                        "cos": float(cos),
                        "nan": bool(out.isnan().any()),
                        "pad_untouched": bool(o[n:].isnan().all()),
                    }
                )
    return rows


@pytest.fixture(scope="module")
def interpreter_rows() -> list[dict]:
    code = (
        "import json; from tests.test_sage_extend_kernel_cpu import run_cases; "
        "print('ROWS' + json.dumps(run_cases()))"
    )
    stdout = run_python(code, env={"TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)})
    line = next(x for x in stdout.splitlines() if x.startswith("ROWS"))
    rows = json.loads(line[4:])
    for r in rows:
        print(
            f"{r['case']:13s} {r['pv_mode']:4s} BM={r['block_m']:3d} BN={r['block_n']:3d} "
            f"rel_l2={r['rel_l2']:.2e} max_abs={r['max_abs']:.2e} cos={r['cos']:.6f}"
        )
    return rows


def test_all_cases_ran(interpreter_rows):
    assert len(interpreter_rows) == 2 * (len(CASES) + 3)


@pytest.mark.parametrize("pv_mode,bound", [("fp16", FP16_REL_L2_MAX), ("fp8", FP8_REL_L2_MAX)])
def test_accuracy_vs_float64(interpreter_rows, pv_mode, bound):
    rows = [r for r in interpreter_rows if r["pv_mode"] == pv_mode]
    for r in rows:
        assert not r["nan"], r
        assert r["rel_l2"] <= bound, r
        assert r["cos"] >= COSINE_MIN, r


def test_only_real_rows_written(interpreter_rows):
    assert all(r["pad_untouched"] for r in interpreter_rows)


def test_outliers_do_not_hurt(interpreter_rows):
    """Smoothing: K with +20 on every 7th channel stays as accurate as plain inputs."""
    by = {(r["case"], r["pv_mode"]): r["rel_l2"] for r in interpreter_rows}
    assert by[("k-outliers", "fp16")] <= 1.5e-2
