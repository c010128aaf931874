// A/B variant: ab_previous.cu's Q-smoothing build (sm90_bench.py runs a variant that defines
// SAGE_Q_SMOOTH with the Q-smoothing terms).
#define SAGE_Q_SMOOTH 1
#include "ab_previous.cu"
