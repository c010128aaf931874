#!/bin/bash
# Build every offline model and data artefact in one command (no network needed).
#   bash bench/models/make_all.sh OUT_DIR [--cpu-only]
# GPU (torch.cuda available and no --cpu-only): held-out text, tokenizer, dummy-weight configs of
#   real architectures, then trains stdlib-llama-hd64 and stdlib-llama-hd128 for TRAIN_STEPS steps
#   each (default 1400: ~2-2.5 min per variant on an H100) and evaluates them; results in
#   $RESULTS_DIR (default OUT_DIR/results). Training is step-based: learning rate, sequence-length
#   curriculum and task mix depend on step / TRAIN_STEPS only, so a slower or faster GPU trains on
#   the same schedule and data order. TRAIN_CAP_S (default 300 s per variant, ~2x the expected
#   time) is a safety cap only: hitting it stops training early and the results say so. If a
#   model did not learn retrieval (exact match < 0.5 at the shortest eval length) the results
#   carry `retrieval_learned: false` and a WARNING line.
# CPU (--cpu-only or no CUDA): the same small parts, a toy model trained for TOY_STEPS (20) steps
#   (proves the pipeline, not a useful model) and tiny-random (sglang_sage_ext.cpu.tiny_model).
# Env: PYTHON (python3), TRAIN_STEPS, TRAIN_CAP_S, TRAIN_ARGS (extra train_tiny_llama.py flags,
#   e.g. "--variants hd128"), RESULTS_DIR, TOY_STEPS. TRAIN_S (seconds of training, before
#   training became step-based) is ignored, with a note.
set -u
OUT=${1:?usage: make_all.sh OUT_DIR [--cpu-only]}
CPU_ONLY=0; [ "${2:-}" = "--cpu-only" ] && CPU_ONLY=1
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
RESULTS=${RESULTS_DIR:-$OUT/results}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT/data" "$RESULTS"
T0=$SECONDS
step() { echo; echo "=== [make_all $((SECONDS - T0)) s] $*"; }
RC=0
STEPS=${TRAIN_STEPS:-1400}
CAP=${TRAIN_CAP_S:-300}
if [ -n "${TRAIN_S:-}" ]; then
  echo "[make_all] NOTE: TRAIN_S=$TRAIN_S ignored: training is step-based (TRAIN_STEPS=$STEPS);" \
    "the time cap per variant is TRAIN_CAP_S=$CAP"
fi

if [ "$CPU_ONLY" = 0 ] && [ "$($PY -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null)" != 1 ]; then
  echo "[make_all] no CUDA: doing the --cpu-only parts"; CPU_ONLY=1
fi

step "held-out text -> $OUT/data/heldout_stdlib.txt"
$PY "$HERE/make_heldout_text.py" "$OUT/data/heldout_stdlib.txt" --max-bytes 0 || RC=1

step "tokenizer -> $OUT/tokenizer"
$PY "$HERE/train_tiny_llama.py" --out "$OUT" --results-dir "$RESULTS" --tokenizer-only || RC=1

step "dummy-weight configs (llama31-8b, qwen25-7b, qwen25-0.5b)"
$PY "$HERE/dummy_configs.py" "$OUT" --tokenizer "$OUT/tokenizer" || RC=1

if [ "$CPU_ONLY" = 1 ]; then
  step "toy model (CPU, ${TOY_STEPS:-20} steps)"
  # shellcheck disable=SC2086
  $PY "$HERE/train_tiny_llama.py" --out "$OUT" --results-dir "$RESULTS" --variants toy \
    --max-steps "${TOY_STEPS:-20}" --time-budget-s 300 --tokens-per-step 1024 --seq-lens 128,256 \
    --eval-lengths 512,1024 --eval-trials 8 --ppl-contexts 256 --ppl-max-tokens 8192 \
    --train-bytes 2000000 --no-site-packages --max-position-embeddings 4096 --log-every 10 \
    --probe-lengths 512 --probe-trials 8 --probe-every 0 ${TRAIN_ARGS:-} || RC=1
  step "tiny-random (sglang_sage_ext.cpu.tiny_model)"
  if $PY -c "import sglang_sage_ext.cpu.tiny_model" 2>/dev/null; then
    $PY -m sglang_sage_ext.cpu.tiny_model "$OUT/tiny-random" || RC=1
  else
    echo "[make_all] sglang_sage_ext not importable: tiny-random skipped"
  fi
else
  step "train + evaluate stdlib-llama-hd64 / hd128 ($STEPS steps each, time cap $CAP s each)"
  # shellcheck disable=SC2086
  $PY "$HERE/train_tiny_llama.py" --out "$OUT" --results-dir "$RESULTS" \
    --max-steps "$STEPS" --time-budget-s "$CAP" ${TRAIN_ARGS:-} || RC=1
fi

step "done (rc=$RC)"
ls -la "$OUT" "$RESULTS"
[ -f "$RESULTS/train_results.md" ] && cat "$RESULTS/train_results.md"
# the verdict last, where nobody misses it
[ -f "$RESULTS/train_results.json" ] && $PY - "$RESULTS/train_results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for w in r.get("warnings", []):
    print(f"[make_all] WARNING: {w}")
print(f"[make_all] retrieval_learned: {r.get('retrieval_learned')}")
PY
exit $RC
