"""Small Triton device functions shared by the paged Sage kernels (GPU code only)."""

from __future__ import annotations

import triton
import triton.language as tl

#: Keys per INT8 K scale, and the alignment of each request in the packed buffers.
KEY_BLOCK = 64
#: The same value as a constexpr global, readable inside @triton.jit functions.
_KEY_BLOCK = tl.constexpr(KEY_BLOCK)
#: float32 whose bit pattern is 0x4B400000 (1.5 * 2**23): see `int32_to_f32_biased`.
I2F_BIAS = tl.constexpr(12582912.0)


@triton.jit
def to_fp8(x, INTERPRET: tl.constexpr):
    """fp32 -> float8e4nv, round to nearest even (hardware cvt on GPU; see _INTERPRET)."""
    if INTERPRET:
        bits = x.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFFF + ((bits >> 20) & 1)) & -0x100000
        x = bits.to(tl.float32, bitcast=True)
    return x.to(tl.float8e4nv)


@triton.jit
def to_out(x, dtype: tl.constexpr, INTERPRET: tl.constexpr):
    """fp32 -> the output dtype, round to nearest even. Triton's CPU interpreter (3.9) truncates
    fp32 -> bf16, which alone adds ~1.6e-3 rel-L2 to a bf16 output (measured); rounding the bits
    first makes CPU tests see what the GPU's cvt.rn computes."""
    if INTERPRET and dtype == tl.bfloat16:
        bits = x.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -0x10000
        x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)


@triton.jit
def exp2(x, INTERPRET: tl.constexpr):
    """2**x. On the GPU `ex2.approx.ftz`: Triton's exp2 adds a denormal guard (compare and two
    multiplies around MUFU.EX2) that this kernel never needs; the interpreter has no inline PTX.
    """
    if INTERPRET:
        return tl.math.exp2(x)
    return tl.inline_asm_elementwise(
        "ex2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
    )


@triton.jit
def find_request(blk_indptr, p, B):
    """Largest b with blk_indptr[b] <= p (binary search; blk_indptr is non-decreasing)."""
    lo = B * 0  # a tensor from the start: loop-carried types must not change
    hi = B
    while hi - lo > 1:
        mid = (lo + hi) // 2
        start = tl.load(blk_indptr + mid)
        lo = tl.where(start <= p, mid, lo)
        hi = tl.where(start <= p, hi, mid)
    return lo


@triton.jit
def int32_to_f32_biased(x):
    """int32 -> fp32 plus I2F_BIAS, by integer add + bitcast: two full-rate ALU ops instead of
    I2F, which runs at quarter rate on sm80/sm90 and would compete with exp2 for the MUFU-class
    pipe. Exact for |x| < 2**22; an INT8 dot over D <= 256 stays below 127 * 127 * 256 < 2**22.
    (The Hopper CUDA kernel converts with I2FP.F32.S32 instead, which ptxas emits for sm_90a and
    which measured faster there: csrc/sage_sm90_softmax.cuh. Not re-measured for Triton.)
    """
    return (x + 0x4B400000).to(tl.float32, bitcast=True)
