// The warp-specialized kernel with its phase trace on (SAGE_TRACE, see sage_sm90_pipeline.cuh):
// clock64 marks per CTA and consumer, written where FP16 P.V has no |V| amax.
// Launched by bench/sm90_trace.py only (the launch passes the trace buffer as `trace`).
#define SAGE_TRACE 1
#include "../../sglang_sage_ext/kernels/csrc/sage_sm90_ws.cu"
