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
#include "sage_sm90_softmax.cuh"

namespace {

// One warpgroup per CTA, owning 64 query rows (one wgmma M), two CTAs per SM. Two warpgroups
// sharing the K/V tiles without warp specialization measured slower
// (bench/results/sm90-kernel-h200-2026-11-27); sage_sm90_ws.cu shares them with a TMA producer
// and ping-pong scheduling instead.
static_assert(kHeadDim == 128, "the one-warpgroup kernel is built for head_dim 128 only");
constexpr int kBlockM = 64;
constexpr int kThreads = 128;
constexpr int kQBytes = kQTileBytes;
constexpr int kKRowsPerPass = kThreads / 8, kVRowsPerPass = kThreads / 16;
constexpr int kScaleTiles = kQSmooth ? 4 : 2;  // key scales (and c_j) of the two K stages

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Per-thread cp.async addresses of the K/V/scale tiles. Each thread copies the same chunk
// column of rows kKRowsPerPass (K) or kVRowsPerPass (V) apart, so every copy of a tile is a base plus a constant:
// one 64-bit address per tensor, advanced by whole tiles, and swizzle offsets fixed per thread.
struct TileLoader {
  const int8_t* k;
  const uint8_t* v;  // V^T row bytes (fp16 or fp8)
  const float* ks;
  const float* cq;  // Q smoothing's c_j of this request and query head
  long long v_row_step;  // bytes between the V^T rows one thread copies
  uint32_t k_dst, v_dst, ks_dst;

  // V^T rows are 128 keys: 128 bytes (fp8, copied like K) or 256 bytes (fp16, two atoms).
  static constexpr int kVRows = kFp8Pv ? kKRowsPerPass : kVRowsPerPass;
  static constexpr int kVElt = kFp8Pv ? 1 : 2;

  __device__ __forceinline__ TileLoader(const int8_t* kbase, const float* ksbase, const float* cqbase,
                                        const uint8_t* vbase, int n_pad, uint32_t sk, uint32_t sv, uint32_t sks) {
    const int tid = threadIdx.x;
    const int krow = tid >> 3, kc = tid & 7;
    const int vrow = kFp8Pv ? krow : tid >> 4, vc = kFp8Pv ? kc : tid & 15;
    k = kbase + krow * kHeadDim + kc * 16;
    v = vbase + (long long)vrow * n_pad * kVElt + vc * 16;
    ks = ksbase + (tid & 31) * 4;
    cq = cqbase + (tid & 31) * 4;
    v_row_step = (long long)kVRows * n_pad * kVElt;
    k_dst = sk + swizzle(krow, kc);
    v_dst = sv + (vc >> 3) * kVAtom + swizzle(vrow, vc & 7);
    ks_dst = sks + (tid & 31) * 16;
  }

  // K tile `n` (keys 128n..128n+127) and its scales (and c_j) into K stage `stage`; the c_j
  // of a stage follow its two scale tiles.
  __device__ __forceinline__ void load_k(int n, int stage) const {
    const int8_t* src = k + (long long)n * kBlockN * kHeadDim;
    const uint32_t dst = k_dst + stage * kKBytes;
#pragma unroll
    for (int i = 0; i < kBlockN / kKRowsPerPass; ++i)
      cp_async16(dst + i * kKRowsPerPass * 128, src + i * kKRowsPerPass * kHeadDim);
    if (threadIdx.x < 32) cp_async16(ks_dst + stage * kBlockN * 4, ks + n * kBlockN);
    if (kQSmooth && threadIdx.x >= 32 && threadIdx.x < 64)
      cp_async16(ks_dst + (2 + stage) * kBlockN * 4, cq + n * kBlockN);
  }

  // V^T tile `n` (128 channel rows x 128 keys) into V stage `stage`.
  __device__ __forceinline__ void load_v(int n, int stage) const {
    const uint8_t* src = v + n * kBlockN * kVElt;
    const uint32_t dst = v_dst + stage * kVBytes;
#pragma unroll
    for (int i = 0; i < kHeadDim / kVRows; ++i) cp_async16(dst + i * kVRows * 128, src + i * v_row_step);
  }
};

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
  const uint32_t scq = sks + 2 * kBlockN * 4;  // Q smoothing's c_j, two stages
  float* sqs = reinterpret_cast<float*>(smem + kQBytes + 2 * kKBytes + 2 * kVBytes + kScaleTiles * kBlockN * 4);

  const int2 work = cta_tile_and_head(p.group);
  const int tile = work.x, hq = work.y;
  const int b = p.tiles[2 * tile], pid_m = p.tiles[2 * tile + 1];
  const long long q_start = load_indptr(p.qo_indptr, b, p.qo_indptr64);
  const int ext_len = int(load_indptr(p.qo_indptr, b + 1, p.qo_indptr64) - q_start);
  if (pid_m * kBlockM >= ext_len) return;
  const int pre_len = int(load_indptr(p.kv_indptr, b + 1, p.kv_indptr64) - load_indptr(p.kv_indptr, b, p.kv_indptr64));
  const int kv_len = pre_len + ext_len;
  const int hk = hq / p.group;
  const long long key0 = (long long)p.blk_indptr[b] * kKeyBlock;
  const TileLoader ld(p.kq + ((long long)hk * p.n_pad + key0) * kHeadDim, p.ks + (long long)hk * p.n_pad + key0,
                      kQSmooth ? p.cq + (long long)hq * p.n_pad + key0 : nullptr,
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
  quantize_q<InT>(p, q_row0, rows, b, hq, sq, sqs, threadIdx.x);
  cp_async_wait<0>();
  fence_async_smem();
  __syncthreads();

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int row0 = warp * 16 + (lane >> 2);  // this thread's rows: row0 and row0 + 8
  const float qs[2] = {sqs[row0], sqs[row0 + 8]};
  const int limit0 = pre_len + pid_m * kBlockM + row0;
  const uint64_t desc_q = sw128_desc(smem_addr(sq));
  const uint64_t desc_k = sw128_desc(sk), desc_v = sw128_desc(sv);  // stage 0
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
  issue_qk(s, desc_q, desc_k);
  wgmma_wait<0>();
  fence_regs(s);
  scores<true>(s, SmemKeyScales{sks}, SmemKeyScales{scq}, qs, st, 0, n_full, limit0);
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
    issue_qk(s, desc_q, desc_k + ((n + 1) & 1) * (kKBytes >> 4));
    issue_pv(PV_ACC, pa, desc_v + (n & 1) * (kVBytes >> 4));
    wgmma_wait<1>();  // Q.K^T(n+1) done; P.V(n) may still run
    fence_regs(s);
    const int kst = (n + 1) & 1;
    scores<true>(s, SmemKeyScales{sks + kst * kBlockN * 4}, SmemKeyScales{scq + kst * kBlockN * 4}, qs, st, n + 1,
                 n_full, limit0);
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
  issue_pv(PV_ACC, pa, desc_v + ((n_tiles - 1) & 1) * (kVBytes >> 4));
  wgmma_wait<0>();
  fence_regs(PV_ACC);
#if SAGE_PV_FP8
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] += pv[i];
#endif
#undef PV_ACC
  store_out<InT, 64>(p, o, st, q_row0, rows, hq, row0, b, hk);
}

}  // namespace

extern "C" __global__ void __launch_bounds__(kThreads, 2) sage_sm90_fwd(const __grid_constant__ Params p) {
  if (p.out_bf16)
    attention<__nv_bfloat16>(p);
  else
    attention<__half>(p);
}

// The host reads the dynamic shared-memory size from here (a __device__ constant in the cubin).
extern "C" __device__ const int sage_sm90_fwd_smem_bytes =
    1024 + kQBytes + 2 * kKBytes + 2 * kVBytes + kScaleTiles * kBlockN * 4 + kBlockM * 4;
