#!/bin/bash
# TP=2 (issue #10 item 4): bench_serving + prompt-logprob agreement, sage_attn vs native, 2 GPUs
# Machine: nvidia-h100-x2. Two servers, one at a time, both with --tp 2 and otherwise the flags
# and workloads of steps/e2e.sh (bench/gpu/e2e_lib.sh): first the native backend (NATIVE,
# default flashinfer), then sage_attn (default routing: the cost model). On each, while it is
# up: `python -m sglang.bench_serving` workloads WORKLOADS (default "single_32k c64_1k_128"),
# then bench/tp_logprob_agreement.py query: 2x12K + 2x16K-token random-id prompts, top-5
# logprobs of the last 8K prompt positions + 1 new token. 12K/16K, not shorter: the cost model
# keeps prefix-free prefill (every chunk of a prompt <= 8K, the H100/H200 chunk size) on the
# native path, so only chunks over a cached prefix reach Sage; the comparison reports both
# regions ("prefix_free" must be exactly 0). Both servers hold the same weights: SGLang's dummy
# loader seeds each parameter with 1234 (initialize_dummy_weights), whatever --random-seed.
# But those weights are U(-1e-3, 1e-3), norms included: the logits are nearly flat and hardly
# depend on attention (on CPU, an 8-layer Llama so initialised moved its logprobs by < 1e-6
# with noise as large as the signal added to every attention output), so agreement here shows
# that TP=2 sage_attn runs, routes and stays finite, not how accurate Sage is: that is the
# suite's tiny model, random-init at std 0.02 (SGLANG_SAGE_GPU_TP=2 bash bench/gpu/run.sh suite).
# Estimate (H100 x2; e2e on one H200 took 181 s / 59 s to start the first / second server):
# setup ~25 s, native start ~120-190 s + workloads ~70 s + logprobs ~15 s, sage start ~60-120 s
# + ~85 s, summary ~15 s: ~6.5-8.5 min of the 9.5. If it does not fit, split it in two calls,
# SKIP_SAGE=1 then SKIP_NATIVE=1, and merge offline (commands at the end of this file).
# Back: results/e2e_vs_native.{json,md} ("tp": 2; sage route counts of the workloads alone),
# results/logprob_agreement.json, logs.tar.gz (server logs, jsonl, logprobs/, stats).
# Env: NATIVE, WORKLOADS, EXTRA_SERVER_ARGS, SKIP_NATIVE=1, SKIP_SAGE=1, TP_SERVER_ARGS (default
# "--tp 2 --disable-custom-all-reduce --enforce-disable-flashinfer-allreduce-fusion"),
# LOGPROB_ARGS (extra `tp_logprob_agreement.py query` options, e.g. "--lengths 16384,24576").
OUT=${OUT:-/tmp/gpu_out/tp2}
mkdir -p "$OUT/results" "$OUT/jsonl" "$OUT/logprobs"
LOG_NAME=tp2.log BUDGET=${TP2_BUDGET_S:-570}
# shellcheck disable=SC1091
source bench/gpu/common.sh
WORKLOADS=${WORKLOADS:-single_32k c64_1k_128}  # issue #10: the 32K prompt and the c64 load
# shellcheck disable=SC1091
source bench/gpu/e2e_lib.sh
NATIVE=${NATIVE:-flashinfer}
e2e_check_workloads

# NVLink multicast stays off in every server process (it can take the host's shared GPUs out of
# service): NCCL NVLS, torch symmetric-memory multicast, NVSHMEM NVLS. The machine sets these
# too; exported here so that a step started from a bare environment is safe as well.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
env | grep -E '^(NCCL_NVLS_ENABLE|TORCH_SYMM_MEM_DISABLE_MULTICAST|NVSHMEM_DISABLE_NVLS)='
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$GPUS" -lt 2 ]; then
  echo "[tp2] needs 2 GPUs, found $GPUS: run on kind nvidia-h100-x2"; exit 2
fi
# NCCL all-reduce only (no custom all-reduce: SGLang 0.5.17's v2 sits on torch symmetric memory,
# not tried on these machines; NCCL is, and the GPU suite ran TP=2 this way). Both servers get
# the same all-reduce, so the comparison is fair; FlashInfer's fused all-reduce is not auto-enabled
# for Llama, and is switched off explicitly since its workspace probes multicast objects.
TP_DEFAULT="--tp 2 --disable-custom-all-reduce --enforce-disable-flashinfer-allreduce-fusion"
# shellcheck disable=SC2206  # a word list on purpose
TP_ARGS=(${TP_SERVER_ARGS:-$TP_DEFAULT})
e2e_setup

e2e_while_up() {  # TAG PORT: called by e2e_serve after the workloads, the server still up
  local tag=$1 port=$2 stats=()
  if [ "$tag" = sage ]; then
    # the route counts of the workloads alone go to the summary; the logprob queries' own
    # counts are measured by the query (before/after) and land in logprob_agreement.json
    sleep 1; mkdir -p "$OUT/stats_workloads"
    cp "$OUT"/stats_sage/*.json "$OUT/stats_workloads/" 2>/dev/null || echo "[tp2] no stats yet"
    stats=(--stats-dir "$OUT/stats_sage")
  fi
  step "$tag prompt logprobs ($(left) s left)"
  # shellcheck disable=SC2086  # LOGPROB_ARGS is a word list on purpose
  timeout "$(e2e_cap 120)" python3 bench/tp_logprob_agreement.py query \
    --url "http://127.0.0.1:$port" --out "$OUT/logprobs/$tag.json" "${stats[@]}" ${LOGPROB_ARGS:-} \
    > "$OUT/logs/${tag}_logprobs.out" 2>&1
  echo "rc=$?"; tail -3 "$OUT/logs/${tag}_logprobs.out"
}

RC=0  # the step's exit status: 1 if a server never came up or a result is missing
if [ "${SKIP_NATIVE:-0}" != 1 ]; then
  e2e_serve native "$E2E_PORT" -- "${TP_ARGS[@]}" --attention-backend "$NATIVE" || RC=1
fi
if [ "${SKIP_SAGE:-0}" != 1 ]; then
  mkdir -p "$OUT/stats_sage"
  e2e_serve sage $((E2E_PORT + 1)) SGLANG_SAGE_STATS_DIR="$OUT/stats_sage" -- \
    "${TP_ARGS[@]}" --attention-backend sage_attn || RC=1
fi

step "summary"
python3 bench/e2e_summary.py --jsonl "$OUT/jsonl" --native "$NATIVE" --tp 2 \
  --workloads "$WORKLOADS" --stats "$OUT/stats_workloads" --out "$OUT/results" || RC=1
if [ -s "$OUT/logprobs/sage.json" ] && [ -s "$OUT/logprobs/native.json" ]; then
  python3 bench/tp_logprob_agreement.py compare --sage "$OUT/logprobs/sage.json" \
    --native "$OUT/logprobs/native.json" --out "$OUT/results/logprob_agreement.json" || RC=1
else
  echo "[tp2] no logprob comparison: it needs both servers' answers, have: $(ls "$OUT/logprobs")"
  [ "${SKIP_NATIVE:-0}" = 1 ] || [ "${SKIP_SAGE:-0}" = 1 ] || RC=1
fi
# one tarball: a device call brings back at most 8 files
dirs=()
for d in logs jsonl logprobs stats_sage stats_workloads; do [ -d "$OUT/$d" ] && dirs+=("$d"); done
tar -czf "$OUT/logs.tar.gz" -C "$OUT" "${dirs[@]}" && (cd "$OUT" && rm -rf "${dirs[@]}")
ls -la "$OUT" "$OUT/results"
exit "$RC"

# Split in two calls (merge here, on any machine with this checkout and sglang_sage_ext):
#   call 1: SKIP_SAGE=1 bash bench/gpu/run.sh tp2
#   call 2: SKIP_NATIVE=1 bash bench/gpu/run.sh tp2
#   mkdir m && tar -xzf CALL1/tp2/logs.tar.gz -C m && tar -xzf CALL2/tp2/logs.tar.gz -C m
#   python3 bench/e2e_summary.py --jsonl m/jsonl --native flashinfer --tp 2 \
#     --stats m/stats_workloads --workloads "single_32k c64_1k_128" \
#     --gpu "NVIDIA H100 80GB HBM3" --sglang 0.5.17 --out m/results
#   python3 bench/tp_logprob_agreement.py compare --sage m/logprobs/sage.json \
#     --native m/logprobs/native.json --out m/results/logprob_agreement.json
