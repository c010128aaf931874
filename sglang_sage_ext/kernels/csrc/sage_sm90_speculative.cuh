// Speculative online softmax of the warp-specialized Hopper kernel (FP16 P.V, sage_sm90_ws.cu).
//
// softmax_scores (sage_sm90_softmax.cuh) finds a tile's row max before its first exp2: the max
// chain, two shuffles and a vote stand between the dequantization and a burst of 64 MUFU.EX2,
// so a warp either waits on the ALU pipe or on the MUFU pipe, never on both at once. Here every
// exp2 uses the running max of the earlier tiles, which the lag of 8 (FlashAttention-4's
// conditional rescaling, see RowState) lets stay put on almost every tile, and the tile's max
// chain runs beside the exps. Only when some row of the warp grew past the lag are the tile's P
// values multiplied by alpha = 2^(m_old - m_new), as softmax_scores would have computed them. A
// row whose max jumped by more than kMaxSpeculativeJump may have overflowed fp32 in exp2; then
// the warp recomputes its integer scores from the Q and K tiles in shared memory (bit-exact with
// the wgmma's) and takes the exact path.
#pragma once
#include "sage_sm90_softmax.cuh"

namespace {

// Where it pays (attention launch against softmax_scores in the same call, H200,
// bench/results/sm90-i2fp-h200-2026-11-28): head_dim 64 +5 % (4K) / +10 % (16K); the Q-smoothing
// build, whose softmax is longer (one more FMA and a load per key pair), +5..+9 % at head_dim
// 128 and +24..+26 % at 64. Plain head_dim 128 loses 0.5-3 %, so that build keeps
// softmax_scores. SAGE_SPECULATIVE=0/1 overrides (A/B: bench/variants/ab_*.cu).
#ifdef SAGE_SPECULATIVE
constexpr bool kSpeculative = SAGE_SPECULATIVE;
#else
constexpr bool kSpeculative = kHeadDim == 64 || kQSmooth;
#endif
constexpr float kMaxSpeculativeJump = 100.f;      // log2 units; exp2 overflows fp32 at 128

__device__ __forceinline__ uint4 lds128(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}

__device__ __forceinline__ int dot16_s8(uint4 a, uint4 b, int acc) {
  acc = __dp4a(int(a.x), int(b.x), acc);
  acc = __dp4a(int(a.y), int(b.y), acc);
  acc = __dp4a(int(a.z), int(b.z), acc);
  return __dp4a(int(a.w), int(b.w), acc);
}

// This thread's 64 INT32 scores of a tile (rows row0, row0 + 8 of the warpgroup's Q tile; keys
// 8j + 2(lane % 4) and the next), from the swizzled INT8 tiles. The rare path: ~2K dp4a.
__device__ __forceinline__ void recompute_scores(int (&s)[64], uint32_t q_tile, uint32_t k_tile, int row0) {
  const int t4 = threadIdx.x & 3;
#pragma unroll
  for (int i = 0; i < 64; ++i) s[i] = 0;
#pragma unroll 1
  for (int c = 0; c < kHeadDim / 16; ++c) {
    const uint4 qa = lds128(q_tile + swizzle(row0, c)), qb = lds128(q_tile + swizzle(row0 + 8, c));
#pragma unroll
    for (int j = 0; j < 16; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const uint4 k = lds128(k_tile + swizzle(8 * j + 2 * t4 + e, c));
        s[4 * j + e] = dot16_s8(qa, k, s[4 * j + e]);
        s[4 * j + 2 + e] = dot16_s8(qb, k, s[4 * j + 2 + e]);
      }
    }
  }
}

// Where a warp's scores came from, for the recovery path: the Q and K tiles (recompute_scores)
// and the tile's key-scale quads, read again from shared memory there so that the register copy
// of the scales can die before the exps (keeping it alive for the rare path spilled the loop).
struct ScoreTiles {
  uint32_t q_tile, k_tile, quads;
  int row0;
};

// Scores of one tile -> unnormalised probabilities in place, as softmax_scores<Masked, false>
// computes them (same running max, same rescale decisions), with the exps issued before the
// tile's row max is known.
template <bool Masked, typename KeyScales>
__device__ __forceinline__ void softmax_speculative(int (&s)[64], const KeyScales& ks2, SmemKeyScales cq2,
                                                    const float (&qs)[2], RowState& st, int n0, int limit0,
                                                    ScoreTiles tiles) {
  const int t4 = threadIdx.x & 3;
  float* t = reinterpret_cast<float*>(s);
  const float neg_m[2] = {-st.m[0], -st.m[1]};
  float mx4[2][4];
#pragma unroll
  for (int i = 0; i < 8; ++i) mx4[i >> 2][i & 3] = -INFINITY;
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const float2 sc = ks2.get(j);
    const float2 c = kQSmooth ? cq2.get(j) : make_float2(0.f, 0.f);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e >> 1;
      const float x = finished_score<Masked>(s[4 * j + e], sc, c, qs, e, n0 + 8 * j + 2 * t4, limit0);
      mx4[r][j & 3] = fmaxf(mx4[r][j & 3], x);
      t[4 * j + e] = exp2f(kQSmooth ? x + neg_m[r] : fmaf(x, qs[r], neg_m[r]));
    }
  }
  bool grow = false, jump = false;
  float m_new[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = fmaxf(fmaxf(mx4[r][0], mx4[r][1]), fmaxf(mx4[r][2], mx4[r][3]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
    m_new[r] = fmaxf(st.m[r], kQSmooth ? mx : mx * qs[r]);
    grow |= m_new[r] > st.m[r] + kMaxLag;
    jump |= m_new[r] > st.m[r] + kMaxSpeculativeJump;
  }
  st.rescale = __any_sync(0xffffffff, grow);
  if (!st.rescale) return;
  if (__any_sync(0xffffffff, jump)) {  // some P may be inf: start over from the integer scores
    recompute_scores(s, tiles.q_tile, tiles.k_tile, tiles.row0);
    softmax_scores<Masked, false>(s, SmemKeyQuads{tiles.quads}, cq2, qs, st, n0, limit0);
    return;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    st.alpha[r] = exp2f(st.m[r] - m_new[r]);
    st.m[r] = m_new[r];
    st.l[r] *= st.alpha[r];
  }
#pragma unroll
  for (int i = 0; i < 64; ++i) t[i] *= st.alpha[i >> 1 & 1];
}

template <typename KeyScales>
__device__ __forceinline__ void scores_speculative(int (&s)[64], const KeyScales& ks, SmemKeyScales cq,
                                                   const float (&qs)[2], RowState& st, int n, int n_full,
                                                   int limit0, ScoreTiles tiles) {
  if (n < n_full)
    softmax_speculative<false>(s, ks, cq, qs, st, n * kBlockN, limit0, tiles);
  else
    softmax_speculative<true>(s, ks, cq, qs, st, n * kBlockN, limit0, tiles);
}

}  // namespace
