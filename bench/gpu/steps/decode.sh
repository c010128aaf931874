#!/bin/bash
# decode ms/step (ITL) per backend, sage_attn vs triton vs flashinfer (bench/decode_itl.py, bench_one_batch)
# PARTS (default "A B C"; H200, ~5.5 min):
# A. Llama-3.1-8B config (dummy weights), bs32 and bs64 with 1K context, 128 output steps.
# B. bs32 x 32K context on the same config with num_hidden_layers=4 (per-layer work unchanged;
#    16 GiB of KV; bench_one_batch prefills all 32 x 32K tokens in one forward, so B runs at
#    --mem-fraction-static 0.2 with expandable segments; if that fails, B2 halves
#    intermediate_size: decode at this point is KV-read bound).
# C. A's bs32 1K point with SGLANG_FLASHINFER_USE_TENSOR_CORE=false (flashinfer CUDA-core decode).
# G. the grid GRIDS ("--grid 1,32:1024,8192 --grid 1:32768"), OLEN (32), BACKENDS, MEMFRAC (0.7)
#    on the full 8B (bs32 x 8K is one 262K-token prefill: H200 only).
# Back: results/decode_{A,B,B2,C,G}.{json,md}, logs.tar.gz. Env: PARTS, DECODE_BUDGET_S (570).
OUT=${OUT:-/tmp/gpu_out/decode}
mkdir -p "$OUT/results"
LOG_NAME=decode.log BUDGET=${DECODE_BUDGET_S:-570}
# shellcheck disable=SC1091
source bench/gpu/common.sh
ensure_models
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
case " $PARTS " in *" G "*)
# shellcheck disable=SC2086
itl G "$(( $(left) - 20 ))" --model-path "$MODELS/llama31-8b-dummy" --backends ${BACKENDS:-sage_attn triton flashinfer} \
  ${GRIDS:---grid 1,32:1024,8192 --grid 1:32768} --output-len "${OLEN:-32}" \
  -- --mem-fraction-static "${MEMFRAC:-0.7}" ;; esac

step "collect"
tar -czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$OUT/logs"
ls -la "$OUT" "$OUT/results"
