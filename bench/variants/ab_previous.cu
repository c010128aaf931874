// A/B variant of the warp-specialized kernel: the code of 208fc98 (biased-float score conversion,
// exact row max before the exps in every build), to time the current code against.
// (bench/sm90_bench.py --variant bench/variants/ab_previous.cu)
#define SAGE_AB_BIASED_FLOAT 1
#define SAGE_SPECULATIVE 0
#include "../../sglang_sage_ext/kernels/csrc/sage_sm90_ws.cu"
