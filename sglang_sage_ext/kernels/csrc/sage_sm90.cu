// SageAttention extend kernel for Hopper (sm_90a): INT8 Q.K^T and FP16 (or FP8) P.V on wgmma.
//
// Method: SageAttention (Zhang et al., ICLR 2025, arXiv:2410.02367): INT8 Q and K after
// smoothing K, FP16 P.V with fp32 accumulation (FP8 P.V below). Hopper structure after
// SageAttention2's sm90 kernel (Zhang et al., ICML 2025, arXiv:2411.10958) and FlashAttention-3
// (Shah et al., 2024, arXiv:2407.08608): one 128-thread warpgroup per CTA owns 64 query rows;
// K/V tiles of 128 keys stream through a two-stage cp.async ring; two CTAs per SM, and inside
// each, Q.K^T of the next tile and P.V of this one run on the tensor cores under the softmax
// (FA3's intra-warpgroup overlap); FlashAttention-4's conditional rescaling. Written for this
// project; no code was copied.
//
// Inputs are the packed copies that the Triton pre-pass (`paged_prep_kernel._kv_prep_kernel`)
// writes once per layer call: INT8 K [Hkv, n_pad, 128] with one fp32 scale per key (mean-
// smoothed), V transposed [Hkv, 128, n_pad] (FP16, or FP8 e4m3 + per-channel |V| amax); each
// request starts on a 64-key boundary and two zero blocks end the buffer, so a 128-key tile
// never reads past it. Q is quantized here (one scale per query row, sm_scale * log2(e) folded
// in). Semantics: SGLang's extend attention, bottom-right causal over a prefix: query i of a
// request sees keys j <= prefix_len + i.
//
// Shared-memory tiles use the 128-byte swizzle that wgmma descriptors read: row r of a tile with
// 128-byte rows keeps its 16-byte chunk c at chunk c ^ (r % 8); tiles are 1024-byte aligned.
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
#ifndef SAGE_WARPGROUPS
#define SAGE_WARPGROUPS 1
#endif
// Warpgroups per CTA, each owning 64 query rows (one wgmma M) and sharing the K/V tiles. 2 was
// measured slower than 1 (bench/results/sm90-kernel-h200-2026-11-27); 1 is the default.
constexpr int kWarpgroups = SAGE_WARPGROUPS;
constexpr int kBlockM = 64 * kWarpgroups;
constexpr int kBlockN = 128;   // keys per tile
constexpr int kHeadDim = 128;  // D; 128 bytes per INT8 row: one swizzle atom wide
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kKeyBlock = 64;  // request alignment in the packed copies
constexpr int kQBytes = kBlockM * kHeadDim;           // 8 KB per warpgroup
constexpr int kKRowsPerPass = kThreads / 8, kVRowsPerPass = kThreads / 16;
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

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

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

__device__ __forceinline__ void fence_regs(int (&r)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+r"(r[i])::"memory");
}
__device__ __forceinline__ void fence_regs(float (&r)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// Q tile -> INT8 in swizzled shared memory, one scale per row. Two threads per row, 64
// channels each (eight 16-byte loads); rows past the request are zeros.
template <typename InT>
__device__ __forceinline__ void quantize_q(const Params& p, long long q_row0, int rows, int hq,
                                           uint8_t* sq, float* sqs) {
  const int tid = threadIdx.x, row = tid >> 1, half = tid & 1;
  float v[64];
  if (row < rows) {
    const InT* src = reinterpret_cast<const InT*>(p.q) + (q_row0 + row) * p.stride_qn +
                     (long long)hq * p.stride_qh + half * 64;
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      uint4 raw = reinterpret_cast<const uint4*>(src)[c];
      const InT* e = reinterpret_cast<const InT*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[c * 8 + i] = float(e[i]) * p.qk_scale;
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

// Per-thread cp.async addresses of the K/V/scale tiles. Each thread copies the same chunk
// column of rows kKRowsPerPass (K) or kVRowsPerPass (V) apart, so every copy of a tile is a base plus a constant:
// one 64-bit address per tensor, advanced by whole tiles, and swizzle offsets fixed per thread.
struct TileLoader {
  const int8_t* k;
  const uint8_t* v;  // V^T row bytes (fp16 or fp8)
  const float* ks;
  long long v_row_step;  // bytes between the V^T rows one thread copies
  uint32_t k_dst, v_dst, ks_dst;

  // V^T rows are 128 keys: 128 bytes (fp8, copied like K) or 256 bytes (fp16, two atoms).
  static constexpr int kVRows = kFp8Pv ? kKRowsPerPass : kVRowsPerPass;
  static constexpr int kVElt = kFp8Pv ? 1 : 2;

  __device__ __forceinline__ TileLoader(const int8_t* kbase, const float* ksbase, const uint8_t* vbase,
                                        int n_pad, uint32_t sk, uint32_t sv, uint32_t sks) {
    const int tid = threadIdx.x;
    const int krow = tid >> 3, kc = tid & 7;
    const int vrow = kFp8Pv ? krow : tid >> 4, vc = kFp8Pv ? kc : tid & 15;
    k = kbase + krow * kHeadDim + kc * 16;
    v = vbase + (long long)vrow * n_pad * kVElt + vc * 16;
    ks = ksbase + (tid & 31) * 4;
    v_row_step = (long long)kVRows * n_pad * kVElt;
    k_dst = sk + swizzle(krow, kc);
    v_dst = sv + (vc >> 3) * kVAtom + swizzle(vrow, vc & 7);
    ks_dst = sks + (tid & 31) * 16;
  }

  // K tile `n` (keys 128n..128n+127) and its scales into K stage `stage`.
  __device__ __forceinline__ void load_k(int n, int stage) const {
    const int8_t* src = k + (long long)n * kBlockN * kHeadDim;
    const uint32_t dst = k_dst + stage * kKBytes;
#pragma unroll
    for (int i = 0; i < kBlockN / kKRowsPerPass; ++i)
      cp_async16(dst + i * kKRowsPerPass * 128, src + i * kKRowsPerPass * kHeadDim);
    if (threadIdx.x < 32) cp_async16(ks_dst + stage * kBlockN * 4, ks + n * kBlockN);
  }

  // V^T tile `n` (128 channel rows x 128 keys) into V stage `stage`.
  __device__ __forceinline__ void load_v(int n, int stage) const {
    const uint8_t* src = v + n * kBlockN * kVElt;
    const uint32_t dst = v_dst + stage * kVBytes;
#pragma unroll
    for (int i = 0; i < kHeadDim / kVRows; ++i) cp_async16(dst + i * kVRows * 128, src + i * v_row_step);
  }
};

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

// Scores of one tile -> unnormalised probabilities in place (s reinterpreted as float). The
// running max moves only when some row of the warp grew by more than 8 (log2 units), so O is
// rescaled rarely (FlashAttention-4's conditional rescaling); P <= 2^8 stays exact in fp16.
template <bool Masked>
__device__ __forceinline__ void softmax_scores(int (&s)[64], uint32_t sks_addr, const float (&qs)[2],
                                               RowState& st, int n0, int limit0) {
  const int t4 = threadIdx.x & 3;
  float* t = reinterpret_cast<float*>(s);
  // Four partial maxima / sums per row: short dependency chains (two warps per scheduler
  // cannot hide a 32-long chain of dependent FMNMX or FADD).
  float mx4[2][4];
#pragma unroll
  for (int i = 0; i < 8; ++i) mx4[i >> 2][i & 3] = -INFINITY;
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    float2 ks2;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n"
                 : "=f"(ks2.x), "=f"(ks2.y)
                 : "r"(sks_addr + (8 * j + 2 * t4) * 4));
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float ks = (e & 1) ? ks2.y : ks2.x;
      float x = fmaf(int_as_biased_float(s[4 * j + e]), ks, -12582912.f * ks);
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
    m_new[r] = fmaxf(st.m[r], mx[r] * qs[r]);
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
    t[i] = exp2f(fmaf(t[i], qs[i >> 1 & 1], neg_m[i >> 1 & 1]));
    l4[i >> 1 & 1][(i >> 2) & 3] += t[i];
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) st.l[r] += (l4[r][0] + l4[r][1]) + (l4[r][2] + l4[r][3]);
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
template <bool kAddPv>
__device__ __forceinline__ void finish_tile(int (&s)[64], float (&o)[64], const float (&pv)[64],
                                            uint32_t (&pa)[kPvSteps][4], const RowState& st) {
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    float x = o[i];
    if constexpr (kAddPv) x += pv[i];
    if (st.rescale) x *= st.alpha[i >> 1 & 1];
    o[i] = x;
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

__device__ __forceinline__ void issue_qk(int (&s)[64], uint64_t desc_q, uint32_t k_addr) {
#pragma unroll
  for (int kstep = 0; kstep < kHeadDim / 32; ++kstep)
    wgmma_qk_s8(s, desc_q + ((kstep * 32) >> 4), sw128_desc(k_addr + kstep * 32), kstep);
  wgmma_commit();
}

// P.V of one tile: FP16 accumulates into O; FP8 overwrites its own accumulator (two-level).
__device__ __forceinline__ void issue_pv(float (&acc)[64], uint32_t (&pa)[kPvSteps][4], uint32_t v_addr) {
#pragma unroll
  for (int kstep = 0; kstep < kPvSteps; ++kstep) {
    if constexpr (kFp8Pv)
      wgmma_pv_e4m3(acc, pa[kstep], sw128_desc(v_addr + kstep * 32), kstep);
    else
      wgmma_pv_f16(acc, pa[kstep], sw128_desc(v_addr + (kstep >> 2) * kVAtom + (kstep & 3) * 32));
  }
  wgmma_commit();
}

__device__ __forceinline__ void scores(int (&s)[64], uint32_t sks, const float (&qs)[2], RowState& st,
                                       int n, int n_full, int limit0) {
  if (n < n_full)
    softmax_scores<false>(s, sks, qs, st, n * kBlockN, limit0);
  else
    softmax_scores<true>(s, sks, qs, st, n * kBlockN, limit0);
}

template <typename InT>
__device__ __forceinline__ void store_out(const Params& p, const float (&o)[64], const RowState& st,
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
    float l = st.l[r];
    l += __shfl_xor_sync(0xffffffff, l, 1);
    l += __shfl_xor_sync(0xffffffff, l, 2);
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

// Software pipeline of one CTA (FlashAttention-3's intra-warpgroup overlap): iteration n issues
// Q.K^T of tile n+1 and P.V of tile n back to back, then computes the softmax of tile n+1 while
// P.V(n) still runs on the tensor cores. cp.async brings K(n+2) and V(n+1) meanwhile.
template <typename InT>
__device__ __forceinline__ void attention(const Params& p) {
  extern __shared__ uint8_t smem_raw[];
  const uint32_t base = smem_addr(smem_raw);
  uint8_t* smem = smem_raw + ((1024 - (base & 1023)) & 1023);
  uint8_t* sq = smem;
  const uint32_t sk = smem_addr(sq + kQBytes), sv = sk + 2 * kKBytes, sks = sv + 2 * kVBytes;
  float* sqs = reinterpret_cast<float*>(smem + kQBytes + 2 * kKBytes + 2 * kVBytes + 2 * kBlockN * 4);

  const int tile = blockIdx.x, hq = blockIdx.y;
  const int b = p.tiles[2 * tile], pid_m = p.tiles[2 * tile + 1];
  const long long q_start = load_indptr(p.qo_indptr, b, p.qo_indptr64);
  const int ext_len = int(load_indptr(p.qo_indptr, b + 1, p.qo_indptr64) - q_start);
  if (pid_m * kBlockM >= ext_len) return;
  const int pre_len = int(load_indptr(p.kv_indptr, b + 1, p.kv_indptr64) - load_indptr(p.kv_indptr, b, p.kv_indptr64));
  const int kv_len = pre_len + ext_len;
  const int hk = hq / p.group;
  const long long key0 = (long long)p.blk_indptr[b] * kKeyBlock;
  const TileLoader ld(p.kq + ((long long)hk * p.n_pad + key0) * kHeadDim, p.ks + (long long)hk * p.n_pad + key0,
                      reinterpret_cast<const uint8_t*>(p.vq) + ((long long)hk * kHeadDim * p.n_pad + key0) * TileLoader::kVElt,
                      p.n_pad, sk, sv, sks);

  // Keys below full_end are visible to every row of the tile; later tiles are masked.
  const int n_full = ((pre_len + pid_m * kBlockM) / kBlockN);
  const int causal_end = min(kv_len, pre_len + (pid_m + 1) * kBlockM);
  const int n_tiles = (causal_end + kBlockN - 1) / kBlockN;

  ld.load_k(0, 0);
  ld.load_v(0, 0);
  if (n_tiles > 1) ld.load_k(1, 1);
  cp_async_commit();
  const long long q_row0 = q_start + (long long)pid_m * kBlockM;
  const int rows = min(kBlockM, ext_len - pid_m * kBlockM);
  quantize_q<InT>(p, q_row0, rows, hq, sq, sqs);
  cp_async_wait<0>();
  fence_async_smem();
  __syncthreads();

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int row0 = warp * 16 + (lane >> 2);  // this thread's rows: row0 and row0 + 8
  const int wg = warp >> 2;                   // its warpgroup: rows 64wg..64wg+63
  const float qs[2] = {sqs[row0], sqs[row0 + 8]};
  const int limit0 = pre_len + pid_m * kBlockM + row0;
  const uint64_t desc_q = sw128_desc(smem_addr(sq) + wg * 64 * kHeadDim);
  float o[64];
  int s[64];
  uint32_t pa[kPvSteps][4];
#if SAGE_PV_FP8
  float pv[64];  // P.V of one tile (two-level accumulation)
#define PV_ACC pv
#else
#define PV_ACC o  // FP16 P.V accumulates straight into O
#endif
  RowState st;
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.f;

  wgmma_fence();
  issue_qk(s, desc_q, sk);
  wgmma_wait<0>();
  fence_regs(s);
  scores(s, sks, qs, st, 0, n_full, limit0);
  finish_tile<false>(s, o, o, pa, st);

  // Steady state: tiles 0..n_tiles-2 each overlap P.V(n) with Q.K^T + softmax of tile n+1.
  // No wgmma sits under a branch: ptxas serialises wgmma whose groups it cannot count.
  for (int n = 0; n + 1 < n_tiles; ++n) {
    __syncthreads();  // every warp is done with K(n) and V(n-1): their stages take new tiles
    if (n + 2 < n_tiles) ld.load_k(n + 2, n & 1);
    ld.load_v(n + 1, (n + 1) & 1);
    cp_async_commit();
    cp_async_wait<1>();  // K(n+1) and V(n) have landed
    fence_async_smem();
    __syncthreads();
    fence_regs(PV_ACC);
    fence_pa(pa);
    wgmma_fence();
    issue_qk(s, desc_q, sk + ((n + 1) & 1) * kKBytes);
    issue_pv(PV_ACC, pa, sv + (n & 1) * kVBytes);
    wgmma_wait<1>();  // Q.K^T(n+1) done; P.V(n) may still run
    fence_regs(s);
    scores(s, sks + ((n + 1) & 1) * kBlockN * 4, qs, st, n + 1, n_full, limit0);
    wgmma_wait<0>();
    fence_regs(PV_ACC);
    fence_pa(pa);
    finish_tile<kFp8Pv>(s, o, PV_ACC, pa, st);
  }
  cp_async_wait<0>();  // V(n_tiles-1)
  fence_async_smem();
  __syncthreads();
  fence_regs(PV_ACC);
  fence_pa(pa);
  wgmma_fence();
  issue_pv(PV_ACC, pa, sv + ((n_tiles - 1) & 1) * kVBytes);
  wgmma_wait<0>();
  fence_regs(PV_ACC);
#if SAGE_PV_FP8
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] += pv[i];
#endif
#undef PV_ACC
  store_out<InT>(p, o, st, q_row0, rows, hq, row0, b, hk);
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads, kWarpgroups == 1 ? 2 : 1) sage_sm90_fwd(const __grid_constant__ Params p) {
  if (p.out_bf16)
    attention<__nv_bfloat16>(p);
  else
    attention<__half>(p);
}
