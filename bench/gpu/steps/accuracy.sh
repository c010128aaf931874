#!/bin/bash
# accuracy on a trained model: sglang-sage bench perplexity + logits at 2K and 16K, sage_attn vs the native backend
# Trains stdlib-llama-hd128 (bench/models/make_all.sh, 1400 steps, 4K eval only), starts three
# servers on it (radix cache off, --chunked-prefill-size 4096): sage_attn with the cost model off
# (every extend batch of >= 16 tokens on the Sage kernel: the Hopper CUDA kernel on sm90),
# the same with SGLANG_SAGE_Q_SMOOTH=on, and the native backend $BASELINE (flashinfer), then
# `sglang-sage bench perplexity` (held-out stdlib text, 2K and 16K windows) and `bench logits`
# (2K / 16K contexts) attached, each sage server against the baseline.
# H100/H200, ~8 min. Back: results.tar.gz (results/{train_results.md,<server>_{perplexity_2k,
# perplexity_16k,logits}.json}), logs.tar.gz. Env: BASELINE (flashinfer), ACC_BUDGET_S (540).
OUT=${OUT:-/tmp/gpu_out/accuracy}
mkdir -p "$OUT/results"
LOG_NAME=accuracy.log BUDGET=${ACC_BUDGET_S:-540}
# shellcheck disable=SC1091
source bench/gpu/common.sh
MODELS=/tmp/sage-models; RES=/tmp/sage-models-results; M=$MODELS/stdlib-llama-hd128

step "train stdlib-llama-hd128"
[ -f "$M/model.safetensors" ] || RESULTS_DIR=$RES TRAIN_ARGS="--variants hd128 --eval-lengths 4096 --eval-trials 20" \
  timeout -s INT -k 10 230 bash bench/models/make_all.sh "$MODELS" > "$OUT/logs/make_all.log" 2>&1
grep -E "retrieval_learned|retrieval exact|perplexity heldout_stdlib" "$RES/train_results.md" | head -6
cp "$RES/train_results.md" "$OUT/results/" 2>/dev/null

step "servers"
BASELINE=${BASELINE:-flashinfer}
COMMON=(--model-path "$M" --disable-radix-cache --chunked-prefill-size 4096 --mem-fraction-static 0.25
  --max-total-tokens 262144 --random-seed 0)
mkdir -p "$OUT/stats_sage" "$OUT/stats_sage_smooth" "$OUT/bench"
launch sage 31000 SGLANG_SAGE_STATS_DIR="$OUT/stats_sage" SGLANG_SAGE_COST_MODEL=off \
  -- "${COMMON[@]}" --attention-backend sage_attn
sleep 3
launch sage_smooth 31002 SGLANG_SAGE_STATS_DIR="$OUT/stats_sage_smooth" SGLANG_SAGE_COST_MODEL=off \
  SGLANG_SAGE_Q_SMOOTH=on -- "${COMMON[@]}" --attention-backend sage_attn
sleep 3
launch "$BASELINE" 31001 -- "${COMMON[@]}" --attention-backend "$BASELINE"
# three servers capture CUDA graphs at once: ~3-4 min on an H200; each waited for on its own
wait_healthy 31000 300; wait_healthy 31002 60; wait_healthy 31001 60

for pair in sage:31000 sage_smooth:31002; do
  name=${pair%%:*}; port=${pair##*:}
  VS=(--sage-url "http://127.0.0.1:$port" --baseline-url http://127.0.0.1:31001
    --sage-stats-dir "$OUT/stats_$name")
  for ctx in 2048 16384; do
    step "$name perplexity @ $ctx ($(left) s left)"
    timeout -s INT -k 10 90 "${SS[@]}" bench perplexity "${VS[@]}" -o "$OUT/bench/${name}_ppl_$ctx" \
      --text-file "$MODELS/data/heldout_stdlib.txt" --tokenizer "$M" --context-length "$ctx" \
      --max-tokens 65536
    echo "perplexity rc=$?"
    cp "$OUT/bench/${name}_ppl_$ctx/perplexity.json" "$OUT/results/${name}_perplexity_$((ctx / 1024))k.json"
  done
  step "$name logits ($(left) s left)"
  timeout -s INT -k 10 90 "${SS[@]}" bench logits "${VS[@]}" -o "$OUT/bench/${name}_logits" \
    --context-lengths 2048,16384 --prompts-per-length 2 --max-new-tokens 16 --score-last 2048
  echo "logits rc=$?"
  cp "$OUT/bench/${name}_logits/logits.json" "$OUT/results/${name}_logits.json"
done
stop_all
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs bench stats_sage stats_sage_smooth \
  && rm -rf "$OUT"/logs "$OUT"/bench "$OUT"/stats_sage "$OUT"/stats_sage_smooth
# one archive: a device call returns at most 8 files
tar -czf "$OUT/results.tar.gz" -C "$OUT" results && rm -rf "$OUT/results"
ls -la "$OUT"; echo "[accuracy] total $(( $(date +%s) - T_START )) s"
