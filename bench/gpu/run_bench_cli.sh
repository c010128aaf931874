#!/bin/bash
# Every `sglang-sage bench` subcommand for real, in ONE device call (<= 9 min on an H100):
#   here: bash bench/gpu/build_bundle.sh   (the bundle must also carry rich + matplotlib)
#   device call: command `bash bench/gpu/run_bench_cli.sh`, carry [".carry"]
# Steps: bundle -> models -> tiny sage_attn + triton servers started here in parallel, and
# `mmlu`, `logits` (incl. a 16K context), `perplexity` ATTACHED to them (--sage-stats-dir) ->
# `drift` (in process) -> `throughput` LAUNCHING its own servers (8B dummy weights) -> `report`.
# What comes back in $OUT (<= 8 files, flat): bench_cli.log, report.md, report.json,
# bench_out.tar.gz (every JSON, PNG, server log and stats dir), exit_codes.txt.
# Env: TINY_MODEL (/tmp/models/tiny-llama), BIG_MODEL (/tmp/models/llama31-8b-dummy),
# BIG_LOAD_ARGS ("--load-format dummy"), BENCH_BUDGET_S (540), MODELS_DIR (/tmp/models).
set -u
OUT=${OUT:-/tmp/bench_cli_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/bench_cli.log") 2>&1
T0=$SECONDS
BUDGET=${BENCH_BUDGET_S:-540}
left() { echo $((BUDGET - (SECONDS - T0))); }
step() { echo; echo "=== [$((SECONDS - T0)) s] $*"; }
RCS="$OUT/exit_codes.txt"; : > "$RCS"
record() { echo "$1 rc=$2" | tee -a "$RCS"; }

step "setup"
if [ -f .carry/scripts/setup_site.sh ]; then
  # shellcheck disable=SC1091
  source .carry/scripts/setup_site.sh
else
  # shellcheck disable=SC1091
  source bench/gpu/setup_site.sh
fi
SCRIPTS=.carry/scripts; [ -f $SCRIPTS/make_models.py ] || SCRIPTS=bench/gpu
python3 -c "import rich" 2>/dev/null || { echo "[bench] rich is missing: add it to the bundle"; exit 2; }
PLOTS=(); python3 -c "import matplotlib" 2>/dev/null || { PLOTS=(--no-plots); echo "[bench] no matplotlib: report without plots"; }
NOPLOT=(); [ ${#PLOTS[@]} -gt 0 ] && NOPLOT=(--no-plot)
if command -v sglang-sage >/dev/null 2>&1; then SS=(sglang-sage)
else SS=(python3 -c "from sglang_sage_ext.cli import main; main()"); fi
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv 2>&1 | head -3

step "models"
MODELS=${MODELS_DIR:-/tmp/models}
TINY=${TINY_MODEL:-$MODELS/tiny-llama}
BIG=${BIG_MODEL:-$MODELS/llama31-8b-dummy}
BIG_LOAD_ARGS=${BIG_LOAD_ARGS:---load-format dummy}
if [ ! -f "$TINY/config.json" ] || [ ! -f "$BIG/config.json" ]; then
  timeout 240 python3 $SCRIPTS/make_models.py "$MODELS" || echo "[bench] make_models rc=$?"
fi
B=$OUT/bench_out; mkdir -p "$B/logs"
TEXT=${PPL_TEXT:-$(python3 -c 'import os, sysconfig; print(os.path.join(sysconfig.get_paths()["stdlib"], "argparse.py"))')}

step "tiny servers (sage_attn, triton) in parallel, for the attach-mode commands"
healthy() { python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)" "http://127.0.0.1:$1/health" >/dev/null 2>&1; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done; sleep 3;
            for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null; done; PIDS=(); }
trap cleanup EXIT INT TERM
launch() {  # name backend port
  mkdir -p "$B/stats_attached_$1"
  SGLANG_SAGE_STATS_DIR="$B/stats_attached_$1" setsid python3 -m sglang.launch_server \
    --model-path "$TINY" --host 127.0.0.1 --port "$3" --attention-backend "$2" \
    --disable-radix-cache --chunked-prefill-size 32768 --mem-fraction-static 0.3 \
    --random-seed 0 > "$B/logs/attached_$1.log" 2>&1 &
  PIDS+=($!)
}
launch sage sage_attn 31000
launch triton triton 31001
for port in 31000 31001; do
  for _ in $(seq 1 240); do
    healthy $port && break; sleep 1
  done
  healthy $port && echo "port $port healthy at $((SECONDS - T0)) s" \
    || { echo "port $port NOT healthy"; tail -30 "$B/logs/attached_"*.log; }
done
ATTACH=(--sage-url http://127.0.0.1:31000 --baseline-url http://127.0.0.1:31001
        --sage-stats-dir "$B/stats_attached_sage" -o "$B")

step "mmlu (builtin:mmlu_mini, all 40 questions)"
timeout -s INT -k 10 60 "${SS[@]}" bench mmlu "${ATTACH[@]}" --fail-if mmlu_drop=0.2
record mmlu $?

step "logits (128, 2048, 16384 tokens)"
timeout -s INT -k 10 120 "${SS[@]}" bench logits "${ATTACH[@]}" --context-lengths 128,2048,16384 \
  --prompts-per-length 2 --max-new-tokens 16 --score-last 2048 --fail-if kl_mean=0.01
record logits $?

step "perplexity ($TEXT)"
timeout -s INT -k 10 90 "${SS[@]}" bench perplexity "${ATTACH[@]}" --text-file "$TEXT" \
  --tokenizer "$TINY" --context-length 4096 --max-tokens 32768 --fail-if ppl_increase_pct=1
record perplexity $?
cleanup

step "drift (in process)"
timeout -s INT -k 10 120 "${SS[@]}" bench drift --model-path "$TINY" --context-lengths 1024,4096 \
  -o "$B" "${NOPLOT[@]}"
record drift $?

TB=$(( $(left) - 40 )); [ "$TB" -lt 90 ] && TB=90
step "throughput ($BIG, launched servers, budget $TB s)"
# shellcheck disable=SC2086
timeout -s INT -k 20 "$TB" "${SS[@]}" bench throughput --model-path "$BIG" -o "$B" \
  --input-lens 1024,8192 --output-lens 64 --concurrency 1,16 --num-prompts 16 --timeout 240 \
  --server-args "$BIG_LOAD_ARGS --chunked-prefill-size 16384 --mem-fraction-static 0.8"
record throughput $?

step "report"
timeout 60 "${SS[@]}" bench report -o "$B" "${PLOTS[@]}"
record report $?
cp "$B/report.md" "$B/report.json" "$OUT/" 2>/dev/null
tar -czf "$OUT/bench_out.tar.gz" -C "$OUT" bench_out && rm -rf "$B"
ls -la "$OUT"; cat "$RCS"
echo "[bench] total $((SECONDS - T0)) s"
