// The online softmax of one score tile for the Hopper Sage kernels: INT32 scores -> floats
// with per-key scales (dequant_score), the key scales' layouts in shared memory and registers,
// and softmax_scores, which finds a tile's row max before its exps (the speculative variant:
// sage_sm90_speculative.cuh). Parameters and the rest of the pipeline: sage_sm90_common.cuh.
#pragma once
#include "sage_sm90_common.cuh"

namespace {

// Score e of a key pair in log2 units (before the query scale): I2FP.F32.S32 and one FMUL by
// the key's scale. I2FP runs on the ALU pipe, not at MUFU's quarter rate as Triton's I2F does,
// so the Triton kernels' biased-float trick (an integer add into 1.5 * 2^23, an FFMA with a bias
// term per key) measured slower here, and it rounded where I2FP is exact
// (bench/results/sm90-i2fp-h200-2026-11-28).
__device__ __forceinline__ float dequant_score(int s, float2 scales, int e) {
  return __int2float_rn(s) * ((e & 1) ? scales.y : scales.x);
}

// Score e (rows row0 + 8 (e >> 1), key key0 + (e & 1)) of a key pair, finished as both softmax
// variants take it: dequantized; with Q smoothing times qs plus c_j (`c`: the pair's c_j);
// -inf where the bottom-right causal mask hides the key from the row (`limit0`: row0's last
// visible key).
template <bool Masked>
__device__ __forceinline__ float finished_score(int s, float2 scales, float2 c, const float (&qs)[2], int e,
                                                int key0, int limit0) {
  float x = dequant_score(s, scales, e);
  if constexpr (kQSmooth) x = fmaf(x, qs[e >> 1], (e & 1) ? c.y : c.x);
  if (Masked && key0 + (e & 1) > limit0 + ((e >> 1) << 3)) x = -INFINITY;
  return x;
}

// This thread's 32 key scales of a tile (columns 8j + 2(lane % 4) and the next), read from
// shared memory where each pair is used (pinned there, which keeps register pressure down).
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

// The same pairs in the BLOCKED layout's quads (ks[2i], ks[2i+1], then two bias terms that the
// pre-pass still writes and no kernel reads), one 16-byte quad per pair.
struct SmemKeyQuads {
  uint32_t addr;  // the tile's first quad
  __device__ __forceinline__ float2 get(int j) const {
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n"
                 : "=f"(v.x), "=f"(v.y)
                 : "r"(addr + (4 * j + (threadIdx.x & 3)) * 16));
    return v;
  }
};

// ... or loaded into registers ahead of time, off the softmax's path (measured 2-5 % faster).
struct RegKeyScales {
  float2 v[16];
  __device__ __forceinline__ void load(SmemKeyQuads from) {
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
    const float2 sc = ks2.get(j);  // two keys' scales
    const float2 c = kQSmooth ? cq2.get(j) : make_float2(0.f, 0.f);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float x = finished_score<Masked>(s[4 * j + e], sc, c, qs, e, n0 + 8 * j + 2 * t4, limit0);
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

template <bool kSumP, typename KeyScales>
__device__ __forceinline__ void scores(int (&s)[64], const KeyScales& ks, SmemKeyScales cq,
                                       const float (&qs)[2], RowState& st, int n, int n_full, int limit0) {
  if (n < n_full)
    softmax_scores<false, kSumP>(s, ks, cq, qs, st, n * kBlockN, limit0);
  else
    softmax_scores<true, kSumP>(s, ks, cq, qs, st, n * kBlockN, limit0);
}

}  // namespace
