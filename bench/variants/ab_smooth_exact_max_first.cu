// A/B variant: the Q-smoothing build with the exact row max before the exps (softmax_scores)
// instead of the speculative softmax, I2FP conversion as shipped.
#define SAGE_Q_SMOOTH 1
#define SAGE_SPECULATIVE 0
#include "../../sglang_sage_ext/kernels/csrc/sage_sm90_ws.cu"
