// Warp-specialized SageAttention extend kernel for Hopper (sm_90a), FP16 P.V, optionally with
// Q smoothing (SAGE_Q_SMOOTH, see sage_sm90_common.cuh).
//
// Method: SageAttention (Zhang et al., ICLR 2025, arXiv:2410.02367): INT8 Q and K after
// smoothing K, FP16 P.V with fp32 accumulation. Structure after FlashAttention-3 (Shah et al.,
// 2024, arXiv:2407.08608), written for this project (no code copied):
// * one CTA of three warpgroups per SM owns 128 query rows of one head: a producer warp streams
//   K and V tiles with the Tensor Memory Accelerator (one bulk copy per tile, completion on an
//   mbarrier), and two consumer warpgroups of 64 rows each share every tile;
// * the consumers take turns on the tensor cores (FA3's ping-pong, two named barriers): one
//   issues Q.K^T(n+1) and P.V(n) while the other runs its softmax;
// * inside each consumer, the softmax of tile n+1 runs under P.V(n) (FA3's intra-warpgroup
//   overlap) and the running max moves only past a lag of 8 (FlashAttention-4's conditional
//   rescaling);
// * setmaxnreg gives the consumers 240 registers and the producer 24;
// * the softmax is what bounds this kernel (INT8 Q.K^T takes half of FA3's tensor time, while
//   dequantizing scores adds an I2FP and an FMUL per score), so work moves off it: the P.V wgmma
//   also sums P (N = 136, eight rows of ones under each V tile), a tile's key scales are loaded
//   before its turn, and wgmma descriptors are built once and offset; at head_dim 64 and in the
//   Q-smoothing build the exps do not wait for the tile's row max (sage_sm90_speculative.cuh).
//
// Inputs: the packed copies of the Triton pre-pass (`paged_prep_kernel`, BLOCKED layout) laid out
// so that each tile is one contiguous, already swizzled block: INT8 K [Hkv, n_pad, 128 bytes]
// with the 16-byte chunks of key row r at chunk c ^ (r % 8) (D = 64 fills the first four
// chunks), per key pair a quad of fp32 (two scales, then two bias terms -1.5 * 2^23 * scale that
// the pre-pass still writes and no kernel reads), and
// FP16 V^T in 64-key blocks [Hkv, n_pad / 64, D channels, 64 keys] with chunk c of channel row
// d at c ^ (d % 8). A 128-key tile (D = 128) is then 16 KB of K, 1 KB of quads and 32 KB of V,
// each copied verbatim into the 128-byte-swizzled tiles that the wgmma descriptors read.
// Requests start on a 64-key boundary and two zero blocks end the buffer, so a tile never reads
// past it. Built for head_dim 128 or 64 (SAGE_HEAD_DIM).
// Semantics: SGLang's extend attention, bottom-right causal over a prefix.
#include "sage_sm90_pipeline.cuh"
#include "sage_sm90_speculative.cuh"

namespace {

static_assert(!kFp8Pv, "the warp-specialized kernel is built for FP16 P.V only");
#ifndef SAGE_STAGES
#define SAGE_STAGES 2
#endif
constexpr int kStages = SAGE_STAGES;    // K and V tiles in flight, each
constexpr int kConsumers = 2;           // consumer warpgroups, 64 query rows each
constexpr int kBlockM = 64 * kConsumers;
constexpr int kThreads = 128 * (kConsumers + 1);
constexpr int kQuadBytes = kBlockN * 8;  // a tile's key scales and bias terms (SmemKeyQuads)
constexpr int kCqBytes = kBlockN * 4;    // a tile's c_j (Q smoothing)
// A V stage: two V^T atoms (keys 0..63, 64..127), each D channel rows + 8 rows of ones, so
// that the P.V wgmma (N = D + 8) also sums P (wgmma_pv_f16_n136 / _n72): 64 FADDs less per
// thread and tile, for 6% (D = 128) or 12% (D = 64) more P.V work on the tensor cores.
constexpr int kVAtomRows = kHeadDim + 8;
constexpr int kVAtomBytes = kVAtomRows * 128;  // 1024-aligned (17 or 9 x 1024)
constexpr int kVStageBytes = 2 * kVAtomBytes;
constexpr int kON = kHeadDim / 2 + 4;  // O accumulators per thread: D / 2 of O, 4 of row sums
constexpr int kConsumerRegs = 240, kProducerRegs = 24;
// Named barriers (0 is __syncthreads): 1 + w = consumer w's turn on the tensor cores,
// 3 + w = consumer w's Q tile is written.
constexpr int kTurnBarrier = 1, kQBarrier = 3;

#ifndef SAGE_AB_DIRECT_STORE
#define SAGE_AB_DIRECT_STORE 0
#endif
constexpr int kOStageBytes = kQTileBytes / 4;  // a consumer warp's quarter of its Q tile: O's 16 rows
static_assert(kOStageBytes == 16 * 128, "store_out_staged stages 16 rows of 128 bytes");
// Shared-memory map, from a 1024-byte-aligned base.
constexpr int kOffQ = 0;
constexpr int kOffK = kOffQ + kConsumers * kQTileBytes;
constexpr int kOffV = kOffK + kStages * kKBytes;
constexpr int kOffKs = kOffV + kStages * kVStageBytes;
constexpr int kOffCq = kOffKs + kStages * kQuadBytes;  // Q smoothing's c_j, per K stage
constexpr int kOffQs = kOffCq + (kQSmooth ? kStages * kCqBytes : 0);
constexpr int kOffBar = kOffQs + kBlockM * 4;
constexpr int kSmemBytes = 1024 + kOffBar + 4 * kStages * 8;  // + alignment slack

struct Barriers {
  uint32_t base;  // full_k[kStages], empty_k[kStages], full_v[kStages], empty_v[kStages]
  __device__ __forceinline__ uint32_t full_k(int s) const { return base + 8 * s; }
  __device__ __forceinline__ uint32_t empty_k(int s) const { return base + 8 * (kStages + s); }
  __device__ __forceinline__ uint32_t full_v(int s) const { return base + 8 * (2 * kStages + s); }
  __device__ __forceinline__ uint32_t empty_v(int s) const { return base + 8 * (3 * kStages + s); }
};

// What one CTA works on: a 128-row query tile of one request and head (cta_tile_and_head).
struct Work {
  int b, hq, hk, pre_len, ext_len, pid_m, n_tiles;
  long long q_start;
  const int8_t* k;    // this request's first K tile
  const float* ks;    // its first key-scale quad
  const float* cq;    // its first c_j (Q smoothing)
  const uint8_t* v;   // its first V^T block
};

__device__ __forceinline__ bool find_work(const Params& p, Work& w) {
#if defined(SAGE_AB_TILES_FIRST)  // A/B variants of the dispatch order (bench/variants/ab_*.cu)
  const int linear = blockIdx.x + gridDim.x * blockIdx.y, tile = linear % gridDim.y;
  w.hq = linear / gridDim.y;
#elif defined(SAGE_AB_HEADS_FIRST)
  const int tile = blockIdx.y;
  w.hq = blockIdx.x;
#else
  const int2 work = cta_tile_and_head(p.group);
  const int tile = work.x;
  w.hq = work.y;
#endif
  w.b = p.tiles[2 * tile];
  w.pid_m = p.tiles[2 * tile + 1];
  w.q_start = load_indptr(p.qo_indptr, w.b, p.qo_indptr64);
  w.ext_len = int(load_indptr(p.qo_indptr, w.b + 1, p.qo_indptr64) - w.q_start);
  if (w.pid_m * kBlockM >= w.ext_len) return false;
  w.pre_len = int(load_indptr(p.kv_indptr, w.b + 1, p.kv_indptr64) - load_indptr(p.kv_indptr, w.b, p.kv_indptr64));
  w.hk = w.hq / p.group;
  const int causal_end = min(w.pre_len + w.ext_len, w.pre_len + (w.pid_m + 1) * kBlockM);
  w.n_tiles = (causal_end + kBlockN - 1) / kBlockN;
  const long long key0 = (long long)w.hk * p.n_pad + (long long)p.blk_indptr[w.b] * kKeyBlock;
  w.k = p.kq + key0 * kKRow;
  w.ks = p.ks + 2 * key0;  // quads: two floats per key
  w.cq = kQSmooth ? p.cq + (long long)w.hq * p.n_pad + (long long)p.blk_indptr[w.b] * kKeyBlock : nullptr;
  w.v = reinterpret_cast<const uint8_t*>(p.vq) + key0 * kHeadDim * 2;  // 64-key blocks, fp16
  return true;
}

// The producer: one thread streams K tiles (with their scales and c_j), another V tiles, each as
// far ahead as the stages allow; a stage is refilled once all eight consumer warps released it.
__device__ __forceinline__ void produce(const Work& w, const Barriers& bars, uint32_t sk, uint32_t sv, uint32_t sks,
                                        uint32_t scq) {
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) != 0 || warp > 1) return;
  for (int n = 0; n < w.n_tiles; ++n) {
    const int s = n % kStages, phase = (n / kStages) & 1;
    if (warp == 0) {
      mbar_wait(bars.empty_k(s), phase ^ 1);
      mbar_expect_tx(bars.full_k(s), kKBytes + kQuadBytes + (kQSmooth ? kCqBytes : 0));
      bulk_load(sk + s * kKBytes, w.k + (long long)n * kKBytes, kKBytes, bars.full_k(s));
      bulk_load(sks + s * kQuadBytes, w.ks + 2 * n * kBlockN, kQuadBytes, bars.full_k(s));
      if constexpr (kQSmooth) bulk_load(scq + s * kCqBytes, w.cq + n * kBlockN, kCqBytes, bars.full_k(s));
    } else {
      mbar_wait(bars.empty_v(s), phase ^ 1);
      mbar_expect_tx(bars.full_v(s), kVBytes);
      const uint8_t* src = w.v + (long long)n * kVBytes;
      bulk_load(sv + s * kVStageBytes, src, kVBytes / 2, bars.full_v(s));
      bulk_load(sv + s * kVStageBytes + kVAtomBytes, src + kVBytes / 2, kVBytes / 2, bars.full_v(s));
    }
  }
}

// The P.V wgmma with row sums for this head_dim (O's fragment: 68 floats at D = 128, 36 at 64).
template <int N>
__device__ __forceinline__ void pv_with_sums(float (&o)[N], const uint32_t (&a)[4], uint64_t desc) {
  if constexpr (N == 68)
    wgmma_pv_f16_n136(o, a, desc);
  else
    wgmma_pv_f16_n72(o, a, desc);
}

// P.V of one tile into O and its row sums (N = D + 8: the ones rows of the V atoms).
__device__ __forceinline__ void issue_pv_sums(float (&o)[kON], uint32_t (&pa)[kPvSteps][4], uint64_t desc_v) {
#pragma unroll
  for (int kstep = 0; kstep < kPvSteps; ++kstep) {
    const uint64_t desc = desc_v + (((kstep >> 2) * kVAtomBytes + (kstep & 3) * 32) >> 4);
    pv_with_sums(o, pa[kstep], desc);
  }
  wgmma_commit();
}

// The ones rows of every V atom: written once; the bulk copies fill rows 0..127 only.
__device__ __forceinline__ void fill_ones_rows(uint8_t* smem) {
  const uint32_t one2 = 0x3C003C00u;  // two fp16 1.0
  for (int i = threadIdx.x; i < kStages * 2 * 8 * 128 / 4; i += blockDim.x) {
    const int atom = i / (8 * 128 / 4), word = i % (8 * 128 / 4);
    reinterpret_cast<uint32_t*>(smem + kOffV + atom * kVAtomBytes + kHeadDim * 128)[word] = one2;
  }
  fence_async_smem();
}

// One consumer warpgroup (cw = 0 or 1): rows 64cw..64cw+63 of the CTA's query tile.
template <typename InT>
__device__ __forceinline__ void consume(const Params& p, const Work& w, const Barriers& bars, int cw,
                                        uint8_t* smem, uint32_t sk, uint32_t sv, uint32_t sks, uint32_t scq,
                                        TraceStart t0) {
  const int ctid = threadIdx.x - 128 * (cw + 1), warp = ctid >> 5, lane = ctid & 31;
  const PhaseTrace trace(p, kConsumers, cw, ctid);
  if constexpr (kTrace) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    trace.put(0, smid);
    trace.put(1, (unsigned long long)w.n_tiles | ((unsigned long long)w.pid_m << 32));
    trace.put(2, t0.time);
    trace.put(4, t0.clock);
    trace.clock(5);
  }
  uint8_t* sq = smem + kOffQ + cw * kQTileBytes;
  float* sqs = reinterpret_cast<float*>(smem + kOffQs) + 64 * cw;
  const long long q_row0 = w.q_start + (long long)w.pid_m * kBlockM + 64 * cw;
  const int rows = min(64, w.ext_len - w.pid_m * kBlockM - 64 * cw);  // may be <= 0: no output
  quantize_q<InT>(p, q_row0, rows, w.b, w.hq, sq, sqs, ctid);
  fence_async_smem();
  named_sync(kQBarrier + cw, 128);
  trace.clock(6);

  const int row0 = warp * 16 + (lane >> 2);  // this thread's rows: row0 and row0 + 8
  const float qs[2] = {sqs[row0], sqs[row0 + 8]};
  const int limit0 = w.pre_len + w.pid_m * kBlockM + 64 * cw + row0;
  // Keys below n_full * 128 are visible to every row of this warpgroup; later tiles are masked.
  const int n_full = (w.pre_len + w.pid_m * kBlockM + 64 * cw) / kBlockN;
  const uint64_t desc_q = sw128_desc(smem_addr(sq));
  const uint64_t desc_k = sw128_desc(sk), desc_v = sw128_desc(sv);  // stage 0
  const int mine = kTurnBarrier + cw, other = kTurnBarrier + (cw ^ 1);
  float o[kON];
  int s[64];
  uint32_t pa[kPvSteps][4];
  RowState st;
#pragma unroll
  for (int i = 0; i < kON; ++i) o[i] = 0.f;
  if (cw == 1) named_arrive(kTurnBarrier, 256);  // consumer 0 takes the first turn

  mbar_wait(bars.full_k(0), 0);
  named_sync(mine, 256);
  wgmma_fence();
  issue_qk(s, desc_q, desc_k);
  named_arrive(other, 256);
  wgmma_wait<0>();
  fence_regs(s);
  trace.clock(7);
  scores<false>(s, SmemKeyQuads{sks}, SmemKeyScales{scq}, qs, st, 0, n_full, limit0);
  release(bars.empty_k(0));
  finish_tile<false>(s, o, o, pa, st);
  trace.clock(8);

  // Steady state: P.V(n) overlaps Q.K^T + softmax of tile n+1 (no wgmma under a branch).
  for (int n = 0; n + 1 < w.n_tiles; ++n) {
    const int ks = (n + 1) % kStages, vs = n % kStages;
    mbar_wait(bars.full_k(ks), ((n + 1) / kStages) & 1);
    mbar_wait(bars.full_v(vs), (n / kStages) & 1);
    RegKeyScales scales;  // loaded before the turn: off the softmax's path (measured 2-5 % faster)
    scales.load(SmemKeyQuads{sks + ks * kQuadBytes});
    named_sync(mine, 256);
    fence_regs(o);
    fence_pa(pa);
    wgmma_fence();
    issue_qk(s, desc_q, desc_k + ks * (kKBytes >> 4));
    issue_pv_sums(o, pa, desc_v + vs * (kVStageBytes >> 4));
    named_arrive(other, 256);
    wgmma_wait<1>();  // Q.K^T(n+1) done; P.V(n) may still run
    fence_regs(s);
    if constexpr (kSpeculative)
      scores_speculative(s, scales, SmemKeyScales{scq + ks * kCqBytes}, qs, st, n + 1, n_full, limit0,
                         ScoreTiles{smem_addr(sq), sk + ks * kKBytes, sks + ks * kQuadBytes, row0});
    else
      scores<false>(s, scales, SmemKeyScales{scq + ks * kCqBytes}, qs, st, n + 1, n_full, limit0);
    release(bars.empty_k(ks));
    wgmma_wait<0>();
    fence_regs(o);
    fence_pa(pa);
    release(bars.empty_v(vs));
    finish_tile<false>(s, o, o, pa, st);
  }
  trace.clock(9);
  const int vs = (w.n_tiles - 1) % kStages;
  mbar_wait(bars.full_v(vs), ((w.n_tiles - 1) / kStages) & 1);
  named_sync(mine, 256);
  fence_regs(o);
  fence_pa(pa);
  wgmma_fence();
  issue_pv_sums(o, pa, desc_v + vs * (kVStageBytes >> 4));
  if (cw == 0) named_arrive(other, 256);  // consumer 1's last turn; consumer 0 has none left
  wgmma_wait<0>();
  fence_regs(o);
#if SAGE_AB_DIRECT_STORE  // A/B: 4-byte stores straight from the fragments (the store before)
  store_out<InT, kON>(p, o, st, q_row0, rows, w.hq, row0, w.b, w.hk);
#else  // staged through this warp's quarter of its Q tile, free once the last Q.K^T is done
  store_out_staged<InT, kON>(p, o, q_row0, rows, w.hq, 16 * warp, sq + kOStageBytes * warp);
#endif
  trace.clock(10);
  if constexpr (kTrace) trace.put(3, global_ns());
}

template <typename InT>
__device__ __forceinline__ void attention(const Params& p) {
  const TraceStart t0 = trace_start();
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_addr(smem_raw);
  uint8_t* smem = smem_raw + ((1024 - (raw & 1023)) & 1023);
  const uint32_t base = smem_addr(smem);
  const uint32_t sk = base + kOffK, sv = base + kOffV, sks = base + kOffKs, scq = base + kOffCq;
  const Barriers bars{base + kOffBar};
  Work w;
  if (!find_work(p, w)) return;  // uniform over the CTA
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(bars.full_k(s), 1);
      mbar_init(bars.full_v(s), 1);
      mbar_init(bars.empty_k(s), 4 * kConsumers);
      mbar_init(bars.empty_v(s), 4 * kConsumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  fill_ones_rows(smem);
  __syncthreads();
  const int wg = threadIdx.x >> 7;
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    produce(w, bars, sk, sv, sks, scq);
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
    consume<InT>(p, w, bars, wg - 1, smem, sk, sv, sks, scq, t0);
  }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads, 1) sage_sm90_ws_fwd(const __grid_constant__ Params p) {
  if (p.out_bf16)
    attention<__nv_bfloat16>(p);
  else
    attention<__half>(p);
}

// The host reads the dynamic shared-memory size from here (a __device__ constant in the cubin).
extern "C" __device__ const int sage_sm90_ws_fwd_smem_bytes = kSmemBytes;
