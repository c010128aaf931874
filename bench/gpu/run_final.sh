#!/bin/bash
# One device call (<= 10 min, H100): perplexity of `sglang-sage bench` on the trained model
# (sage_attn vs triton, attached servers), then the full server suite (5 servers incl. the
# flashinfer decode default; SKIP_SUITE=1 skips it). carry [".carry"]:  bash bench/gpu/run_final.sh
OUT=${OUT:-/tmp/final_out}
mkdir -p "$OUT/results"
LOG_NAME=final.log
# shellcheck disable=SC1091
source bench/gpu/common.sh
MODELS=/tmp/sage-models; RES=/tmp/sage-models-results
step "train stdlib-llama-hd128 (${TRAIN_S:-100} s)"
[ -f "$MODELS/stdlib-llama-hd128/config.json" ] || RESULTS_DIR=$RES TRAIN_S=${TRAIN_S:-100} \
  TRAIN_ARGS="--variants hd128" timeout 260 bash bench/models/make_all.sh "$MODELS" > "$OUT/make_all.log" 2>&1
grep -E "retrieval exact|perplexity heldout_stdlib" "$RES/train_results.md" | head -6
cp "$RES/train_results.md" "$OUT/results/train_results_hd128.md" 2>/dev/null
TINY=$MODELS/stdlib-llama-hd128; B=$OUT/ppl; mkdir -p "$B/logs"
step "perplexity: sage_attn vs triton, attached"
PIDS=()
for spec in "sage sage_attn 31000" "triton triton 31001"; do
  set -- $spec; mkdir -p "$B/stats_$1"
  SGLANG_SAGE_STATS_DIR="$B/stats_$1" setsid python3 -m sglang.launch_server --model-path "$TINY" \
    --host 127.0.0.1 --port "$3" --attention-backend "$2" --disable-radix-cache \
    --chunked-prefill-size 32768 --mem-fraction-static 0.5 --max-total-tokens 262144 \
    --random-seed 0 > "$B/logs/$1.log" 2>&1 &
  PIDS+=($!); sleep 3
done
for port in 31000 31001; do
  for _ in $(seq 1 120); do
    python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" \
      "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 1; done
done
timeout -s INT -k 10 90 sglang-sage bench perplexity --sage-url http://127.0.0.1:31000 \
  --baseline-url http://127.0.0.1:31001 --sage-stats-dir "$B/stats_sage" -o "$B" \
  --text-file "$MODELS/data/heldout_stdlib.txt" --tokenizer "$TINY" --context-length 4096 \
  --max-tokens 65536 --fail-if ppl_increase_pct=1
echo "perplexity rc=$?"
for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done; sleep 4
for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done
cp "$B/perplexity.json" "$OUT/results/" 2>/dev/null
if [ "${SKIP_SUITE:-0}" = 1 ]; then
  tar -czf "$OUT/logs.tar.gz" -C "$OUT" ppl && rm -rf "$OUT/ppl"; echo "[final] total $((SECONDS - T0)) s"; exit 0
fi
step "server suite (5 servers, kernel tests skipped)"
OUT=$OUT/suite SKIP_KERNEL=1 SUITE_BUDGET_S=$(( 585 - (SECONDS - T0) )) bash bench/gpu/run_gpu_suite.sh > /dev/null 2>&1
echo "suite rc=$?"
tail -25 "$OUT/suite/gpu_suite.log"
cp "$OUT/suite/results/server_gpu.md" "$OUT/suite/results/server_gpu.json" "$OUT/results/" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$OUT" ppl suite && rm -rf "$OUT/ppl" "$OUT/suite"
echo "[final] total $((SECONDS - T0)) s"
