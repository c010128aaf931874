// The pipeline primitives of the warp-specialized Hopper kernel (sage_sm90_ws.cu): mbarriers,
// TMA bulk copies, named barriers, and its phase trace (compiled out unless SAGE_TRACE is set).
#pragma once
#include "sage_sm90_common.cuh"

namespace {

__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Wait until the phase of parity `phase` has completed (a fresh barrier counts phase -1 as done).
__device__ __forceinline__ void mbar_wait(uint32_t bar, int phase) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(bar),
      "r"(phase)
      : "memory");
}
// TMA bulk copy global -> shared; the bytes count towards `bar`'s transaction.
__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
      "l"(src), "r"(bytes), "r"(bar)
      : "memory");
}
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// Done with a stage: one arrival per warp, after every lane's reads.
__device__ __forceinline__ void release(uint32_t bar) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0) mbar_arrive(bar);
}

#ifndef SAGE_TRACE
#define SAGE_TRACE 0
#endif
// Phase trace (bench/sm90_trace.py builds bench/variants/trace_phases.cu, which sets it): thread 0
// of each consumer writes where its CTA's time went into p.vmax, which FP16 P.V leaves unused, as
// u64 [CTA][consumer][kTraceSlots]: 0 SM id, 1 n_tiles | pid_m << 32, 2/3 globaltimer at entry and
// exit, 4..10 clock64 at entry, consumer start, Q ready, first scores, first tile done, main loop
// done, exit. Compiled out otherwise (the shipped builds' SASS is unchanged).
constexpr bool kTrace = SAGE_TRACE;
constexpr int kTraceSlots = 12;
struct TraceStart {
  long long clock = 0;
  unsigned long long time = 0;
};
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ TraceStart trace_start() {
  TraceStart t;
  if constexpr (kTrace) {
    t.clock = clock64();
    t.time = global_ns();
  }
  return t;
}
struct PhaseTrace {
  unsigned long long* slot = nullptr;  // this consumer's slots when it records
  __device__ __forceinline__ PhaseTrace(const Params& p, int consumers, int cw, int ctid) {
    if constexpr (kTrace) {
      if (ctid == 0)
        slot = reinterpret_cast<unsigned long long*>(const_cast<float*>(p.vmax)) +
               ((long long)(blockIdx.x + gridDim.x * blockIdx.y) * consumers + cw) * kTraceSlots;
    }
  }
  __device__ __forceinline__ void put(int i, unsigned long long v) const {
    if constexpr (kTrace) {
      if (slot) slot[i] = v;
    }
  }
  __device__ __forceinline__ void clock(int i) const { put(i, clock64()); }
};

}  // namespace
