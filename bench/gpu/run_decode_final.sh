#!/bin/bash
# Issue #6, the points still open, in ONE device call (<= 9.5 min on an H200), from the repo root:
#   device call: command `bash bench/gpu/run_decode_final.sh`, kind nvidia-h200, carry [".carry"]
# A. Llama-3.1-8B config (dummy weights), decode ms/step at bs32 and bs64 with 1K context,
#    128 output steps: sage_attn vs triton vs flashinfer (the bs32 1K point was 1.033 before).
# B. bs32 x 32K context: the full 8B needs 128 GiB of KV, so the same config with
#    num_hidden_layers=4 (per-layer work unchanged; 16 GiB of KV). bench_one_batch prefills all
#    32 x 32K tokens in one forward (the MLP alone needs 56 + 28 GiB of activations: 8 layers at
#    --mem-fraction-static 0.45 ran out of memory), so B runs at 0.2 with expandable segments;
#    if that still fails, B2 halves intermediate_size (decode at this point is KV-read bound).
# C. A's bs32 1K point again with SGLANG_FLASHINFER_USE_TENSOR_CORE=false (flashinfer's CUDA-core
#    decode kernel instead of the tensor-core one SGLang picks for GQA group 4).
# Back in $OUT: decode_final.log, results/decode_{A,B,B2,C}.{json,md}, logs.tar.gz.
# Env: PARTS ("A B C"), DECODE_BUDGET_S (570).
OUT=${OUT:-/tmp/decode_final_out}
mkdir -p "$OUT/results"
LOG_NAME=decode_final.log BUDGET=${DECODE_BUDGET_S:-570}
# shellcheck disable=SC1091
source bench/gpu/common.sh
MODELS=/tmp/models
[ -f "$MODELS/llama31-8b-dummy/config.json" ] || timeout 120 python3 .carry/scripts/make_models.py "$MODELS" > "$OUT/logs/make_models.out" 2>&1
variant() {  # variant DIR KEY=VALUE...: a copy of the 8B dummy config with fields changed
  local dir=$1; shift
  mkdir -p "$dir" && cp "$MODELS"/llama31-8b-dummy/* "$dir"/ && python3 - "$dir/config.json" "$@" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
for kv in sys.argv[2:]:
    k, v = kv.split("="); cfg[k] = int(v)
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
}
M4=$MODELS/llama31-8b-dummy-4layers; variant "$M4" num_hidden_layers=4
M4H=$MODELS/llama31-8b-dummy-4layers-halfmlp; variant "$M4H" num_hidden_layers=4 intermediate_size=7168
PARTS=${PARTS:-A B C}

itl() {  # itl NAME BUDGET_S ARGS...
  local name=$1 budget=$2; shift 2
  step "$name ($(left) s left, budget $budget s)"
  timeout -s INT -k 10 "$budget" python3 bench/decode_itl.py --out "$OUT/logs/$name" "$@"
  echo "$name rc=$?"
  for ext in json md; do cp "$OUT/logs/$name/decode_itl.$ext" "$OUT/results/decode_$name.$ext" 2>/dev/null; done
  cat "$OUT/results/decode_$name.md" 2>/dev/null
}
case " $PARTS " in *" A "*)
itl A 230 --model-path "$MODELS/llama31-8b-dummy" --grid 32,64:1024 --output-len 128 \
  --backends sage_attn triton flashinfer -- --mem-fraction-static 0.7 ;; esac
case " $PARTS " in *" B "*)
PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True itl B 200 --model-path "$M4" --grid 32:32768 \
  --output-len 32 --backends sage_attn triton flashinfer -- --mem-fraction-static 0.2
if ! grep -q "^| 32 | 32768 | [0-9]" "$OUT/results/decode_B.md" 2>/dev/null; then
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True itl B2 200 --model-path "$M4H" --grid 32:32768 \
    --output-len 32 --backends sage_attn triton flashinfer -- --mem-fraction-static 0.2
fi ;; esac
case " $PARTS " in *" C "*)
SGLANG_FLASHINFER_USE_TENSOR_CORE=false itl C 110 --model-path "$MODELS/llama31-8b-dummy" \
  --grid 32:1024 --output-len 128 --backends sage_attn flashinfer -- --mem-fraction-static 0.7 ;; esac

step "collect"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
ls -la "$OUT" "$OUT/results"
echo "[decode_final] total $((SECONDS - T0)) s"
