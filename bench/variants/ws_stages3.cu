// A/B variant of the warp-specialized kernel: three K and V stages instead of two
// (bench/sm90_bench.py --variant bench/variants/ws_stages3.cu; measured +0.7% at 32K, H100).
#define SAGE_STAGES 3
#include "../../sglang_sage_ext/kernels/csrc/sage_sm90_ws.cu"
