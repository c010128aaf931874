#!/bin/bash
# bench_serving (SGLang's own client), sage_attn vs the native backend, Llama-3.1-8B dummy weights
# Two servers, one at a time, identical flags: the native backend sage_attn picks on this machine
# (NATIVE, default flashinfer: the bundle's sgl-kernel has no FA3) and sage_attn. Client:
# `python -m sglang.bench_serving` (random-ids prompts, --warmup-requests 0). Workloads: single
# prompts of 1K/8K/32K/128K tokens with 4 output tokens (e2e latency), 64 concurrent
# 1K-in/128-out, a mixed-length load (inputs 128..8K), generated-shared-prefix (4 groups x 16,
# 6000 + 600 tokens, radix hits). H100/H200, ~9.5 min. Back: results/e2e_vs_native.{json,md},
# logs.tar.gz (jsonl, server logs, stats). Env: NATIVE (flashinfer), SKIP_NATIVE=1 (sage only),
# EXTRA_SERVER_ARGS.
OUT=${OUT:-/tmp/gpu_out/e2e}
mkdir -p "$OUT/results" "$OUT/jsonl"
LOG_NAME=e2e.log BUDGET=${E2E_BUDGET_S:-570}
# shellcheck disable=SC1091
source bench/gpu/common.sh
NATIVE=${NATIVE:-flashinfer}
ensure_models
M=$MODELS/llama31-8b-dummy
COMMON=(--model-path "$M" --load-format dummy --mem-fraction-static 0.8 --max-total-tokens 160000
  --context-length 131072 --random-seed 0 --sampling-backend pytorch --grammar-backend none
  --cuda-graph-max-bs 64 ${EXTRA_SERVER_ARGS:-})
BS=(python3 -m sglang.bench_serving --backend sglang --host 127.0.0.1 --tokenizer "$M" --request-rate inf
  --dataset-name random-ids --tokenize-prompt --warmup-requests 0)

workloads() {  # workloads TAG PORT
  local tag=$1 port=$2
  run() { local name=$1; shift; step "$tag $name ($(left) s left)"
    timeout 150 "${BS[@]}" --port "$port" --output-file "$OUT/jsonl/${tag}_${name}.jsonl" "$@" > "$OUT/logs/${tag}_${name}.out" 2>&1
    echo "rc=$?"; grep -E "Median E2E|Output token throughput|Successful" "$OUT/logs/${tag}_${name}.out"; }
  run single_1k  --random-range-ratio 1 --random-input-len 1024 --random-output-len 4 --num-prompts 8 --max-concurrency 1
  run single_8k  --random-range-ratio 1 --random-input-len 8192 --random-output-len 4 --num-prompts 6 --max-concurrency 1
  run single_32k --random-range-ratio 1 --random-input-len 32768 --random-output-len 4 --num-prompts 4 --max-concurrency 1
  run single_128k --random-range-ratio 1 --random-input-len 128000 --random-output-len 4 --num-prompts 2 --max-concurrency 1
  run c64_1k_128 --random-range-ratio 1 --random-input-len 1024 --random-output-len 128 --num-prompts 256 --max-concurrency 64
  run mixed_128_8k --random-range-ratio 0.015625 --random-input-len 8192 --random-output-len 64 --num-prompts 96 --max-concurrency 32
  step "$tag shared_prefix ($(left) s left)"
  timeout 120 python3 -m sglang.bench_serving --backend sglang --host 127.0.0.1 --port "$port" --tokenizer "$M" \
    --request-rate inf --warmup-requests 0 --dataset-name generated-shared-prefix --gsp-num-groups 4 \
    --gsp-prompts-per-group 16 --gsp-system-prompt-len 6000 --gsp-question-len 600 --gsp-output-len 32 \
    --num-prompts 64 --max-concurrency 16 --output-file "$OUT/jsonl/${tag}_shared_prefix.jsonl" > "$OUT/logs/${tag}_shared_prefix.out" 2>&1
  echo "rc=$?"; grep -E "Median E2E|Output token throughput|Successful" "$OUT/logs/${tag}_shared_prefix.out"
}

if [ "${SKIP_NATIVE:-0}" != 1 ]; then
step "server: $NATIVE"
launch native 30100 -- "${COMMON[@]}" --attention-backend "$NATIVE"
wait_healthy 30100 240 && { grep -iE "graph|attention backend" "$OUT/logs/native.log" | head -6; workloads native 30100; }
stop_all
fi
step "server: sage_attn"
mkdir -p "$OUT/stats_sage"
launch sage 30101 SGLANG_SAGE_STATS_DIR="$OUT/stats_sage" -- "${COMMON[@]}" --attention-backend sage_attn
wait_healthy 30101 240 && { grep -hiE "sage_attn|graph|attention backend" "$OUT/logs/sage.log" | head -12; workloads sage 30101; }
stop_all
cat "$OUT"/stats_sage/*.json 2>/dev/null | head -c 1500; echo
step "summary"
python3 bench/e2e_summary.py --jsonl "$OUT/jsonl" --native "$NATIVE" --stats "$OUT/stats_sage" --out "$OUT/results"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs jsonl stats_sage && rm -rf "$OUT/logs" "$OUT/jsonl" "$OUT/stats_sage"
ls -la "$OUT" "$OUT/results"
