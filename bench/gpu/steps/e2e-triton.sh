#!/bin/bash
# kernel bench, then sglang-sage bench throughput attached: sage_attn vs triton (TTFT 8K/32K, bs64 serving), 8B dummy
# 1. bench/kernel_bench.py: the Sage extend kernels vs cuDNN / flash / SGLang Triton
# 2. Llama-3.1-8B config, --load-format dummy, servers started once with the same flags (radix
#    cache off, --chunked-prefill-size 8192: a 32K prompt is 4 chunks, chunks 2-4 attend to a
#    cached prefix): sage_attn and triton, then `sglang-sage bench throughput` attached:
#      ttft: 8K and 32K prompts, 8 output tokens, concurrency 1; serve: bs64, 1K in / 128 out
#    then sage_attn with SGLANG_SAGE_PAGED_EXTEND=prefix for the ttft grid only.
# H100, ~5.5 min. Back: results/kernel_bench.{json,md}, results/{ttft_paged,serve,ttft_prefix}.json,
# logs.tar.gz (server logs, stats, bench dirs).
OUT=${OUT:-/tmp/gpu_out/e2e-triton}
mkdir -p "$OUT/results"
LOG_NAME=e2e_triton.log BUDGET=${E2E_BUDGET_S:-570}
# shellcheck disable=SC1091
source bench/gpu/common.sh

step "kernel bench"
timeout 150 python3 bench/kernel_bench.py --out "$OUT/results" > "$OUT/logs/kernel_bench.out" 2>&1
echo "kernel_bench rc=$?"; sed -n 1,14p "$OUT/results/kernel_bench.md" 2>/dev/null

step "8B dummy model"
ensure_models
M=$MODELS/llama31-8b-dummy
COMMON=(--model-path "$M" --load-format dummy --disable-radix-cache --chunked-prefill-size 8192
  --mem-fraction-static 0.42 --max-total-tokens 100000 --random-seed 0)

step "servers: sage_attn (paged, default) + triton"
mkdir -p "$OUT/stats_sage" "$OUT/stats_sage_prefix"
launch sage 31000 SGLANG_SAGE_STATS_DIR="$OUT/stats_sage" -- "${COMMON[@]}" --attention-backend sage_attn
sleep 3
launch triton 31001 -- "${COMMON[@]}" --attention-backend triton
wait_healthy 31000 240 && wait_healthy 31001 120
grep -h "sage_attn:" "$OUT/logs/sage.log" | head -5

bench() {  # bench NAME SAGE_URL STATS_DIR GRID_ARGS...
  local name=$1 url=$2 stats=$3; shift 3
  step "bench $name ($(left) s left)"
  timeout -s INT -k 10 200 "${SS[@]}" bench throughput --sage-url "$url" --baseline-url http://127.0.0.1:31001 \
    --sage-stats-dir "$stats" -o "$OUT/bench_$name" "$@"
  echo "bench $name rc=$?"
  cp "$OUT/bench_$name/throughput.json" "$OUT/results/$name.json" 2>/dev/null
  timeout 40 "${SS[@]}" bench report -o "$OUT/bench_$name" > /dev/null 2>&1 \
    && sed -n '1,200p' "$OUT/bench_$name/report.md"
}
bench ttft_paged http://127.0.0.1:31000 "$OUT/stats_sage" --input-lens 8192,32768 --output-lens 8 --concurrency 1 --num-prompts 8
bench serve http://127.0.0.1:31000 "$OUT/stats_sage" --input-lens 1024 --output-lens 128 --concurrency 64 --num-prompts 256
kill -TERM -- "-${SERVER_PIDS[0]}" 2>/dev/null; sleep 6; kill -KILL -- "-${SERVER_PIDS[0]}" 2>/dev/null

step "server: sage_attn with SGLANG_SAGE_PAGED_EXTEND=prefix"
launch sage_prefix 31002 SGLANG_SAGE_STATS_DIR="$OUT/stats_sage_prefix" SGLANG_SAGE_PAGED_EXTEND=prefix -- \
  "${COMMON[@]}" --attention-backend sage_attn
if wait_healthy 31002 200; then
  bench ttft_prefix http://127.0.0.1:31002 "$OUT/stats_sage_prefix" --input-lens 8192,32768 --output-lens 8 --concurrency 1 --num-prompts 8
fi
stop_all

step "collect"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs stats_sage stats_sage_prefix $(cd "$OUT" && ls -d bench_* 2>/dev/null) && rm -rf "$OUT"/logs "$OUT"/bench_* "$OUT"/stats_*
ls -la "$OUT" "$OUT/results"
echo "[e2e] total $(( $(date +%s) - T_START )) s"
