#!/bin/bash
# Issues #4 + #5 + #6 in ONE device call (<= 10 min on an H100), from the project root:
#   device call: command `bash bench/gpu/run_trained_bench.sh`, carry [".carry"]
# 1. trains stdlib-llama-hd128 (bench/models/make_all.sh, TRAIN_S s) -> /tmp/sage-models
# 2. three servers on it, started 3 s apart with a capped KV pool (sage_attn, triton,
#    flashinfer) and `sglang-sage bench` mmlu / logits / perplexity ATTACHED to them:
#    sage_attn vs triton (accuracy of the Sage prefill path) and logits vs flashinfer
#    (sage_attn's default decode backend on this bundle)
# 3. drift in process, throughput LAUNCHING its own servers on the 8B dummy, report.
# Back in $OUT: bench_cli.log, train_results.{json,md}, report.{md,json}, bench_out.tar.gz,
# exit_codes.txt. Env: TRAIN_S (120), BENCH_BUDGET_S (585).
set -u
OUT=${OUT:-/tmp/trained_bench_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/bench_cli.log") 2>&1
T0=$SECONDS
BUDGET=${BENCH_BUDGET_S:-585}
left() { echo $((BUDGET - (SECONDS - T0))); }
step() { echo; echo "=== [$((SECONDS - T0)) s] $*"; }
RCS="$OUT/exit_codes.txt"; : > "$RCS"
record() { echo "$1 rc=$2" | tee -a "$RCS"; }

step "setup"
# shellcheck disable=SC1091
source .carry/scripts/setup_site.sh
SS=(sglang-sage)
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv 2>&1 | head -3

MODELS=/tmp/sage-models; RES=/tmp/sage-models-results
step "models (hd128 only, ${TRAIN_S:-120} s of training)"
if [ ! -f "$MODELS/stdlib-llama-hd128/config.json" ]; then
  RESULTS_DIR=$RES TRAIN_S=${TRAIN_S:-120} TRAIN_ARGS="--variants hd128" \
    timeout 300 bash bench/models/make_all.sh "$MODELS" > "$OUT/make_all.log" 2>&1
  record make_all $?
  tail -25 "$OUT/make_all.log"
fi
cp "$RES"/train_results.json "$RES"/train_results.md "$OUT"/ 2>/dev/null
TINY=$MODELS/stdlib-llama-hd128; BIG=$MODELS/llama31-8b-dummy
TEXT=$MODELS/data/heldout_stdlib.txt; [ -f "$TEXT" ] || TEXT=bench/data/heldout_small.txt
B=$OUT/bench_out; mkdir -p "$B/logs"

step "servers on $TINY: sage_attn, triton, flashinfer (3 s apart, KV capped)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done; sleep 3;
            for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done; PIDS=(); }
trap cleanup EXIT INT TERM
launch() {  # name backend port
  mkdir -p "$B/stats_attached_$1"
  SGLANG_SAGE_STATS_DIR="$B/stats_attached_$1" setsid python3 -m sglang.launch_server \
    --model-path "$TINY" --host 127.0.0.1 --port "$3" --attention-backend "$2" \
    --disable-radix-cache --chunked-prefill-size 32768 --mem-fraction-static 0.5 \
    --max-total-tokens 262144 --random-seed 0 > "$B/logs/attached_$1.log" 2>&1 &
  PIDS+=($!); sleep 3
}
launch sage sage_attn 31000
launch triton triton 31001
launch flashinfer flashinfer 31002
wait_healthy() {  # port pid
  for _ in $(seq 1 150); do
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" \
      "http://127.0.0.1:$1/health" >/dev/null 2>&1 && { echo "port $1 healthy at $((SECONDS - T0)) s"; return 0; }
    kill -0 "$2" 2>/dev/null || break
    sleep 1
  done
  echo "port $1 NOT healthy"; return 1
}
wait_healthy 31000 "${PIDS[0]}" || tail -n 30 "$B/logs/attached_sage.log"
wait_healthy 31001 "${PIDS[1]}" || tail -n 30 "$B/logs/attached_triton.log"
wait_healthy 31002 "${PIDS[2]}" || tail -n 30 "$B/logs/attached_flashinfer.log"
grep -h "sage_attn:" "$B/logs/attached_sage.log" | cut -c1-220 | head -5
VS_TRITON=(--sage-url http://127.0.0.1:31000 --baseline-url http://127.0.0.1:31001
           --sage-stats-dir "$B/stats_attached_sage")

step "mmlu (builtin:mmlu_mini, all 40 questions) vs triton"
timeout -s INT -k 10 60 "${SS[@]}" bench mmlu "${VS_TRITON[@]}" -o "$B" --fail-if mmlu_drop=0.2
record mmlu $?

step "logits (128, 2048, 16384 tokens) vs triton"
timeout -s INT -k 10 100 "${SS[@]}" bench logits "${VS_TRITON[@]}" -o "$B" \
  --context-lengths 128,2048,16384 --prompts-per-length 2 --max-new-tokens 16 --score-last 2048 \
  --fail-if kl_mean=0.01
record logits $?

step "perplexity ($TEXT) vs triton"
timeout -s INT -k 10 80 "${SS[@]}" bench perplexity "${VS_TRITON[@]}" -o "$B" --text-file "$TEXT" \
  --tokenizer "$TINY" --context-length 4096 --max-tokens 32768 --fail-if ppl_increase_pct=1
record perplexity $?

step "logits (128, 2048, 16384 tokens) vs flashinfer (sage_attn's default decode backend)"
mkdir -p "$B/vs_flashinfer"
timeout -s INT -k 10 100 "${SS[@]}" bench logits --sage-url http://127.0.0.1:31000 \
  --baseline-url http://127.0.0.1:31002 --baseline flashinfer -o "$B/vs_flashinfer" \
  --sage-stats-dir "$B/stats_attached_sage" --context-lengths 128,2048,16384 \
  --prompts-per-length 2 --max-new-tokens 32 --score-last 2048 --fail-if kl_mean=0.01
record logits_vs_flashinfer $?
cleanup

step "drift (in process)"
timeout -s INT -k 10 90 "${SS[@]}" bench drift --model-path "$TINY" --context-lengths 1024,4096 -o "$B"
record drift $?

TB=$(( $(left) - 35 )); [ "$TB" -lt 60 ] && TB=60
step "throughput ($BIG, launched servers, budget $TB s)"
timeout -s INT -k 20 "$TB" "${SS[@]}" bench throughput --model-path "$BIG" -o "$B" \
  --input-lens 1024,8192 --output-lens 32 --concurrency 1,8 --num-prompts 8 --timeout 200 \
  --server-args "--load-format dummy --chunked-prefill-size 16384 --mem-fraction-static 0.8"
record throughput $?

step "report"
timeout 40 "${SS[@]}" bench report -o "$B"
record report $?
cp "$B/report.md" "$B/report.json" "$OUT/" 2>/dev/null
tar -czf "$OUT/bench_out.tar.gz" -C "$OUT" bench_out && rm -rf "$B"
ls -la "$OUT"; cat "$RCS"
echo "[bench] total $((SECONDS - T0)) s"
