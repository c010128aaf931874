// Device code shared by the Hopper Sage kernels (sage_sm90.cu, sage_sm90_ws.cu): parameters,
// wgmma and shared-memory primitives, Q quantization, the online softmax of one score tile and
// the output store. Method and layout notes: see the head of each kernel file.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

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
constexpr int kBlockN = 128;   // keys per tile
constexpr int kHeadDim = 128;  // D; 128 bytes per INT8 row: one swizzle atom wide
constexpr int kKeyBlock = 64;  // request alignment in the packed copies
constexpr int kQTileBytes = 64 * kHeadDim;            // one warpgroup's 64 INT8 query rows
constexpr int kKBytes = kBlockN * kHeadDim;           // 16 KB per stage
constexpr int kVBytes = kHeadDim * kBlockN * (kFp8Pv ? 1 : 2);  // per stage (fp16: two atoms)
constexpr int kVAtom = kHeadDim * 128;                // bytes of one 128-byte-wide V^T atom
constexpr int kPvSteps = kFp8Pv ? kBlockN / 32 : kBlockN / 16;  // wgmma k-steps of P.V
constexpr float kMaxLag = kFp8Pv ? 0.f : 8.f;         // how far the running max may lag
constexpr float kLog2PScale = kFp8Pv ? 8.807354922057604f : 0.f;  // log2(448): P in e4m3 range

struct Params {
  const void* q;             // [T, Hq, D] bf16/fp16, strided
  void* o;                   // [T, Hq, D] same dtype as q
  const int8_t* kq;          // [Hkv, n_pad, D]
  const float* ks;           // [Hkv, n_pad]
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

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// wgmma matrix descriptor of a K-major operand in 128-byte-swizzled shared memory: start address,
// stride 1024 bytes between 8-row groups, layout type 1 (SWIZZLE_128B); the leading byte offset
// is unused for swizzled K-major layouts. Stepping along K inside the atom adds bytes to start.
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr) {
  uint64_t desc = (addr & 0x3FFFF) >> 4;
  desc |= uint64_t(1) << 16;
  desc |= uint64_t(1024 >> 4) << 32;
  desc |= uint64_t(1) << 62;
  return desc;
}

__device__ __forceinline__ uint32_t swizzle(int row, int chunk) {
  return row * 128 + ((chunk ^ (row & 7)) << 4);
}

// Shared memory written by the generic proxy (cp.async, st.shared) and read next by wgmma.
__device__ __forceinline__ void fence_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }

// D (64 x 128, s32) = or += A (64 x 32 int8, smem) * B (32 x 128 int8, smem, K-major).
__device__ __forceinline__ void wgmma_qk_s8(int (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D (64 x 128, f32) = or += A (64 x 32 e4m3, registers) * B (32 x 128 e4m3, smem, K-major).
__device__ __forceinline__ void wgmma_pv_e4m3(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}

// D (64 x 128, f32) += A (64 x 16 fp16, registers) * B (16 x 128 fp16, smem, K-major).
__device__ __forceinline__ void wgmma_pv_f16(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// D (64 x 136, f32) += A (64 x 16 fp16, registers) * B (16 x 136 fp16, smem, K-major): P.V with
// eight extra B rows of ones, so that columns 128..135 of D accumulate the row sums of P.
__device__ __forceinline__ void wgmma_pv_f16_n136(float (&d)[68], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %73, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n136k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67}, {%68, %69, %70, %71}, %72, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

__device__ __forceinline__ void fence_regs(int (&r)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+r"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// Q tile -> INT8 in swizzled shared memory, one scale per row. Two threads per row, 64
// channels each (eight 16-byte loads); rows past the request are zeros. `tid`: the thread's
// index in its warpgroup.
// With Q smoothing the request's mean query (`b`: the request) is subtracted first.
template <typename InT>
__device__ __forceinline__ void quantize_q(const Params& p, long long q_row0, int rows, int b, int hq,
                                           uint8_t* sq, float* sqs, int tid) {
  const int row = tid >> 1, half = tid & 1;
  float v[64];
  if (row < rows) {
    const InT* src = reinterpret_cast<const InT*>(p.q) + (q_row0 + row) * p.stride_qn +
                     (long long)hq * p.stride_qh + half * 64;
    const float4* qm = reinterpret_cast<const float4*>(p.qmean + ((long long)b * gridDim.y + hq) * kHeadDim + half * 64);
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      uint4 raw = reinterpret_cast<const uint4*>(src)[c];
      const InT* e = reinterpret_cast<const InT*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[c * 8 + i] = float(e[i]) * p.qk_scale;
      if constexpr (kQSmooth) {
        const float4 m0 = qm[2 * c], m1 = qm[2 * c + 1];
        const float m[8] = {m0.x, m0.y, m0.z, m0.w, m1.x, m1.y, m1.z, m1.w};
#pragma unroll
        for (int i = 0; i < 8; ++i) v[c * 8 + i] -= m[i];
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < 64; ++i) v[i] = 0.f;
  }
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 64; ++i) amax = fmaxf(amax, fabsf(v[i]));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffff, amax, 1));
  const float scale = fmaxf(amax, 1e-12f) / 127.f;
  const float inv = 1.f / scale;
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    uint32_t w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      uint32_t packed = 0;
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        int x = __float2int_rn(v[c * 16 + k * 4 + b] * inv);
        packed |= (uint32_t(x) & 0xFF) << (8 * b);
      }
      w[k] = packed;
    }
    *reinterpret_cast<uint4*>(sq + swizzle(row, half * 4 + c)) = make_uint4(w[0], w[1], w[2], w[3]);
  }
  if (half == 0) sqs[row] = scale;
}

__device__ __forceinline__ float int_as_biased_float(int x) {
  return __int_as_float(x + 0x4B400000);  // == float(x) + 12582912 for |x| < 2^22
}

// Online-softmax state of this thread's two rows (row0, row0 + 8).
struct RowState {
  float m[2] = {-1e30f, -1e30f};  // running max (log2 units); may lag the true max by <= 8
  float l[2] = {0.f, 0.f};        // this thread's partial row sums
  float alpha[2] = {1.f, 1.f};    // O rescale owed for the last tile
  bool rescale = false;           // warp-uniform: whether O must be multiplied by alpha
};

// This thread's 32 key scales of a tile (columns 8j + 2(lane % 4) and the next), read from
// shared memory where each pair is used (pinned there, which keeps register pressure down)...
struct SmemKeyScales {
  uint32_t addr;  // the tile's first scale
  __device__ __forceinline__ float2 get(int j) const {
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n"
                 : "=f"(v.x), "=f"(v.y)
                 : "r"(addr + (8 * j + 2 * (threadIdx.x & 3)) * 4));
    return v;
  }
};

// ... or loaded into registers ahead of time.
struct RegKeyScales {
  float2 v[16];
  __device__ __forceinline__ void load(SmemKeyScales from) {
#pragma unroll
    for (int j = 0; j < 16; ++j) v[j] = from.get(j);
  }
  __device__ __forceinline__ float2 get(int j) const { return v[j]; }
};

// Scores of one tile -> unnormalised probabilities in place (s reinterpreted as float). The
// running max moves only when some row of the warp grew by more than 8 (log2 units), so O is
// rescaled rarely (FlashAttention-4's conditional rescaling); P <= 2^8 stays exact in fp16.
// kSumP: this thread sums its P values into st.l (else the P.V wgmma sums them, see
// wgmma_pv_f16_n136, and st.l stays unused).
// With Q smoothing, `cq2` holds the tile's c_j (same layout as the key scales) and the scores
// are finished here, x = x qs + c_j; otherwise qs is applied inside the exponent's FMA.
template <bool Masked, bool kSumP, typename KeyScales>
__device__ __forceinline__ void softmax_scores(int (&s)[64], const KeyScales& ks2, SmemKeyScales cq2,
                                               const float (&qs)[2], RowState& st, int n0, int limit0) {
  const int t4 = threadIdx.x & 3;
  float* t = reinterpret_cast<float*>(s);
  // Four partial maxima / sums per row: short dependency chains (two warps per scheduler
  // cannot hide a 32-long chain of dependent FMNMX or FADD).
  float mx4[2][4];
#pragma unroll
  for (int i = 0; i < 8; ++i) mx4[i >> 2][i & 3] = -INFINITY;
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const float2 pair = ks2.get(j);
    const float2 c = kQSmooth ? cq2.get(j) : make_float2(0.f, 0.f);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float ks = (e & 1) ? pair.y : pair.x;
      float x = fmaf(int_as_biased_float(s[4 * j + e]), ks, -12582912.f * ks);
      if constexpr (kQSmooth) x = fmaf(x, qs[e >> 1], (e & 1) ? c.y : c.x);
      if (Masked) {
        const int key = n0 + 8 * j + 2 * t4 + (e & 1);
        if (key > limit0 + ((e >> 1) << 3)) x = -INFINITY;
      }
      t[4 * j + e] = x;
      mx4[e >> 1][j & 3] = fmaxf(mx4[e >> 1][j & 3], x);
    }
  }
  float mx[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) mx[r] = fmaxf(fmaxf(mx4[r][0], mx4[r][1]), fmaxf(mx4[r][2], mx4[r][3]));
  bool grow = false;
  float m_new[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 2));
    m_new[r] = fmaxf(st.m[r], kQSmooth ? mx[r] : mx[r] * qs[r]);
    grow |= m_new[r] > st.m[r] + kMaxLag;
  }
  st.rescale = __any_sync(0xffffffff, grow);
  float neg_m[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (st.rescale) {
      st.alpha[r] = exp2f(st.m[r] - m_new[r]);
      st.m[r] = m_new[r];
      st.l[r] *= st.alpha[r];
    }
    neg_m[r] = kLog2PScale - st.m[r];
  }
  float l4[2][4] = {};
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    t[i] = exp2f(kQSmooth ? t[i] + neg_m[i >> 1 & 1] : fmaf(t[i], qs[i >> 1 & 1], neg_m[i >> 1 & 1]));
    if constexpr (kSumP) l4[i >> 1 & 1][(i >> 2) & 3] += t[i];
  }
  if constexpr (kSumP) {
#pragma unroll
    for (int r = 0; r < 2; ++r) st.l[r] += (l4[r][0] + l4[r][1]) + (l4[r][2] + l4[r][3]);
  }
}

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

template <bool kSumP, typename KeyScales>
__device__ __forceinline__ void scores(int (&s)[64], const KeyScales& ks, SmemKeyScales cq,
                                       const float (&qs)[2], RowState& st, int n, int n_full, int limit0) {
  if (n < n_full)
    softmax_scores<false, kSumP>(s, ks, cq, qs, st, n * kBlockN, limit0);
  else
    softmax_scores<true, kSumP>(s, ks, cq, qs, st, n * kBlockN, limit0);
}

// O / l -> q/o dtype. With N == 68, l is O's column 128 (the wgmma's row sums), else this
// quad's partial sums in st.l.
template <typename InT, int N>
__device__ __forceinline__ void store_out(const Params& p, const float (&o)[N], const RowState& st,
                                          long long q_row0, int rows, int hq, int row0, int b, int hk) {
  const int t4 = threadIdx.x & 3;
  float2 v_scale[16];  // FP8: V's per-channel scale (amax / 448) of this thread's 32 columns
#pragma unroll
  for (int j = 0; j < 16; ++j) v_scale[j] = make_float2(1.f, 1.f);
  if constexpr (kFp8Pv) {
    const float* vm = p.vmax + ((long long)b * (gridDim.y / p.group) + hk) * kHeadDim + 2 * t4;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const float2 a = *reinterpret_cast<const float2*>(vm + 8 * j);
      v_scale[j] = make_float2(fmaxf(a.x, 1e-12f) / 448.f, fmaxf(a.y, 1e-12f) / 448.f);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l;
    if constexpr (N == 68) {
      l = o[64 + 2 * r];
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
    for (int j = 0; j < 16; ++j) {
      const float x = o[4 * j + 2 * r] * inv_l * v_scale[j].x;
      const float y = o[4 * j + 2 * r + 1] * inv_l * v_scale[j].y;
      if constexpr (std::is_same<InT, __nv_bfloat16>::value)
        *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j + 2 * t4) = __floats2bfloat162_rn(x, y);
      else
        *reinterpret_cast<__half2*>(dst + 8 * j + 2 * t4) = __floats2half2_rn(x, y);
    }
  }
}

}  // namespace
