// Device code shared by the Hopper Sage kernels (sage_sm90.cu, sage_sm90_ws.cu): parameters,
// Q quantization, the CTA order, the row state of the online softmax, P's fragments and the
// output store. The softmax itself: sage_sm90_softmax.cuh (and sage_sm90_speculative.cuh); wgmma
// and shared-memory primitives: sage_sm90_wgmma.cuh. Method and layout notes: see the head of
// each kernel file.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

#include "sage_sm90_wgmma.cuh"

namespace {

#ifndef SAGE_PV_FP8
#define SAGE_PV_FP8 0
#endif
// FP16 P.V (SageAttention 1, the accurate default) or FP8 e4m3 P.V (SageAttention2): P scaled
// to e4m3's range (max 448), V per-channel scaled by the pre-pass and stored with its keys
// permuted inside each 32-key group so P's accumulator fragment feeds wgmma without shuffles,
// and two-level accumulation (each tile's P.V into a fresh accumulator, added in fp32).
constexpr bool kFp8Pv = SAGE_PV_FP8;
#ifndef SAGE_Q_SMOOTH
#define SAGE_Q_SMOOTH 0
#endif
// Q smoothing (SageAttention2, arXiv:2411.10958): the pre-pass writes each request's mean query
// q_mean (log2 units) and c_j = q_mean . k~_j per query head and key; Q is quantized after
// subtracting q_mean and every score gets c_j back: s_ij = qs_i ks_j (Q~_i . K~_j) + c_j. One
// FMA per score more (on the way to the row max, with a shared-memory load per key pair): 9-20 %
// of the warp-specialized kernel's speed; on LLM-like queries (per-channel bias) it takes FP16
// P.V's rel-L2 from ~1.7e-2 to ~1.2e-2 (bench/results/sm90-smooth-h100-2026-11-28).
constexpr bool kQSmooth = SAGE_Q_SMOOTH;
#ifndef SAGE_HEAD_DIM
#define SAGE_HEAD_DIM 128
#endif
constexpr int kHeadDim = SAGE_HEAD_DIM;  // D of Q, K and V
static_assert(kHeadDim == 64 || kHeadDim == 128, "built for head_dim 64 or 128");
constexpr int kBlockN = 128;   // keys per tile
// Bytes per INT8 Q or K row in shared memory (and in the BLOCKED copy): one 128-byte swizzle
// atom wide. With D = 64 only the first 64 bytes of a row hold data and Q.K^T issues two of its
// four k-steps: the 128-byte atoms and descriptors stay those of D = 128.
constexpr int kKRow = 128;
constexpr int kKeyBlock = 64;  // request alignment in the packed copies
constexpr int kQTileBytes = 64 * kKRow;               // one warpgroup's 64 INT8 query rows
constexpr int kKBytes = kBlockN * kKRow;              // 16 KB per stage
constexpr int kVBytes = kHeadDim * kBlockN * (kFp8Pv ? 1 : 2);  // per stage (fp16: two atoms)
constexpr int kVAtom = kHeadDim * 128;                // bytes of one 128-byte-wide V^T atom
constexpr int kPvSteps = kFp8Pv ? kBlockN / 32 : kBlockN / 16;  // wgmma k-steps of P.V
constexpr float kMaxLag = kFp8Pv ? 0.f : 8.f;         // how far the running max may lag
constexpr float kLog2PScale = kFp8Pv ? 8.807354922057604f : 0.f;  // log2(448): P in e4m3 range

struct Params {
  const void* q;             // [T, Hq, D] bf16/fp16, strided
  void* o;                   // [T, Hq, D] same dtype as q
  const int8_t* kq;          // [Hkv, n_pad, D], or [Hkv, n_pad, 128 bytes] (BLOCKED layout)
  const float* ks;           // [Hkv, n_pad], or [Hkv, n_pad / 2, 4] quads (BLOCKED layout)
  const void* vq;            // [Hkv, D, n_pad] fp16, or fp8 e4m3 with permuted keys
  const void* qo_indptr;     // [B + 1] int32 or int64
  const void* kv_indptr;     // [B + 1] prefix lengths' indptr, int32 or int64
  const int* blk_indptr;     // [B + 1] int32, first 64-key block of each request
  const int* tiles;          // [num_tiles, 2] int32 (request, query tile)
  long long stride_qn;        // strides in elements
  long long stride_qh;
  long long stride_on;
  long long stride_oh;
  float qk_scale;            // sm_scale * log2(e)
  int group;                 // query heads per kv head
  int n_pad;                 // keys per head in the packed copies
  int qo_indptr64;           // 1 when qo_indptr is int64 (SGLang releases mix int32 and int64)
  int kv_indptr64;           // 1 when kv_indptr is int64
  int out_bf16;              // 1 for bf16 q/o, 0 for fp16
  const float* vmax;         // [B, Hkv, D] |V| amax per channel (FP8 P.V only)
  const float* qmean;        // [B, Hq, D] mean query, log2 units (Q smoothing only)
  const float* cq;           // [Hq, n_pad] q_mean . k~ per key, log2 units (Q smoothing only)
};

__device__ __forceinline__ long long load_indptr(const void* p, int i, int is64) {
  return is64 ? reinterpret_cast<const long long*>(p)[i] : reinterpret_cast<const int*>(p)[i];
}

// Four floats in [-127.5, 127.5] -> four int8 rounded to nearest (ties to even, as F2I.RN), packed
// into a word. Adding 1.5 * 2^23 leaves a float's integer part in the low bits of the sum's
// mantissa (two's complement in its low byte), so each value costs one FFMA (x * inv + 1.5 * 2^23)
// and three PRMTs serve four: F2I runs at a quarter of the ALU rate, and the 64 per thread kept
// the tensor cores waiting at every CTA's start (bench/results/sm90-overhead-h200-2026-11-28).
__device__ __forceinline__ uint32_t int8x4_rn(const float* x, float inv) {
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23
  uint32_t u[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) u[i] = __float_as_uint(fmaf(x[i], inv, kRound));
  return __byte_perm(__byte_perm(u[0], u[1], 0x0040), __byte_perm(u[2], u[3], 0x0040), 0x5410);
}

// Q tile -> INT8 in swizzled shared memory, one scale per row. Two threads per row, D / 2
// channels each (16-byte loads); rows past the request are zeros. `tid`: the thread's index in
// its warpgroup. With Q smoothing the request's mean query (`b`: the request) is subtracted
// first. The grid is (query heads, tiles): gridDim.x is Hq.
template <typename InT>
__device__ __forceinline__ void quantize_q(const Params& p, long long q_row0, int rows, int b, int hq,
                                           uint8_t* sq, float* sqs, int tid) {
  constexpr int kHalf = kHeadDim / 2;  // channels per thread
  const int row = tid >> 1, half = tid & 1;
  // v holds q, or with Q smoothing q * qk_scale - q_mean; `unit` takes v to log2 units, folded
  // into the scale instead of one FMUL per channel.
  const float unit = kQSmooth ? 1.f : p.qk_scale;
  float v[kHalf];
  if (row < rows) {
    const InT* src = reinterpret_cast<const InT*>(p.q) + (q_row0 + row) * p.stride_qn +
                     (long long)hq * p.stride_qh + half * kHalf;
    const float4* qm =
        reinterpret_cast<const float4*>(p.qmean + ((long long)b * gridDim.x + hq) * kHeadDim + half * kHalf);
#pragma unroll
    for (int c = 0; c < kHalf / 8; ++c) {
      uint4 raw = reinterpret_cast<const uint4*>(src)[c];
      const InT* e = reinterpret_cast<const InT*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[c * 8 + i] = float(e[i]);
      if constexpr (kQSmooth) {
        const float4 m0 = qm[2 * c], m1 = qm[2 * c + 1];
        const float m[8] = {m0.x, m0.y, m0.z, m0.w, m1.x, m1.y, m1.z, m1.w};
#pragma unroll
        for (int i = 0; i < 8; ++i) v[c * 8 + i] = fmaf(v[c * 8 + i], p.qk_scale, -m[i]);
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < kHalf; ++i) v[i] = 0.f;
  }
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < kHalf; ++i) amax = fmaxf(amax, fabsf(v[i]));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffff, amax, 1));
  const float scale = fmaxf(amax * unit, 1e-12f) / 127.f;  // of the row in log2 units
  const float inv = unit / scale;
#pragma unroll
  for (int c = 0; c < kHalf / 16; ++c) {
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) w[k] = int8x4_rn(v + c * 16 + k * 4, inv);
    *reinterpret_cast<uint4*>(sq + swizzle(row, half * (kHalf / 16) + c)) = make_uint4(w[0], w[1], w[2], w[3]);
  }
  if (half == 0) sqs[row] = scale;
}

// Which (tile, query head) a CTA of the (Hq, tiles) grid takes. Blocks are dispatched x-fastest;
// block L takes query head g of kv head hk's GQA group at tile t, L = g + group * (t + T * hk):
// the CTAs of one kv head run together and share its K/V tiles in L2 (dispatching every head's
// tile 0 first spreads them over all kv heads: -5 % at 32K), and within a kv head the heaviest
// tiles go first (the plan lists tiles heaviest first), so light tiles fill the tail (+16 % at
// 2K, +9 % at 4K against dispatching each head's tiles in turn). H200, same call:
// bench/results/sm90-d64-h200-2026-11-28.
__device__ __forceinline__ int2 cta_tile_and_head(int group) {
  const int linear = blockIdx.x + gridDim.x * blockIdx.y;
  const int g = linear % group, rest = linear / group;
  return make_int2(rest % gridDim.y, (rest / gridDim.y) * group + g);
}

// Online-softmax state of this thread's two rows (row0, row0 + 8).
struct RowState {
  float m[2] = {-1e30f, -1e30f};  // running max (log2 units); may lag the true max by <= 8
  float l[2] = {0.f, 0.f};        // this thread's partial row sums
  float alpha[2] = {1.f, 1.f};    // O rescale owed for the last tile
  bool rescale = false;           // warp-uniform: whether O must be multiplied by alpha
};

__device__ __forceinline__ uint32_t pack_e4m3x4(float a, float b, float c, float d) {
  uint16_t lo, hi;  // cvt puts its first source in the upper byte
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(lo) : "f"(b), "f"(a));
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(hi) : "f"(d), "f"(c));
  return uint32_t(lo) | (uint32_t(hi) << 16);
}

// Once P.V of the previous tile is done: O (+= that tile's P.V, FP8 two-level accumulation)
// (*= alpha when owed), then P (floats in s) -> A fragments of the P.V wgmma.
// FP16 (m64n128k16): k-step ks covers keys 16ks..16ks+15 = accumulator n8 blocks 2ks, 2ks+1.
// FP8 (m64n128k32): k-step ks covers keys 32ks..32ks+31; a thread's A slots 4t..4t+3 take its
// accumulator keys 2t, 2t+1, 8+2t, 9+2t (and 16 more for slots 16+4t..): V^T is stored with
// that key order (the pre-pass's PERMUTE_V), so no shuffle is needed.
// N: O's columns per thread (64, or 68 with the row sums of wgmma_pv_f16_n136).
template <bool kAddPv, int N>
__device__ __forceinline__ void finish_tile(int (&s)[64], float (&o)[N], const float (&pv)[N],
                                            uint32_t (&pa)[kPvSteps][4], const RowState& st) {
  if constexpr (kAddPv) {
#pragma unroll
    for (int i = 0; i < N; ++i) o[i] += pv[i];
  }
  if (st.rescale) {  // warp-uniform and rare: a branch, not N multiplications by 1
#pragma unroll
    for (int i = 0; i < N; ++i) o[i] *= st.alpha[i >> 1 & 1];
  }
  const float* t = reinterpret_cast<const float*>(s);
#pragma unroll
  for (int ks = 0; ks < kPvSteps; ++ks) {
    if constexpr (kFp8Pv) {
      const float* u = t + 16 * ks;
      pa[ks][0] = pack_e4m3x4(u[0], u[1], u[4], u[5]);
      pa[ks][1] = pack_e4m3x4(u[2], u[3], u[6], u[7]);
      pa[ks][2] = pack_e4m3x4(u[8], u[9], u[12], u[13]);
      pa[ks][3] = pack_e4m3x4(u[10], u[11], u[14], u[15]);
    } else {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const __half2 h = __floats2half2_rn(t[8 * ks + 2 * r], t[8 * ks + 2 * r + 1]);
        pa[ks][r] = *reinterpret_cast<const uint32_t*>(&h);
      }
    }
  }
}

__device__ __forceinline__ void fence_pa(uint32_t (&pa)[kPvSteps][4]) {
#pragma unroll
  for (int i = 0; i < kPvSteps; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r) asm volatile("" : "+r"(pa[i][r])::"memory");
}

// Q.K^T of one tile. Descriptors of 1024-byte-aligned tiles: stepping k inside the swizzle atom
// adds bytes / 16 to the descriptor's start-address field, with no carry out of it.
__device__ __forceinline__ void issue_qk(int (&s)[64], uint64_t desc_q, uint64_t desc_k) {
#pragma unroll
  for (int kstep = 0; kstep < kHeadDim / 32; ++kstep)
    wgmma_qk_s8(s, desc_q + ((kstep * 32) >> 4), desc_k + ((kstep * 32) >> 4), kstep);
  wgmma_commit();
}

// P.V of one tile: FP16 accumulates into O; FP8 overwrites its own accumulator (two-level).
__device__ __forceinline__ void issue_pv(float (&acc)[64], uint32_t (&pa)[kPvSteps][4], uint64_t desc_v) {
#pragma unroll
  for (int kstep = 0; kstep < kPvSteps; ++kstep) {
    if constexpr (kFp8Pv)
      wgmma_pv_e4m3(acc, pa[kstep], desc_v + ((kstep * 32) >> 4), kstep);
    else
      wgmma_pv_f16(acc, pa[kstep], desc_v + (((kstep >> 2) * kVAtom + (kstep & 3) * 32) >> 4));
  }
  wgmma_commit();
}

// Two output values in q/o's dtype, packed as they are stored.
template <typename InT>
__device__ __forceinline__ uint32_t pack_out(float x, float y) {
  if constexpr (std::is_same<InT, __nv_bfloat16>::value) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

// O / l -> q/o dtype. With N == D / 2 + 4, l is O's column D (the P.V wgmma's row sums,
// wgmma_pv_f16_n136 / _n72), else this quad's partial sums in st.l.
template <typename InT, int N>
__device__ __forceinline__ void store_out(const Params& p, const float (&o)[N], const RowState& st,
                                          long long q_row0, int rows, int hq, int row0, int b, int hk) {
  constexpr int kCols = kHeadDim / 8;  // this thread's column pairs: 8j + 2(lane % 4), j < kCols
  static_assert(N == kHeadDim / 2 || N == kHeadDim / 2 + 4, "O fragment size");
  const int t4 = threadIdx.x & 3;
  float2 v_scale[kCols];  // FP8: V's per-channel scale (amax / 448) of this thread's columns
#pragma unroll
  for (int j = 0; j < kCols; ++j) v_scale[j] = make_float2(1.f, 1.f);
  if constexpr (kFp8Pv) {
    const float* vm = p.vmax + ((long long)b * (gridDim.x / p.group) + hk) * kHeadDim + 2 * t4;
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const float2 a = *reinterpret_cast<const float2*>(vm + 8 * j);
      v_scale[j] = make_float2(fmaxf(a.x, 1e-12f) / 448.f, fmaxf(a.y, 1e-12f) / 448.f);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l;
    if constexpr (N == kHeadDim / 2 + 4) {
      l = o[kHeadDim / 2 + 2 * r];
    } else {
      l = st.l[r];
      l += __shfl_xor_sync(0xffffffff, l, 1);
      l += __shfl_xor_sync(0xffffffff, l, 2);
    }
    const int row = row0 + 8 * r;
    if (row >= rows) continue;
    const float inv_l = 1.f / l;
    InT* dst = reinterpret_cast<InT*>(p.o) + (q_row0 + row) * p.stride_on + (long long)hq * p.stride_oh;
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const float x = o[4 * j + 2 * r] * inv_l * v_scale[j].x;
      const float y = o[4 * j + 2 * r + 1] * inv_l * v_scale[j].y;
      *reinterpret_cast<uint32_t*>(dst + 8 * j + 2 * t4) = pack_out<InT>(x, y);
    }
  }
}

// O / l of one warp's 16 rows (its fragments of an m64 accumulator with the row sums in column
// D, as wgmma_pv_f16_n136 / _n72 leave them) through `stage`, 2 KB of shared memory this warp
// alone uses: 64 columns per pass, written as 4-byte pairs into 128-byte rows whose 16-byte
// chunks are swizzled by row (conflict-free both ways), read back as 16-byte pieces that eight
// lanes store as one contiguous 128-byte run. 8 16-byte stores a thread at D = 128 instead of 32
// 4-byte ones, each of which touched eight rows. `warp_row0`: the warp's first row in the
// warpgroup's 64.
template <typename InT, int N>
__device__ __forceinline__ void store_out_staged(const Params& p, const float (&o)[N], long long q_row0, int rows,
                                                 int hq, int warp_row0, uint8_t* stage) {
  static_assert(N == kHeadDim / 2 + 4, "the row sums sit in O's column D");
  const int lane = threadIdx.x & 31, t4 = lane & 3, r_in = lane >> 2;
  const float inv_l[2] = {1.f / o[kHeadDim / 2], 1.f / o[kHeadDim / 2 + 2]};
  InT* out = reinterpret_cast<InT*>(p.o) + (q_row0 + warp_row0) * p.stride_on + (long long)hq * p.stride_oh;
#pragma unroll
  for (int pass = 0; pass < kHeadDim / 64; ++pass) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = r_in + 8 * r;
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const int j = 8 * pass + c;  // n8 block: columns 8j + 2 t4, + 1
        const uint32_t v = pack_out<InT>(o[4 * j + 2 * r] * inv_l[r], o[4 * j + 2 * r + 1] * inv_l[r]);
        *reinterpret_cast<uint32_t*>(stage + row * 128 + ((c ^ (row & 7)) << 4) + 4 * t4) = v;
      }
    }
    __syncwarp();
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      const int row = 4 * it + (lane >> 3), c = lane & 7;
      const uint4 v = *reinterpret_cast<const uint4*>(stage + row * 128 + ((c ^ (row & 7)) << 4));
      if (warp_row0 + row < rows)
        *reinterpret_cast<uint4*>(out + row * p.stride_on + 64 * pass + 8 * c) = v;
    }
    __syncwarp();
  }
}

}  // namespace
