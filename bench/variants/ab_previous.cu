// A/B variant of the warp-specialized kernel: the softmax of 208fc98 (biased-float score
// conversion, exact row max before the exps in every build), to time the current softmax against.
// It was SASS-identical to 208fc98 until the Q quantizer and the output store changed (2026-11-28,
// bench/results/sm90-store-h200-2026-11-28); it now has today's quantizer and store.
// (bench/sm90_bench.py --variant bench/variants/ab_previous.cu)
#define SAGE_AB_BIASED_FLOAT 1
#define SAGE_SPECULATIVE 0
#include "../../sglang_sage_ext/kernels/csrc/sage_sm90_ws.cu"
