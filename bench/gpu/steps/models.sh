#!/bin/bash
# train + evaluate the two tiny offline models (bench/models/make_all.sh), then a server retrieval check
# Trains stdlib-llama-hd64/-hd128 into /tmp/sage-models (step-based: TRAIN_STEPS per variant,
# default 1400; TRAIN_CAP_S is only a safety net, by default what the budget leaves per variant),
# evaluates them (bf16 reference: perplexity, long-context retrieval), then starts a real SGLang
# server on stdlib-llama-hd128 and checks its greedy answers to retrieval prompts.
# train_results.{json,md} say `retrieval_learned: false` (plus a WARNING) when a model did not
# learn retrieval (exact match < 0.5 at 4K). H100/H200, ~6.5 min.
# Back: train_results.{json,md}, manifest.txt, server_<backend>.log.
# Env: TRAIN_STEPS (1400), TRAIN_CAP_S, MODELS_BUDGET_S (535), SERVER_BACKENDS ("triton").
OUT=${OUT:-/tmp/gpu_out/models}
LOG_NAME=run_models.log BUDGET=${MODELS_BUDGET_S:-535}
# shellcheck disable=SC1091
source bench/gpu/common.sh
MODELS=/tmp/sage-models
RES=/tmp/sage-models-results
timeout 60 python3 -c "import sys, torch, transformers, tokenizers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'cuda', torch.cuda.is_available())"

# keep ~85 s for the server check; ~40 s of make_all is data, tokenizer and the two evaluations
MB=$(( $(left) - 85 )); [ "$MB" -lt 120 ] && MB=120
STEPS=${TRAIN_STEPS:-1400}
CAP=${TRAIN_CAP_S:-$(( (MB - 40) / 2 ))}
step "make_all.sh $MODELS (budget $MB s, TRAIN_STEPS=$STEPS, time cap $CAP s per variant)"
TRAIN_STEPS=$STEPS TRAIN_CAP_S=$CAP RESULTS_DIR=$RES timeout -s INT -k 20 "$MB" \
  bash bench/models/make_all.sh "$MODELS"
echo "[models] make_all rc=$?"
cp "$RES"/train_results.json "$RES"/train_results.md "$OUT"/ 2>/dev/null

step "manifest"
{
  echo "# files under $MODELS (sizes, sha256 of configs/tokenizers)"
  find "$MODELS" -maxdepth 2 -type f -printf '%10s  %p\n' | sort -k2
  for f in "$MODELS"/*/config.json "$MODELS"/tokenizer/tokenizer.json; do
    [ -f "$f" ] && sha256sum "$f"
  done
  for d in "$MODELS"/stdlib-llama-*; do [ -f "$d/config.json" ] && { echo "## $d/config.json"; cat "$d/config.json"; }; done
} > "$OUT/manifest.txt" 2>&1

MODEL=$MODELS/stdlib-llama-hd128
for BK in ${SERVER_BACKENDS:-triton}; do
  if [ "$(left)" -lt 75 ] || [ ! -f "$MODEL/model.safetensors" ]; then
    echo "[models] server check ($BK) skipped: $(left) s left or no model"; continue
  fi
  W=$(( $(left) - 15 )); [ "$W" -gt 150 ] && W=150
  step "SGLang server on $MODEL --attention-backend $BK (wait <= $W s)"
  LOG=$OUT/server_$BK.log
  setsid python3 -m sglang.launch_server --model-path "$MODEL" --host 127.0.0.1 --port 30000 \
    --attention-backend "$BK" --sampling-backend pytorch --grammar-backend none \
    --mem-fraction-static 0.5 --disable-radix-cache > "$LOG" 2>&1 &
  SPID=$!
  timeout $((W + 10)) python3 - "$W" "$MODELS/data/retrieval_4096.jsonl" <<'PY'
import json, sys, time, urllib.request
wait_s, path = float(sys.argv[1]), sys.argv[2]
url = "http://127.0.0.1:30000"
t0 = time.time()
while time.time() - t0 < wait_s:
    try:
        if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
            break
    except Exception:
        time.sleep(1)
else:
    print(f"[server] not healthy after {wait_s} s"); sys.exit(1)
print(f"[server] healthy after {time.time() - t0:.0f} s")
recs = [json.loads(l) for l in open(path)][:8]
ok = 0
for r in recs:
    body = {"input_ids": r["input_ids"], "sampling_params": {"temperature": 0, "max_new_tokens": len(r["answer_ids"])}}
    req = urllib.request.Request(url + "/generate", json.dumps(body).encode(), {"Content-Type": "application/json"})
    out = json.loads(urllib.request.urlopen(req, timeout=60).read())
    got = out.get("output_ids") or out.get("meta_info", {}).get("output_ids")
    text = out.get("text", "")
    hit = (got == r["answer_ids"]) if got is not None else text.strip() == r["value"]
    ok += hit
    print(f"[server] key {r['key']} want {r['value']!r} got {text!r} -> {'OK' if hit else 'miss'}")
print(f"[server] retrieval@4096 via SGLang: {ok}/{len(recs)} exact")
PY
  echo "[models] server check rc=$?"
  kill -TERM -- -$SPID 2>/dev/null
  for _ in $(seq 1 20); do kill -0 $SPID 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- -$SPID 2>/dev/null
  grep -E "Load weight end|KV Cache is allocated|max_total_num_tokens|Error|error" "$LOG" | head -8
done

step "summary"
ls -la "$OUT"
timeout 20 python3 - "$OUT/train_results.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
print(f"total {r.get('total_time_s')} s; train tokens {r['data']['train_tokens']:,}; held-out tokens {r['data']['heldout_tokens']:,}")
print(f"{'variant':8} {'params':>7} {'steps':>10} {'train_s':>7} {'steps/s':>7} {'emerged':>7} {'hf_diff':>9} {'ppl@1K':>8} {'ppl@4K':>8} {'ret@4K':>7} {'ret@16K':>7} {'ret@32K':>7} learned")
for n, v in r["variants"].items():
    if "error" in v:
        print(f"{n:8} FAILED {v['error']}"); continue
    p = v["eval"]["perplexity"]["heldout_stdlib"]; q = v["eval"]["retrieval"]; t = v["train"]
    g = lambda d, k, f: (d.get(k) or {}).get(f)
    print(f"{n:8} {v['params'] / 1e6:6.1f}M {str(t['steps']) + '/' + str(t.get('max_steps')):>10} "
          f"{t['train_time_s']:7} {t.get('steps_per_s')!s:>7} {t.get('emerged_step')!s:>7} "
          f"{v['hf_check'].get('max_abs_diff_fp32', float('nan')):9.2e} {g(p, '1024', 'ppl')!s:>8} "
          f"{g(p, '4096', 'ppl')!s:>8} {g(q, '4096', 'exact')!s:>7} {g(q, '16384', 'exact')!s:>7} "
          f"{g(q, '32768', 'exact')!s:>7} {v.get('retrieval_learned')}")
for w in r.get("warnings", []):
    print(f"WARNING: {w}")
print(f"retrieval_learned: {r.get('retrieval_learned')}")
PY
echo "[models] total $(( $(date +%s) - T_START )) s"
rm -rf "$OUT/logs"
