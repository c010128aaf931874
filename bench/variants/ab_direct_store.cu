// A/B variant of the warp-specialized kernel: O stored from the fragments with 4-byte stores
// (store_out), as before the staged 16-byte stores (store_out_staged).
// (bench/sm90_bench.py --variant bench/variants/ab_direct_store.cu)
#define SAGE_AB_DIRECT_STORE 1
#include "../../sglang_sage_ext/kernels/csrc/sage_sm90_ws.cu"
