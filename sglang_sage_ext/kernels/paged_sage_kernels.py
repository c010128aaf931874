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

Data flow, two launches per layer call (three with FP8 P·V; asynchronous, no host sync; the
launcher and the per-batch plan are in `paged_sage` and `paged_plan`):

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
3. `_sage_extend_fwd`: grid (tiles, Hq) over the plan's (request, query tile) map, heaviest
   first. Q is quantized in the kernel (once per
   program). Keys below `prefix + first query of the tile` are visible to every row of the
   tile and run unmasked; the remaining at most BLOCK_M / BLOCK_N + 1 tiles apply the
   bottom-right causal mask `key <= prefix + query`.

Semantics are SGLang's `extend_attention_fwd(..., is_causal=True)` with page_size 1, no custom
mask, no sliding window, no logit cap.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_sage_ext.kernels.triton_helpers import (
    I2F_BIAS,
    exp2,
    find_request,
    int32_to_f32_biased,
    to_fp8,
)

#: Keys per INT8 K scale, and the alignment of each request in the packed buffers.
KEY_BLOCK = 64
#: The same value as a constexpr global, readable inside @triton.jit functions.
_KEY_BLOCK = tl.constexpr(KEY_BLOCK)


@triton.jit(do_not_specialize=["B"])  # B == 1 must not turn the search loop constexpr
def _kv_prep_kernel(
    K,
    V,
    K_buffer,
    V_buffer,
    qo_indptr,
    kv_indptr,
    kv_indices,
    blk_indptr,
    Kq,
    Ks,
    Vq,
    Vmax,
    B,
    Hkv,
    stride_kn,
    stride_kh,
    stride_vn,
    stride_vh,
    stride_kbn,
    stride_kbh,
    stride_vbn,
    stride_vbh,
    n_pad,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    STATS: tl.constexpr,
    PV_FP8: tl.constexpr,
    INTERPRET: tl.constexpr,
    PERMUTE_V: tl.constexpr = False,
):
    """One program per (64-key block of the packed batch, kv head); see the module docstring.

    PERMUTE_V (FP8 V for the Hopper CUDA kernel): inside each 32-key group, key
    16h + 8b + 2t + e is stored at column 16h + 4t + 2b + e, the order in which that kernel's
    P fragments reach the FP8 wgmma (csrc/sage_sm90.cu, finish_tile).
    """
    p = tl.program_id(0)
    h = tl.program_id(1)
    h64 = h.to(tl.int64)
    out_n = p.to(tl.int64) * _KEY_BLOCK + tl.arange(0, _KEY_BLOCK)
    offs_d = tl.arange(0, BLOCK_D)
    k_ptr = Kq + (h64 * n_pad + out_n[:, None]) * BLOCK_D + offs_d[None, :]
    v_col = out_n
    if PERMUTE_V:
        v_col = (
            (out_n & ~31)
            | (((out_n >> 4) & 1) << 4)
            | (((out_n >> 1) & 3) << 2)
            | (((out_n >> 3) & 1) << 1)
            | (out_n & 1)
        )
    v_ptr = Vq + (h64 * BLOCK_D + offs_d[None, :]) * n_pad + v_col[:, None]  # transposed
    if p >= tl.load(blk_indptr + B):
        # Blocks past the last request: zeros, so that a key tile that runs over the end of
        # the batch never multiplies a masked (zero) probability by uninitialised NaN/Inf.
        if not STATS:
            zeros = tl.zeros([_KEY_BLOCK, BLOCK_D], dtype=tl.float32)
            tl.store(k_ptr, zeros.to(tl.int8))
            tl.store(Ks + h64 * n_pad + out_n, tl.zeros([_KEY_BLOCK], dtype=tl.float32))
            tl.store(v_ptr, zeros.to(Vq.dtype.element_ty))
        return
    b = find_request(blk_indptr, p, B)
    pre_start = tl.load(kv_indptr + b).to(tl.int64)
    pre_len = (tl.load(kv_indptr + b + 1) - pre_start).to(tl.int32)
    q_start = tl.load(qo_indptr + b).to(tl.int64)
    ext_len = (tl.load(qo_indptr + b + 1) - q_start).to(tl.int32)
    kv_len = pre_len + ext_len
    blk_start = tl.load(blk_indptr + b)

    offs_j = (p - blk_start) * _KEY_BLOCK + tl.arange(0, _KEY_BLOCK)  # key position in request
    d_ok = offs_d < HEAD_DIM
    valid = offs_j < kv_len
    in_pre = valid & (offs_j < pre_len)
    in_new = valid & (offs_j >= pre_len)
    slot = tl.load(kv_indices + pre_start + offs_j, mask=in_pre, other=0).to(tl.int64)
    row = (q_start + offs_j - pre_len).to(tl.int64)
    m_pre = in_pre[:, None] & d_ok[None, :]
    m_new = in_new[:, None] & d_ok[None, :]

    v_pre = tl.load(
        V_buffer + slot[:, None] * stride_vbn + h64 * stride_vbh + offs_d[None, :], mask=m_pre
    )
    v_new = tl.load(V + row[:, None] * stride_vn + h64 * stride_vh + offs_d[None, :], mask=m_new)
    vt = tl.where(in_pre[:, None], v_pre, v_new).to(tl.float32)
    vt = tl.where(valid[:, None] & d_ok[None, :], vt, 0.0)
    vmax_ptr = Vmax + (b * Hkv + h) * BLOCK_D + offs_d
    if STATS:
        tl.atomic_max(vmax_ptr, tl.max(tl.abs(vt), 0))
        return

    # Smoothing vector: mean of up to KEY_BLOCK keys of this request (prefix and new), evenly
    # sampled. Every program of the request computes the identical vector (deterministic, no
    # sync). Sampling the prefix too matters for short chunks: smoothing by the mean of one
    # new key would add that key's noise to every prefix key (measured: 1-token extends went
    # from 1.06e-2 to below 1e-2 rel-L2 with FP16 P·V).
    n_s = tl.minimum(kv_len, _KEY_BLOCK)
    i_s = tl.arange(0, _KEY_BLOCK)
    s_ok = i_s < n_s
    s_pos = (i_s * kv_len) // tl.maximum(n_s, 1)
    s_pre = s_ok & (s_pos < pre_len)
    s_new = s_ok & (s_pos >= pre_len)
    s_slot = tl.load(kv_indices + pre_start + s_pos, mask=s_pre, other=0).to(tl.int64)
    s_row = (q_start + s_pos - pre_len).to(tl.int64)
    ks_pre = tl.load(
        K_buffer + s_slot[:, None] * stride_kbn + h64 * stride_kbh + offs_d[None, :],
        mask=s_pre[:, None] & d_ok[None, :],
        other=0.0,
    )
    ks_new = tl.load(
        K + s_row[:, None] * stride_kn + h64 * stride_kh + offs_d[None, :],
        mask=s_new[:, None] & d_ok[None, :],
        other=0.0,
    )
    k_s = tl.where(s_pre[:, None], ks_pre, ks_new).to(tl.float32)
    k_mean = tl.sum(k_s, 0) / tl.maximum(n_s, 1).to(tl.float32)

    k_pre = tl.load(
        K_buffer + slot[:, None] * stride_kbn + h64 * stride_kbh + offs_d[None, :], mask=m_pre
    )
    k_new = tl.load(K + row[:, None] * stride_kn + h64 * stride_kh + offs_d[None, :], mask=m_new)
    kt = tl.where(in_pre[:, None], k_pre, k_new).to(tl.float32) - k_mean[None, :]
    kt = tl.where(valid[:, None] & d_ok[None, :], kt, 0.0)
    k_scale = tl.maximum(tl.max(tl.abs(kt), 1), 1e-12) / 127.0  # one scale per key
    k_i = kt / k_scale[:, None]
    k_i += 0.5 * tl.where(k_i >= 0, 1.0, -1.0)  # round half away from zero, as SageAttention
    tl.store(k_ptr, k_i.to(tl.int8))
    tl.store(Ks + h64 * n_pad + out_n, k_scale)
    if PV_FP8:
        v_scale = tl.maximum(tl.load(vmax_ptr), 1e-12) / 448.0
        v_q = tl.minimum(tl.maximum(vt / v_scale[None, :], -448.0), 448.0)
        tl.store(v_ptr, to_fp8(v_q, INTERPRET))
    else:
        tl.store(v_ptr, vt.to(tl.float16))


@triton.jit
def _attn_tiles(
    acc,
    l_i,
    m_i,
    q_i,
    q_scale,
    k_desc,
    ks_base,
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
    INTERPRET: tl.constexpr,
):
    """Online softmax over keys [lo, hi) of one request (INT8 QK, FP8/FP16 PV).

    K and V tiles come through TMA tensor descriptors (no per-element pointer tensors, which
    took ~130 registers per thread and spilled at 128x64 tiles on sm90).
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
        if MASKED:
            visible = (offs_n[None, :] <= pre_len + offs_m[:, None]) & (offs_n < kv_len)[None, :]
            t = tl.where(visible, t, float("-inf"))
        # q_scale > 0: the row max is taken on t and the scale costs one FMA in exp2's argument.
        m_new = tl.maximum(m_i, tl.max(t, 1) * q_scale)
        alpha = exp2(m_i - m_new, INTERPRET)
        p = exp2(t * q_scale[:, None] - m_new[:, None], INTERPRET)
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
    q_scale = tl.maximum(tl.max(tl.abs(q), 1), 1e-12) / 127.0  # one scale per query row
    q_i = q / q_scale[:, None]
    q_i += 0.5 * tl.where(q_i >= 0, 1.0, -1.0)
    q_i = q_i.to(tl.int8)

    ks_base = Ks + hk * n_pad + key0
    k_row0 = (hk * n_pad + key0).to(tl.int32)  # row of key 0 in the [Hkv * n_pad, Dp] view
    v_row0 = (hk * BLOCK_D).to(tl.int32)  # row of channel 0 in the [Hkv * Dp, n_pad] view

    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # Keys < pre_len + first query row are visible to all rows: no mask there.
    full_end = ((pre_len + pid_m * BLOCK_M) // BLOCK_N) * BLOCK_N
    causal_end = tl.minimum(kv_len, pre_len + (pid_m + 1) * BLOCK_M)
    acc, l_i, m_i = _attn_tiles(
        acc, l_i, m_i, q_i, q_scale, k_desc, ks_base, v_desc, k_row0, v_row0, key0,
        0, full_end, kv_len, pre_len, offs_m, BLOCK_N, False, PV_FP8, INTERPRET,
    )  # fmt: skip
    acc, l_i, m_i = _attn_tiles(
        acc, l_i, m_i, q_i, q_scale, k_desc, ks_base, v_desc, k_row0, v_row0, key0,
        full_end, causal_end, kv_len, pre_len, offs_m, BLOCK_N, True, PV_FP8, INTERPRET,
    )  # fmt: skip

    out = acc / l_i[:, None]
    if PV_FP8:
        v_scale = tl.maximum(tl.load(Vmax + (b * Hkv + hk) * BLOCK_D + offs_d), 1e-12) / 448.0
        out = out * (v_scale / 448.0)[None, :]
    o_ptr = Out + q_rows[:, None] * stride_on + hq * stride_oh + offs_d[None, :]
    tl.store(o_ptr, out.to(Out.dtype.element_ty), mask=io_mask)
