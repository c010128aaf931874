// A/B variant of the warp-specialized kernel: CTAs take the heaviest tile of every query head
// first (plain longest-first order over all heads, which spreads the running CTAs over all kv
// heads' K/V) (bench/sm90_bench.py --variant bench/variants/ab_heads_first.cu; measured -2.5 %
// at 2K, -5 % at 32K against the shipped order, H200: bench/results/sm90-d64-h200-2026-11-28).
#define SAGE_AB_HEADS_FIRST 1
#include "../../sglang_sage_ext/kernels/csrc/sage_sm90_ws.cu"
