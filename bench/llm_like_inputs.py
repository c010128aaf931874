"""LLM-like inputs for the paged Sage kernel's accuracy checks, and their float64 reference.

One copy of the input families for the CPU tests, the GPU tests and the kernel bench (issue 11):
i.i.d. normal data hides the failure modes of 8-bit attention, because every channel and every
token looks alike. The activations of trained models do not (SageAttention, arXiv:2410.02367,
Fig. 4; SageAttention2, arXiv:2411.10958, Fig. 4): keys carry a few channels with large offsets
shared by all tokens, queries have per-channel means and a larger spread, values have outlier
channels, and the softmax is peakier. Families (all seeded; the structure of a family, e.g. which
channels are outliers, is drawn afresh per seed, like a different layer):

* ``iid``: q, k, v ~ N(0, 1), the control.
* ``q_bias``: q = 1.5 * (z + b) with one bias b ~ N(0, 1) per (query head, channel) shared by all
  tokens: a per-channel mean as large as the token spread, and a 1.5x larger logit scale (a
  peakier softmax than the control).
* ``k_offset``: keys get large offsets (|10..20|, random sign) on 4 channels of each kv head,
  shared by all tokens (what K smoothing is for).
* ``v_outlier``: 4 channels of each kv head's values are 8x larger.
* ``llm``: all three at once (the issue's "LLM-like" inputs).

At import this module needs only torch: no SGLang, no Triton, nothing from the package, so both
the tests (through tests/_llm_inputs.py) and bench scripts (bench/ on sys.path) can load it;
`run_sage` imports the package's kernel when it is called.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch

FAMILIES = ("iid", "q_bias", "k_offset", "v_outlier", "llm")
LLM_FAMILIES = FAMILIES[1:]
#: (P·V mode, Q smoothing) combinations the accuracy checks run, in table column order.
MODES = tuple((pv, qs) for pv in ("fp16", "fp8") for qs in ("off", "on"))
Q_SCALE = 1.5
Q_BIAS_STD = 1.0
K_OFFSET_CHANNELS = 4
K_OFFSET_RANGE = (10.0, 20.0)
V_OUTLIER_CHANNELS = 4
V_OUTLIER_SCALE = 8.0


@dataclass(frozen=True)
class Shape:
    """An extend batch: per-request cached prefix and new-token lengths, heads, head dim."""

    name: str
    prefix: tuple[int, ...]
    extend: tuple[int, ...]
    hq: int
    hkv: int
    d: int


#: The issue's shapes (issue 11), for GPU checks: prefill, a chunk over a paged prefix, a batch
#: of requests with prefixes, head_dim 64.
GPU_SHAPES = (
    Shape("prefill 2K", (0,), (2048,), 28, 4, 128),
    Shape("prefill 16K", (0,), (16384,), 28, 4, 128),
    Shape("8K chunk over 24K", (24576,), (8192,), 32, 8, 128),
    Shape("16 x (3K prefix + 1K)", (3072,) * 16, (1024,) * 16, 28, 4, 128),
    Shape("prefill 4K d64", (0,), (4096,), 14, 2, 64),
)
#: Small versions for the CPU interpreter (seconds each).
CPU_SHAPES = (
    Shape("prefill 256", (0,), (256,), 4, 2, 128),
    Shape("128 over 384", (384,), (128,), 2, 1, 128),
    Shape("3 x (96 + 64)", (96, 0, 160), (64, 96, 32), 4, 2, 64),
)


@dataclass
class Batch:
    """Inputs in SGLang's extend layout: new tokens in q/k/v, the prefix in a KV pool whose
    slots are scattered (k_buffer[kv_indices[kv_indptr[b] + i]] is prefix token i of request b).
    """

    shape: Shape
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    k_buffer: torch.Tensor
    v_buffer: torch.Tensor
    qo_indptr: torch.Tensor
    kv_indptr: torch.Tensor
    kv_indices: torch.Tensor

    @property
    def sm_scale(self) -> float:
        return 1.0 / math.sqrt(self.shape.d)

    @property
    def num_tokens(self) -> int:
        return sum(self.shape.extend)


def _structure(family: str, shape: Shape, gen: torch.Generator, device) -> dict[str, torch.Tensor]:
    """Per-head structure of a family: q bias [Hq, D], k offset [Hkv, D], v gain [Hkv, D]."""
    hq, hkv, d = shape.hq, shape.hkv, shape.d
    out = {
        "q_scale": torch.ones((), device=device),
        "q_bias": torch.zeros(hq, d, device=device),
        "k_offset": torch.zeros(hkv, d, device=device),
        "v_gain": torch.ones(hkv, d, device=device),
    }
    if family in ("q_bias", "llm"):
        out["q_scale"] = torch.full((), Q_SCALE, device=device)
        out["q_bias"] = Q_BIAS_STD * torch.randn(hq, d, generator=gen, device=device)
    if family in ("k_offset", "llm"):
        lo, hi = K_OFFSET_RANGE
        for h in range(hkv):
            ch = torch.randperm(d, generator=gen, device=device)[:K_OFFSET_CHANNELS]
            mag = lo + (hi - lo) * torch.rand(K_OFFSET_CHANNELS, generator=gen, device=device)
            sign = torch.randint(0, 2, (K_OFFSET_CHANNELS,), generator=gen, device=device) * 2 - 1
            out["k_offset"][h, ch] = mag * sign
    if family in ("v_outlier", "llm"):
        for h in range(hkv):
            ch = torch.randperm(d, generator=gen, device=device)[:V_OUTLIER_CHANNELS]
            out["v_gain"][h, ch] = V_OUTLIER_SCALE
    return out


def make_batch(
    family: str,
    shape: Shape,
    seed: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    pad_rows: int = 0,
) -> Batch:
    """Fresh random inputs of one family and shape (`pad_rows` extra rows after the real tokens,
    as SGLang's CUDA-graph padding leaves them)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    gen = torch.Generator(device=device).manual_seed(seed)
    st = _structure(family, shape, gen, device)
    hq, hkv, d = shape.hq, shape.hkv, shape.d
    t = sum(shape.extend) + pad_rows
    n_pre = sum(shape.prefix)
    pool = n_pre + 64

    def keys(n: int) -> torch.Tensor:
        return torch.randn(n, hkv, d, generator=gen, device=device) + st["k_offset"]

    def values(n: int) -> torch.Tensor:
        return torch.randn(n, hkv, d, generator=gen, device=device) * st["v_gain"]

    q = st["q_scale"] * (torch.randn(t, hq, d, generator=gen, device=device) + st["q_bias"])
    k, v = keys(t), values(t)
    k_buffer, v_buffer = keys(pool), values(pool)
    kv_indices = torch.randperm(pool, generator=gen, device=device)[:n_pre].to(torch.int64)

    def indptr(lens: tuple[int, ...]) -> torch.Tensor:
        host = [0]
        for n in lens:
            host.append(host[-1] + n)
        return torch.tensor(host, dtype=torch.int32, device=device)

    q, k, v, k_buffer, v_buffer = (x.to(dtype) for x in (q, k, v, k_buffer, v_buffer))
    return Batch(
        shape, q, k, v, k_buffer, v_buffer, indptr(shape.extend), indptr(shape.prefix), kv_indices
    )


def study_batches(seeds, shape_names, q_heads: int, families):
    """(seed, family, batch) over GPU_SHAPES (those named, or all), for the CPU studies in
    bench/studies: one kv head with `q_heads` query heads, fresh inputs per seed and family."""
    for seed in seeds:
        for s in GPU_SHAPES:
            if shape_names and s.name not in shape_names:
                continue
            shape = Shape(s.name, s.prefix, s.extend, q_heads, 1, s.d)
            for family in families:
                yield seed, family, make_batch(family, shape, seed)


def log_study_run(out_path, seed: int, family: str, batch: Batch, errs: dict, t0: float, **extra):
    """One study run: a JSON line appended to `out_path` (if given) and a line printed."""
    import json
    import time

    rec = dict(seed=seed, shape=batch.shape.name, family=family, errs=errs, **extra)
    rec["secs"] = round(time.time() - t0, 1)
    if out_path:
        with open(out_path, "a", encoding="utf-8") as fo:
            fo.write(json.dumps(rec) + "\n")
    errors = " ".join(f"{k}={v:.3e}" for k, v in errs.items())
    print(f"{seed} {batch.shape.name:22s} {family:9s} {errors} ({rec['secs']}s)", flush=True)


def reference(batch: Batch, max_chunk_bytes: int = 1 << 30) -> torch.Tensor:
    """float64 SGLang extend semantics ([num_tokens, Hq, D]): each request's queries see its
    whole prefix and its new tokens up to themselves (bottom-right causal). Query rows go in
    chunks whose float64 score block stays under `max_chunk_bytes` (an 8K chunk over 24K keys
    with 32 heads would need 64 GB at once)."""
    q = batch.q
    out = torch.zeros(
        batch.num_tokens, q.shape[1], q.shape[2], dtype=torch.float64, device=q.device
    )
    group = q.shape[1] // batch.k.shape[1]
    qo, kvp = batch.qo_indptr.tolist(), batch.kv_indptr.tolist()
    for b in range(len(qo) - 1):
        qs, qe, ps, pe = qo[b], qo[b + 1], kvp[b], kvp[b + 1]
        idx = batch.kv_indices[ps:pe]
        keys = torch.cat([batch.k_buffer[idx], batch.k[qs:qe]]).double()
        vals = torch.cat([batch.v_buffer[idx], batch.v[qs:qe]]).double()
        keys = keys.repeat_interleave(group, 1).transpose(0, 1)  # [Hq, N, D]
        vals = vals.repeat_interleave(group, 1).transpose(0, 1)
        j = torch.arange(keys.shape[1], device=q.device)[None, :]
        rows = max(1, max_chunk_bytes // (8 * keys.shape[0] * keys.shape[1]))
        for c0 in range(0, qe - qs, rows):
            c1 = min(qe - qs, c0 + rows)
            qc = q[qs + c0 : qs + c1].double().transpose(0, 1)  # [Hq, n, D]
            s = (qc @ keys.transpose(1, 2)) * batch.sm_scale
            i = torch.arange(c0, c1, device=q.device)[:, None]
            s = s.masked_fill(j > pe - ps + i, float("-inf"))
            out[qs + c0 : qs + c1] = (s.softmax(-1) @ vals).transpose(0, 1)
    return out


def rel_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| over the real rows, in float64 (inf if out has NaN/Inf)."""
    o = out[: ref.shape[0]].double()
    if not torch.isfinite(o).all():
        return float("inf")
    return float((o - ref).norm() / ref.norm())


def run_sage(batch: Batch, pv_mode: str, q_smooth: str, **kwargs) -> tuple[torch.Tensor, bool]:
    """The paged Sage kernel on `batch` into a NaN-poisoned output: (output, padding untouched).

    `kwargs` go to `sage_extend_attention` (e.g. `config=`, `plan=`)."""
    from sglang_sage_ext.kernels.paged_sage import sage_extend_attention

    o = torch.full_like(batch.q, float("nan"))
    sage_extend_attention(
        batch.q, batch.k, batch.v, o, batch.k_buffer, batch.v_buffer, batch.qo_indptr,
        batch.kv_indptr, batch.kv_indices, max(batch.shape.extend), batch.sm_scale,
        pv_mode=pv_mode, q_smooth=q_smooth, **kwargs,
    )  # fmt: skip
    return o, bool(o[batch.num_tokens :].isnan().all())


def score_row(
    batch: Batch, family: str, ref: torch.Tensor, pv_mode: str, q_smooth: str, **kwargs
) -> dict:
    """One result row (shape, family, modes, rel-L2 vs `ref`, padding untouched)."""
    o, untouched = run_sage(batch, pv_mode, q_smooth, **kwargs)
    return {
        "shape": batch.shape.name,
        "family": family,
        "pv_mode": pv_mode,
        "q_smooth": q_smooth,
        "rel_l2": rel_l2(o, ref),
        "pad_untouched": untouched,
    }


def rel_l2_table(rows: list[dict], shapes: list[str]) -> list[str]:
    """Markdown lines: rel-L2 of `score_row` rows per family x shape, one column per MODES
    entry, and after each family its median over the shapes."""
    by = {(r["shape"], r["family"], r["pv_mode"], r["q_smooth"]): r["rel_l2"] for r in rows}
    head = " | ".join(f"{pv} smooth {qs}" for pv, qs in MODES)
    lines = [f"| family | shape | {head} |", "|---|---|" + "---|" * len(MODES)]
    for family in FAMILIES:
        for shape in shapes:
            cells = [f"{by[(shape, family, pv, qs)]:.2e}" for pv, qs in MODES]
            lines.append(f"| {family} | {shape} | " + " | ".join(cells) + " |")
        medians = [statistics.median(by[(s, family, pv, qs)] for s in shapes) for pv, qs in MODES]
        lines.append(
            f"| **{family}** | **median** | " + " | ".join(f"{m:.2e}" for m in medians) + " |"
        )
    return lines
