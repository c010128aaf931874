"""SageAttention for SGLang extend batches: chunked prefill and radix-cache hits, in Triton.

SGLang prefills long prompts in chunks and reuses cached prefixes, so most long-prompt attention
is a chunk of new queries attending to a paged prefix plus itself: causal attention aligned to
the bottom right, with q_len < kv_len. SageAttention 1.0.6 masks top-left and its varlen kernel
has no paged-KV input, so this module implements the same method for SGLang's extend layout:

* SageAttention (Zhang et al., ICLR 2025, arXiv:2410.02367): INT8 Q and K after *smoothing* K,
  i.e. subtracting one vector from every key. Softmax is invariant to adding q·c to every score of a
  row, so any vector c that is the same for all keys a query sees leaves the result exact; it
  removes the channel-wise outliers of K that would otherwise eat the INT8 range. Here c is one
  vector per (request, kv head): the mean of up to 64 of the request's keys (prefix and new),
  sampled evenly (same request, same c for every key: still exact).
  Softmax runs in fp32 with exp2 (sm_scale * log2(e) is folded into Q before quantization).
  Granularity: one scale per query row and per key (finer than SageAttention 1's per-block
  scales and SageAttention2's per-thread ones). It is free here: the key scales are a vector
  multiplied into the score tile anyway, and since every query scale is positive the row max
  is taken before applying it, which then rides in exp2's argument as one FMA. On random
  inputs this took the INT8-QK error from ~1.0e-2 (per-block) to ~7e-3 (CPU interpreter).
* SageAttention2 (Zhang et al., ICML 2025, arXiv:2411.10958): on GPUs with FP8 tensor cores
  (sm89, sm90) P·V runs in FP8 e4m3: P (in [0, 1]) is scaled by 448 and V is quantized with one
  scale per (request, kv head, channel), amax / 448; both scales are divided out of the fp32
  accumulator at the end. On sm80/86 P·V runs in FP16 (SageAttention 1), as `pv_mode="fp16"`.
  Accuracy cost: e4m3 keeps 3 mantissa bits, so rounding P and V costs ~3.3e-2 rel-L2 against
  float64 on i.i.d. normal inputs (PyTorch emulation and CPU interpreter agree), versus ~7e-3
  for FP16 P·V. Whether that is acceptable is a model-level question (perplexity), not a kernel
  one; `pv_mode="fp16"` is the accurate choice.
* Q smoothing (SageAttention2's "smooth Q", proposed there for INT4 Q·K): q_i . k_j = (q_i -
  q_mean) . k_j + q_mean . k_j. The first term goes through INT8 with a per-row scale that no
  longer spans q_mean; the second, c_j, varies with the key (it does *not* cancel in softmax), so
  it is added back to every score in fp32. SageAttention2 takes the mean of each query block and
  adds back that block's GEMV q_mean . K^T; here q_mean is one vector per (request, query head),
  the mean of up to 64 of the request's queries (the smoothing is exact for any vector, and a
  request-wide one loses nothing on stationary statistics), so the pre-pass computes c_j once per
  key, in fp32 from the *unquantized* smoothed keys. The loop then loads c like the key scales and
  spends one FADD per score: the row max must be taken after adding c (sm90 SASS from Triton 3.6,
  the lent GPUs' version, 128x128 tiles, 8 warps: 868 instead of 753 instructions per thread per
  key tile, +15 %: 64 FADD, and 32 LDGSTS + 13 LDS for the c vector, which Triton loads like the
  key scales). On LLM-like inputs (per-channel query bias, `bench/llm_like_inputs.py`) the FP16
  P·V error drops by ~27 % (median over the issue's five shapes, `bench/sage_emulate.py`: 1.66e-2
  -> 1.23e-2 for biased queries, 1.64e-2 -> 1.18e-2 with all three LLM-like traits; CPU
  interpreter, small shapes: 1.27e-2 -> 0.96e-2); on i.i.d. inputs it changes < 3 %. What remains
  is INT8's own rounding: a score error of ~8.7e-3 * sd(q - q_mean) * sd(k - k_mean) (per-channel
  standard deviations, sm_scale = D^-0.5, D=128, natural-log units), which is also about the
  rel-L2 of rows with long contexts; no smoothing removes a larger logit scale (queries 1.5x the
  keys' scale: ~1.3e-2).

Data flow, two launches per layer call (three with FP8 P·V; asynchronous, no host sync; the
pre-pass is in `paged_prep_kernel`, the launcher and the per-batch plan in `paged_sage` and
`paged_plan`):

1. (fp8 only) `_kv_prep_kernel[STATS]`: per 64-key block, |V| amax per channel, atomic max into
   `vmax[B, Hkv, D]` (max is order independent, so this is deterministic).
2. `_kv_prep_kernel`: reads each request's keys and values once, prefix rows straight from the
   KV pool through `kv_indices`, new rows from `k`/`v`, and writes a *packed quantized copy* of
   this batch's keys and values: INT8 K `[Hkv, Npad, Dp]` + one fp32 scale per key, and V
   (FP8 or FP16) transposed `[Hkv, Dp, Npad]`, each request starting on a 64-key boundary.
   Why a pre-pass rather than quantizing K inside the attention loop: every query tile (and every
   query head of a GQA group) would requantize the same K tile; the pre-pass does it once. The
   copy costs ~3 bytes moved per K element and ~3 (fp8) / 4 (fp16) per V element, once per call,
   against an attention loop that is compute-bound for any prefix longer than a few hundred
   tokens; e.g. a 4K chunk over a 28K prefix (8 kv heads, D=128) moves ~0.2 GB (~70 us at
   3 TB/s) against ~2 TFLOP of attention (~4 ms at 500 TFLOP/s), < 2 %. The copy is half the
   bytes of the bf16 prefix in fp8 mode, and it lets the hot loop read contiguous tiles without
   an index load per key. V is written transposed (token index contiguous) because Hopper's FP8
   wgmma needs its B operand K-major (as in Triton's fused-attention tutorial).
   With Q smoothing it also writes each request's q_mean and c_j = q_mean . k~_j per query
   head (4 bytes per key and query head).
3. `_sage_extend_fwd`: grid (tiles, Hq) over the plan's (request, query tile) map, heaviest
   first. Q is quantized in the kernel (once per program, after subtracting q_mean with Q
   smoothing). Keys below `prefix + first query of the tile` are visible to every row of the
   tile and run unmasked; the remaining at most BLOCK_M / BLOCK_N + 1 tiles apply the
   bottom-right causal mask `key <= prefix + query`.

Semantics are SGLang's `extend_attention_fwd(..., is_causal=True)` with page_size 1, no custom
mask, no sliding window, no logit cap.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_sage_ext.kernels.triton_helpers import (
    _KEY_BLOCK,
    I2F_BIAS,
    exp2,
    int32_to_f32_biased,
    to_fp8,
    to_out,
)


@triton.jit
def _attn_tiles(
    acc,
    l_i,
    m_i,
    q_i,
    q_scale,
    k_desc,
    ks_base,
    cq_base,
    v_desc,
    k_row0,
    v_row0,
    key0,
    lo,
    hi,
    kv_len,
    pre_len,
    offs_m,
    BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr,
    PV_FP8: tl.constexpr,
    Q_SMOOTH: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """Online softmax over keys [lo, hi) of one request (INT8 QK, FP8/FP16 PV).

    K and V tiles come through TMA tensor descriptors (no per-element pointer tensors, which
    took ~130 registers per thread and spilled at 128x64 tiles on sm90). With Q_SMOOTH the
    per-key term c_j = q_mean . k~_j is added to every score; it varies with the key, so the row
    max must be taken after it: one more FADD per score than without (see the module docstring).
    """
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = k_desc.load([k_row0 + start_n, 0])  # [BLOCK_N, BLOCK_D] int8
        k_scale = tl.load(ks_base + offs_n)
        # score = q_scale[row] * k_scale[key] * (t - bias); the bias rides in one FMA.
        t = int32_to_f32_biased(tl.dot(q_i, k.T))
        k_bias = k_scale * I2F_BIAS
        t = t * k_scale[None, :] - k_bias[None, :]
        if Q_SMOOTH:
            t = t * q_scale[:, None] + tl.load(cq_base + offs_n)[None, :]
        if MASKED:
            visible = (offs_n[None, :] <= pre_len + offs_m[:, None]) & (offs_n < kv_len)[None, :]
            t = tl.where(visible, t, float("-inf"))
        if Q_SMOOTH:
            m_new = tl.maximum(m_i, tl.max(t, 1))
            p = exp2(t - m_new[:, None], INTERPRET)
        else:
            # q_scale > 0: the row max is taken on t and the scale rides in exp2's FMA.
            m_new = tl.maximum(m_i, tl.max(t, 1) * q_scale)
            p = exp2(t * q_scale[:, None] - m_new[:, None], INTERPRET)
        alpha = exp2(m_i - m_new, INTERPRET)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = v_desc.load([v_row0, key0 + start_n]).T  # [BLOCK_N, BLOCK_D]; stored transposed
        acc = acc * alpha[:, None]
        if PV_FP8:  # constexpr branch: only one dot is compiled
            acc = tl.dot(to_fp8(p * 448.0, INTERPRET), v, acc)
        else:
            acc = tl.dot(p.to(tl.float16), v, acc)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _sage_extend_fwd(
    Q,
    Out,
    k_desc,
    Ks,
    v_desc,
    Vmax,
    Qmean,
    Cq,
    qo_indptr,
    kv_indptr,
    blk_indptr,
    Tiles,
    qk_scale,
    Hkv,
    group,
    stride_qn,
    stride_qh,
    stride_on,
    stride_oh,
    n_pad,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PV_FP8: tl.constexpr,
    Q_SMOOTH: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """One program per (query tile, query head): bottom-right causal Sage attention.

    `Tiles` [num_tiles, 2] int32 maps program 0's index to (request, query tile): only tiles
    that hold queries are launched (a mixed batch's short requests spawn no empty programs),
    heaviest first (`plan.ExtendPlan`), so long tiles do not trail at the end of the wave.
    """
    tile = tl.program_id(0)
    hq = tl.program_id(1)
    b = tl.load(Tiles + 2 * tile)
    pid_m = tl.load(Tiles + 2 * tile + 1)
    # int32 positions whatever SGLang's indptr dtype is (some releases pass int64): TMA
    # descriptor offsets must be 32-bit.
    q_start = tl.load(qo_indptr + b).to(tl.int32)
    ext_len = tl.load(qo_indptr + b + 1).to(tl.int32) - q_start
    if pid_m * BLOCK_M >= ext_len:
        return
    pre_len = (tl.load(kv_indptr + b + 1) - tl.load(kv_indptr + b)).to(tl.int32)
    kv_len = pre_len + ext_len
    hk = (hq // group).to(tl.int64)  # runtime: one compile serves every GQA ratio
    key0 = tl.load(blk_indptr + b) * _KEY_BLOCK  # packed position of key 0 (int32: < 2**31)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < ext_len
    io_mask = m_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + q_rows[:, None] * stride_qn + hq * stride_qh + offs_d[None, :], mask=io_mask)
    q = q.to(tl.float32) * qk_scale  # sm_scale * log2(e): scores come out in log2 units
    if Q_SMOOTH:  # q_mean is in log2 units already (the pre-pass applied qk_scale)
        q = q - tl.load(Qmean + (b * Hkv * group + hq) * BLOCK_D + offs_d)[None, :]
    q_scale = tl.maximum(tl.max(tl.abs(q), 1), 1e-12) / 127.0  # one scale per query row
    q_i = q / q_scale[:, None]
    q_i += 0.5 * tl.where(q_i >= 0, 1.0, -1.0)
    q_i = q_i.to(tl.int8)

    ks_base = Ks + hk * n_pad + key0
    cq_base = Cq + hq.to(tl.int64) * n_pad + key0
    k_row0 = (hk * n_pad + key0).to(tl.int32)  # row of key 0 in the [Hkv * n_pad, Dp] view
    v_row0 = (hk * BLOCK_D).to(tl.int32)  # row of channel 0 in the [Hkv * Dp, n_pad] view

    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # Keys < pre_len + first query row are visible to all rows: no mask there.
    full_end = ((pre_len + pid_m * BLOCK_M) // BLOCK_N) * BLOCK_N
    causal_end = tl.minimum(kv_len, pre_len + (pid_m + 1) * BLOCK_M)
    acc, l_i, m_i = _attn_tiles(
        acc, l_i, m_i, q_i, q_scale, k_desc, ks_base, cq_base, v_desc, k_row0, v_row0, key0,
        0, full_end, kv_len, pre_len, offs_m, BLOCK_N, False, PV_FP8, Q_SMOOTH, INTERPRET,
    )  # fmt: skip
    acc, l_i, m_i = _attn_tiles(
        acc, l_i, m_i, q_i, q_scale, k_desc, ks_base, cq_base, v_desc, k_row0, v_row0, key0,
        full_end, causal_end, kv_len, pre_len, offs_m, BLOCK_N, True, PV_FP8, Q_SMOOTH, INTERPRET,
    )  # fmt: skip

    out = acc / l_i[:, None]
    if PV_FP8:
        v_scale = tl.maximum(tl.load(Vmax + (b * Hkv + hk) * BLOCK_D + offs_d), 1e-12) / 448.0
        out = out * (v_scale / 448.0)[None, :]
    o_ptr = Out + q_rows[:, None] * stride_on + hq * stride_oh + offs_d[None, :]
    tl.store(o_ptr, to_out(out, Out.dtype.element_ty, INTERPRET), mask=io_mask)
