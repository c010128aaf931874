#!/usr/bin/env python3
"""Tiny HTTP client for an SGLang server: wait for health, send /generate requests."""

import argparse
import json
import os
import sys
import time
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("cmd")
p.add_argument("--port", type=int, default=30000)
p.add_argument("--timeout", type=float, default=300)
p.add_argument("--pid", type=int, default=0)
a = p.parse_args()
base = f"http://127.0.0.1:{a.port}"


def post(path, obj):
    req = urllib.request.Request(
        base + path, data=json.dumps(obj).encode(), headers={"Content-Type": "application/json"}
    )
    t = time.time()
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read()), time.time() - t


if a.cmd == "wait":
    t0 = time.time()
    while time.time() - t0 < a.timeout:
        if a.pid:
            try:
                os.kill(a.pid, 0)
            except OSError:
                print("server process died")
                sys.exit(2)
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as r:
                if r.status == 200:
                    print(f"healthy after {time.time() - t0:.0f}s")
                    sys.exit(0)
        except Exception:
            pass
        time.sleep(2)
    print("timeout waiting for server")
    sys.exit(1)
if a.cmd == "generate":
    sp = {"max_new_tokens": 32, "temperature": 0}
    r, dt = post("/generate", {"text": "def fibonacci(n):", "sampling_params": sp})
    print(f"/generate text -> {dt * 1000:.0f} ms: {json.dumps(r)[:400]}")
    r, dt = post("/generate", {"input_ids": [1, 320, 597, 79, 334], "sampling_params": sp})
    keys = ("prompt_tokens", "completion_tokens", "finish_reason")
    meta = {k: r.get("meta_info", {}).get(k) for k in keys}
    print(
        f"/generate input_ids -> {dt * 1000:.0f} ms: "
        f"output_ids[:8]={r.get('output_ids', [])[:8]} meta={meta}"
    )
    r, dt = post(
        "/generate",
        {"text": ["import os", "class Foo:", "for i in range(", "x = "], "sampling_params": sp},
    )
    done = [x["meta_info"]["completion_tokens"] for x in r]
    print(f"/generate batch of 4 -> {dt * 1000:.0f} ms, completion_tokens={done}")
    try:
        with urllib.request.urlopen(base + "/get_server_info", timeout=10) as rr:
            info = json.loads(rr.read())
            print(
                "server_info:",
                {
                    k: info.get(k)
                    for k in (
                        "attention_backend",
                        "sampling_backend",
                        "grammar_backend",
                        "max_total_num_tokens",
                        "cuda_graph_max_bs",
                        "version",
                    )
                },
            )
    except Exception as e:
        print("get_server_info:", e)
