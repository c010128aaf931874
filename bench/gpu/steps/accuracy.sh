#!/bin/bash
# accuracy on a trained model: sglang-sage bench perplexity + logits, sage_attn vs triton (attached servers)
# Trains stdlib-llama-hd128 (bench/models/make_all.sh, 1400 steps, 4K eval only), starts
# sage_attn and triton servers on it (radix cache off, --chunked-prefill-size 4096: contexts
# above 4K run their later chunks on the paged Sage kernel), then `sglang-sage bench perplexity`
# (held-out stdlib text, 4K windows) and `bench logits` (128 / 2K / 16K contexts) attached.
# H200, ~1-5 min. Back: results/{train_results.md,perplexity.json,logits.json}, logs.tar.gz.
OUT=${OUT:-/tmp/gpu_out/accuracy}
mkdir -p "$OUT/results"
LOG_NAME=accuracy.log BUDGET=${ACC_BUDGET_S:-380}
# shellcheck disable=SC1091
source bench/gpu/common.sh
MODELS=/tmp/sage-models; RES=/tmp/sage-models-results; M=$MODELS/stdlib-llama-hd128

step "train stdlib-llama-hd128"
[ -f "$M/model.safetensors" ] || RESULTS_DIR=$RES TRAIN_ARGS="--variants hd128 --eval-lengths 4096 --eval-trials 20" \
  timeout -s INT -k 10 230 bash bench/models/make_all.sh "$MODELS" > "$OUT/logs/make_all.log" 2>&1
grep -E "retrieval_learned|retrieval exact|perplexity heldout_stdlib" "$RES/train_results.md" | head -6
cp "$RES/train_results.md" "$OUT/results/" 2>/dev/null

step "servers"
COMMON=(--model-path "$M" --disable-radix-cache --chunked-prefill-size 4096 --mem-fraction-static 0.35
  --max-total-tokens 262144 --random-seed 0)
mkdir -p "$OUT/stats_sage"
launch sage 31000 SGLANG_SAGE_STATS_DIR="$OUT/stats_sage" -- "${COMMON[@]}" --attention-backend sage_attn
sleep 3
launch triton 31001 -- "${COMMON[@]}" --attention-backend triton
wait_healthy 31000 150 && wait_healthy 31001 60
VS=(--sage-url http://127.0.0.1:31000 --baseline-url http://127.0.0.1:31001 --sage-stats-dir "$OUT/stats_sage" -o "$OUT/bench")

step "perplexity ($(left) s left)"
timeout -s INT -k 10 90 "${SS[@]}" bench perplexity "${VS[@]}" --text-file "$MODELS/data/heldout_stdlib.txt" \
  --tokenizer "$M" --context-length 4096 --max-tokens 65536
echo "perplexity rc=$?"
step "logits ($(left) s left)"
timeout -s INT -k 10 90 "${SS[@]}" bench logits "${VS[@]}" --context-lengths 128,2048,16384 \
  --prompts-per-length 2 --max-new-tokens 16 --score-last 2048
echo "logits rc=$?"
stop_all
cp "$OUT"/bench/perplexity.json "$OUT"/bench/logits.json "$OUT/results/" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs bench stats_sage && rm -rf "$OUT"/logs "$OUT"/bench "$OUT"/stats_sage
ls -la "$OUT" "$OUT/results"; echo "[accuracy] total $(( $(date +%s) - T_START )) s"
