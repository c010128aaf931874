#!/bin/bash
# Device-call body for the decode-speed comparison (issue: sage_attn decode as fast as the best
# native backend). From the project root, carry [".carry"]:  bash bench/gpu/run_decode_itl.sh
# Env: GRIDS ("--grid 1,32:1024,8192 --grid 1:32768"), OLEN (32), BACKENDS, MEMFRAC (0.7).
# bs32 x 8K is one 262K-token prefill in bench_one_batch: run it on an H200 (139 GiB);
# bs32 x 32K needs 128 GiB of KV cache for Llama-3.1-8B and fits on no single lent GPU.
OUT=${OUT:-/tmp/decode_itl_out}
LOG_NAME=decode_itl.log
# shellcheck disable=SC1091
source bench/gpu/common.sh
MODELS=${MODELS_DIR:-/tmp/models}
[ -f "$MODELS/llama31-8b-dummy/config.json" ] || timeout 240 python3 .carry/scripts/make_models.py "$MODELS"
timeout 60 "${SS[@]}" doctor --no-spawn | grep -E "GPU|decode under|sglang " || true
# shellcheck disable=SC2086
timeout 560 python3 bench/decode_itl.py --model-path "$MODELS/llama31-8b-dummy" --out "$OUT/itl" \
  --backends ${BACKENDS:-sage_attn triton flashinfer} \
  ${GRIDS:---grid 1,32:1024,8192 --grid 1:32768} --output-len "${OLEN:-32}" \
  -- --mem-fraction-static "${MEMFRAC:-0.7}"
grep -h "sage_attn:\|hybrid attention" "$OUT"/itl/one_batch_sage_attn_0.log | head -6
tar -czf "$OUT/one_batch_logs.tar.gz" -C "$OUT/itl" . && mv "$OUT"/itl/decode_itl.* "$OUT"/ && rm -rf "$OUT/itl"
ls -la "$OUT"
