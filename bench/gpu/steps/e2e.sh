#!/bin/bash
# bench_serving (SGLang's own client), sage_attn vs the native backend, Llama-3.1-8B dummy weights
# Two servers, one at a time, identical flags: the native backend sage_attn picks on this machine
# (NATIVE, default flashinfer: the bundle's sgl-kernel has no FA3) and sage_attn. Client:
# `python -m sglang.bench_serving` (random-ids prompts, --warmup-requests 0). Workloads: single
# prompts of 1K/8K/32K/128K tokens with 4 output tokens (e2e latency), 64 concurrent
# 1K-in/128-out, a mixed-length load (inputs 128..8K), generated-shared-prefix (4 groups x 16,
# 6000 + 600 tokens, radix hits). H100/H200, ~9.5 min. Back: results/e2e_vs_native.{json,md},
# logs.tar.gz (jsonl, server logs, stats). Env: NATIVE (flashinfer), SKIP_NATIVE=1 (sage only),
# WORKLOADS (space separated names, default all; definitions in bench/gpu/e2e_lib.sh),
# EXTRA_SERVER_ARGS.
OUT=${OUT:-/tmp/gpu_out/e2e}
mkdir -p "$OUT/results" "$OUT/jsonl"
LOG_NAME=e2e.log BUDGET=${E2E_BUDGET_S:-570}
# shellcheck disable=SC1091
source bench/gpu/common.sh
# shellcheck disable=SC1091
source bench/gpu/e2e_lib.sh
NATIVE=${NATIVE:-flashinfer}
e2e_check_workloads
e2e_setup

if [ "${SKIP_NATIVE:-0}" != 1 ]; then
  e2e_serve native "$E2E_PORT" -- --attention-backend "$NATIVE"
fi
mkdir -p "$OUT/stats_sage"
e2e_serve sage $((E2E_PORT + 1)) SGLANG_SAGE_STATS_DIR="$OUT/stats_sage" -- \
  --attention-backend sage_attn
cat "$OUT"/stats_sage/*.json 2>/dev/null | head -c 1500; echo
step "summary"
python3 bench/e2e_summary.py --jsonl "$OUT/jsonl" --native "$NATIVE" --stats "$OUT/stats_sage" \
  --workloads "$WORKLOADS" --out "$OUT/results"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs jsonl stats_sage && rm -rf "$OUT/logs" "$OUT/jsonl" "$OUT/stats_sage"
ls -la "$OUT" "$OUT/results"
