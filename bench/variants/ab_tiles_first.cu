// A/B variant of the warp-specialized kernel: CTAs take (tile, head) in the order before
// cta_tile_and_head, every tile of head 0 first, then head 1, ...
// (bench/sm90_bench.py --variant bench/variants/ab_tiles_first.cu; measured -16 % at 2K,
// -8 % at 4K, -0.4 % at 32K against the shipped order, H200: bench/results/sm90-d64-h200-2026-11-28).
#define SAGE_AB_TILES_FIRST 1
#include "../../sglang_sage_ext/kernels/csrc/sage_sm90_ws.cu"
