"""The pre-pass of the paged Sage kernel: packed, quantized K/V copies (and Q smoothing terms).

See `paged_sage_kernels` for the method and the data flow (this is its launches 1 and 2).
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_sage_ext.kernels.triton_helpers import _KEY_BLOCK, I2F_BIAS, find_request, to_fp8

#: Bytes per INT8 K row in the BLOCKED layout: one 128-byte swizzle atom, whatever D (<= 128).
K_ROW_BLOCKED = tl.constexpr(128)


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
    Q,
    Qmean,
    Cq,
    qk_scale,
    B,
    Hkv,
    group,
    stride_qn,
    stride_qh,
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
    Q_SMOOTH: tl.constexpr,
    INTERPRET: tl.constexpr,
    PERMUTE_V: tl.constexpr = False,
    BLOCKED: tl.constexpr = False,
):
    """One program per (64-key block of the packed batch, kv head); see the module docstring.

    PERMUTE_V (FP8 V for the Hopper CUDA kernel): inside each 32-key group, key
    16h + 8b + 2t + e is stored at column 16h + 4t + 2b + e, the order in which that kernel's
    P fragments reach the FP8 wgmma (csrc/sage_sm90.cu, finish_tile).
    BLOCKED (FP16 V for the warp-specialized Hopper kernel, csrc/sage_sm90_ws.cu): every 128-key
    tile becomes one contiguous, already swizzled block that a TMA bulk copy moves verbatim: K
    rows of 128 bytes (D = 64 fills half) keep 16-byte chunk c of row r at chunk c ^ (r % 8), the
    key scales are stored in quads with their bias terms (`_store_scales`), and V^T is stored in
    64-key blocks [Hkv, n_pad / 64, D, 64] with chunk c of channel row d at chunk c ^ (d % 8).
    """
    p = tl.program_id(0)
    h = tl.program_id(1)
    h64 = h.to(tl.int64)
    out_n = p.to(tl.int64) * _KEY_BLOCK + tl.arange(0, _KEY_BLOCK)
    offs_d = tl.arange(0, BLOCK_D)
    v_col = out_n
    if PERMUTE_V:
        v_col = (
            (out_n & ~31)
            | (((out_n >> 4) & 1) << 4)
            | (((out_n >> 1) & 3) << 2)
            | (((out_n >> 3) & 1) << 1)
            | (out_n & 1)
        )
    if p >= tl.load(blk_indptr + B):
        # Blocks past the last request: zeros, so that a key tile that runs over the end of
        # the batch never multiplies a masked (zero) probability by uninitialised NaN/Inf.
        if not STATS:
            zeros = tl.zeros([_KEY_BLOCK, BLOCK_D], dtype=tl.float32)
            _store_k(Kq, zeros.to(tl.int8), h64, n_pad, out_n, offs_d, BLOCK_D, BLOCKED)
            _store_scales(Ks, tl.zeros([_KEY_BLOCK], dtype=tl.float32), h64, n_pad, out_n, BLOCKED)
            v_zeros = zeros.to(Vq.dtype.element_ty)
            _store_v(Vq, v_zeros, h64, p, n_pad, v_col, offs_d, BLOCK_D, BLOCKED)
            if Q_SMOOTH:
                for g in range(group):
                    hq = h64 * group + g
                    tl.store(Cq + hq * n_pad + out_n, tl.zeros([_KEY_BLOCK], dtype=tl.float32))
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
    _store_k(Kq, k_i.to(tl.int8), h64, n_pad, out_n, offs_d, BLOCK_D, BLOCKED)
    _store_scales(Ks, k_scale, h64, n_pad, out_n, BLOCKED)
    if Q_SMOOTH:
        _q_mean_terms(
            Q, Qmean, Cq, kt, b, h64, Hkv, group, q_start, ext_len, p == blk_start, out_n,
            n_pad, qk_scale, stride_qn, stride_qh, offs_d, d_ok, BLOCK_D,
        )  # fmt: skip
    if PV_FP8:
        v_scale = tl.maximum(tl.load(vmax_ptr), 1e-12) / 448.0
        v_q = tl.minimum(tl.maximum(vt / v_scale[None, :], -448.0), 448.0)
        _store_v(Vq, to_fp8(v_q, INTERPRET), h64, p, n_pad, v_col, offs_d, BLOCK_D, BLOCKED)
    else:
        _store_v(Vq, vt.to(tl.float16), h64, p, n_pad, v_col, offs_d, BLOCK_D, BLOCKED)


@triton.jit
def _store_k(Kq, vals, h64, n_pad, out_n, offs_d, BLOCK_D: tl.constexpr, BLOCKED: tl.constexpr):
    """INT8 K rows of one 64-key block: plain, or BLOCKED (rows of K_ROW_BLOCKED bytes, 16-byte
    chunk c of key row r at c ^ (r % 8), written as [keys, chunks, 16] so every store is one
    16-byte vector; with D = 64 the other four chunks of a row are never written nor read)."""
    if BLOCKED:
        row = (h64 * n_pad + out_n) * K_ROW_BLOCKED
        swz = (tl.arange(0, BLOCK_D // 16)[None, :] ^ (out_n[:, None] & 7)) * 16
        ptr = Kq + row[:, None, None] + swz[:, :, None] + tl.arange(0, 16)[None, None, :]
        tl.store(ptr, tl.reshape(vals, [_KEY_BLOCK, BLOCK_D // 16, 16]))
    else:
        tl.store(Kq + (h64 * n_pad + out_n[:, None]) * BLOCK_D + offs_d[None, :], vals)


@triton.jit
def _store_scales(Ks, k_scale, h64, n_pad, out_n, BLOCKED: tl.constexpr):
    """Per-key INT8 K scales: [Hkv, n_pad], or BLOCKED in quads per key pair (s_2i, s_2i+1,
    -I2F_BIAS * s_2i, -I2F_BIAS * s_2i+1), [Hkv, n_pad / 2, 4]: the CUDA kernel's score is
    fma(int32 + bias as float, s, -bias * s), and one 16-byte load brings both operands of a
    pair instead of a load and two multiplications per tile and thread."""
    if BLOCKED:
        pos = h64 * 2 * n_pad + 2 * out_n - (out_n & 1)
        tl.store(Ks + pos, k_scale)
        tl.store(Ks + pos + 2, -(k_scale * I2F_BIAS))
    else:
        tl.store(Ks + h64 * n_pad + out_n, k_scale)


@triton.jit
def _store_v(Vq, vals, h64, p, n_pad, v_col, offs_d, BLOCK_D: tl.constexpr, BLOCKED: tl.constexpr):
    """V of one 64-key block, transposed: V^T rows of n_pad keys (keys at `v_col`), or BLOCKED
    ([D, 64] per block, chunk c of channel row d at c ^ (d % 8), written as [key chunks, 8 keys,
    D] so every store is one 16-byte vector along the keys)."""
    if BLOCKED:
        first_row = ((h64 * n_pad) // _KEY_BLOCK + p) * BLOCK_D
        swz = (tl.arange(0, _KEY_BLOCK // 8)[:, None] ^ (offs_d[None, :] & 7)) * 8
        ptr = (
            Vq
            + (first_row + offs_d[None, None, :]) * _KEY_BLOCK
            + swz[:, None, :]
            + tl.arange(0, 8)[None, :, None]
        )
        tl.store(ptr, tl.reshape(vals, [_KEY_BLOCK // 8, 8, BLOCK_D]))
    else:
        tl.store(Vq + (h64 * BLOCK_D + offs_d[None, :]) * n_pad + v_col[:, None], vals)


@triton.jit
def _q_mean_terms(
    Q, Qmean, Cq, kt, b, h64, Hkv, group, q_start, ext_len, first_block, out_n, n_pad,
    qk_scale, stride_qn, stride_qh, offs_d, d_ok, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """Q smoothing's two inputs, for each query head of kv head `h64`'s GQA group.

    q_mean (log2 units): the mean of up to KEY_BLOCK of the request's queries, evenly sampled,
    written once per request (by its first block) to `Qmean[b, hq]`. c_j = q_mean . k~_j for
    this block's keys, to `Cq[hq, key]`, from the *unquantized* smoothed keys `kt` in fp32: the
    attention loop adds it back to the INT8 score of (q - q_mean) . k~. Computing it from the
    INT8 keys instead would leave q_mean times K's rounding error in every score, and q_mean is
    what is large (measured, emulation at 1K over 3K, D=128: rel-L2 1.5e-2 that way against
    1.2e-2 with the exact term, 1.8e-2 without Q smoothing).
    """
    n_s = tl.minimum(ext_len, _KEY_BLOCK)
    i_s = tl.arange(0, _KEY_BLOCK)
    s_ok = i_s < n_s
    rows = q_start + ((i_s * ext_len) // tl.maximum(n_s, 1)).to(tl.int64)
    inv_n = qk_scale / tl.maximum(n_s, 1).to(tl.float32)
    for g in range(group):
        hq = h64 * group + g
        q_s = tl.load(
            Q + rows[:, None] * stride_qn + hq * stride_qh + offs_d[None, :],
            mask=s_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        q_mean = tl.sum(q_s.to(tl.float32), 0) * inv_n
        tl.store(Cq + hq * n_pad + out_n, tl.sum(kt * q_mean[None, :], 1))
        if first_block:
            tl.store(Qmean + (b * Hkv * group + hq) * BLOCK_D + offs_d, q_mean)
