"""The e2e and tp2 GPU steps (bench/gpu/steps/{e2e,tp2}.sh) wired end to end on CPU.

A device call is expensive and runs once, so the shell plumbing is checked here: the steps run
for real with `python3` and `nvidia-smi` replaced on PATH. The fake `python3` serves
tests/fixtures/fake_sglang.py for `-m sglang.launch_server` (the sage_attn one reports every
logprob 0.25 lower), answers `-m sglang.bench_serving` with a canned result line, and hands
everything else (health checks, bench/e2e_summary.py, bench/tp_logprob_agreement.py) to the
real interpreter. Every fake call is logged with its arguments and multicast variables.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!{python}
import json, os, sys, time, urllib.request
args = sys.argv[1:]
REAL, ROOT = {python!r}, {root!r}
KEYS = ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS",
        "SGLANG_SAGE_STATS_DIR")

def record(kind):
    env = {{k: os.environ.get(k) for k in KEYS}}
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(json.dumps({{"kind": kind, "args": args, "env": env}}) + "\\n")

def opt(name):
    return args[args.index(name) + 1]

if args[:2] == ["-m", "sglang.launch_server"]:
    record("server")
    sys.path.insert(0, ROOT)
    from tests.fixtures.fake_sglang import FakeModel, fake_server
    backend = opt("--attention-backend")
    model = FakeModel(backend=backend, logprob_shift=0.25 if backend == "sage_attn" else 0.0,
                      stats_dir=os.environ.get("SGLANG_SAGE_STATS_DIR"))
    with fake_server(model, int(opt("--port"))):
        time.sleep(600)
elif args[:2] == ["-m", "sglang.bench_serving"]:
    record("client")
    url = "http://127.0.0.1:" + opt("--port") + "/get_server_info"
    sage = json.load(urllib.request.urlopen(url))["attention_backend"] == "sage_attn"
    n = int(opt("--num-prompts"))
    line = {{"completed": n, "median_e2e_latency_ms": 1000.0 if sage else 1200.0,
             "output_throughput": 3300.0 if sage else 3000.0}}
    with open(opt("--output-file"), "a") as f:
        f.write(json.dumps(line) + "\\n")
    print("Successful requests:", n)
else:
    os.execv(REAL, [REAL, *args])
"""

FAKE_NVIDIA_SMI = """#!/bin/sh
echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"
echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1)"
"""

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="bash, setsid, tar"),
    pytest.mark.release_independent,  # fake servers, no SGLang import (tests/_selection.py)
]


def _free_pair() -> int:
    """A port p with p and p + 1 free (the native and sage_attn servers)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two adjacent free ports")


def run_step(tmp_path: Path, step: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run bench/gpu/steps/STEP.sh from the repo root with the fakes; returns (result, $OUT)."""
    bin_dir, models = tmp_path / "bin", tmp_path / "models"
    bin_dir.mkdir()
    for name, text in (("python3", FAKE_PYTHON), ("nvidia-smi", FAKE_NVIDIA_SMI)):
        (bin_dir / name).write_text(text.format(python=sys.executable, root=str(ROOT)))
        (bin_dir / name).chmod(0o755)
    for model in ("llama31-8b-dummy", "tiny-llama"):  # ensure_models then has nothing to do
        (models / model).mkdir(parents=True)
        (models / model / "config.json").write_text("{}")
    out = tmp_path / "out"
    now = int(time.time())
    full_env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "OUT": str(out),
        "MODELS_DIR": str(models),
        "FAKE_CALLS": str(tmp_path / "calls.jsonl"),
        "SAGE_GPU_READY": "1",  # no bundle setup: as a step run by run.sh after the first
        "T_START": str(now),
        "DEADLINE": str(now + 570),
        "E2E_PORT": str(_free_pair()),
        "E2E_HEALTH_S": "60",
        **env,
    }
    for key in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS"):
        full_env.pop(key, None)  # the step must set them itself
    # conftest's CPU shims import torch in every interpreter; nothing here runs SGLang
    full_env.pop("SGLANG_SAGE_CPU_SHIMS", None)
    result = subprocess.run(
        ["bash", f"bench/gpu/steps/{step}.sh"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return result, out


def calls(tmp_path: Path) -> list[dict]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _value(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _without(args: list[str], flags: tuple[str, ...] = ("--port", "--attention-backend")) -> list:
    """`args` less each of `flags` and its value."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


def test_tp2_step_end_to_end(tmp_path):
    # small prompts: the fake server's toy model is pure Python
    small = "--lengths 48,64 --score-last 40 --vocab 1100 --chunk 32"
    result, out = run_step(tmp_path, "tp2", LOGPROB_ARGS=small)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    made = calls(tmp_path)
    servers = [c for c in made if c["kind"] == "server"]
    backends = [_value(c["args"], "--attention-backend") for c in servers]
    assert backends == ["flashinfer", "sage_attn"]
    for c in servers:
        a = c["args"]
        assert _value(a, "--tp") == "2" and "--disable-custom-all-reduce" in a
        assert _value(a, "--load-format") == "dummy" and _value(a, "--random-seed") == "0"
        assert c["env"]["NCCL_NVLS_ENABLE"] == "0"
        assert c["env"]["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
        assert c["env"]["NVSHMEM_DISABLE_NVLS"] == "1"
    # identical flags but the backend and the port
    assert _without(servers[0]["args"]) == _without(servers[1]["args"])
    assert servers[0]["env"]["SGLANG_SAGE_STATS_DIR"] is None
    assert servers[1]["env"]["SGLANG_SAGE_STATS_DIR"].endswith("stats_sage")
    clients = [c["args"] for c in made if c["kind"] == "client"]
    assert len(clients) == 4  # two workloads on each server
    by_file = {Path(_value(a, "--output-file")).name: a for a in clients}
    assert sorted(by_file) == sorted(
        f"{t}_{w}.jsonl" for t in ("native", "sage") for w in ("single_32k", "c64_1k_128")
    )
    assert _value(by_file["sage_single_32k.jsonl"], "--random-input-len") == "32768"
    assert _value(by_file["sage_single_32k.jsonl"], "--max-concurrency") == "1"
    assert _value(by_file["native_c64_1k_128.jsonl"], "--max-concurrency") == "64"
    assert _value(by_file["native_c64_1k_128.jsonl"], "--num-prompts") == "256"

    # what comes back: two results files + one tarball (a device call returns at most 8 files)
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "results"]
    res = out / "results"
    assert sorted(p.name for p in res.iterdir()) == [
        "e2e_vs_native.json", "e2e_vs_native.md", "logprob_agreement.json",
    ]  # fmt: skip
    summary = json.loads((res / "e2e_vs_native.json").read_text())
    assert summary["tp"] == 2 and summary["native"] == "flashinfer"
    assert list(summary["workloads"]) == ["single_32k", "c64_1k_128"]
    assert summary["workloads"]["single_32k"]["ratio"] == pytest.approx(1.2)
    assert summary["workloads"]["c64_1k_128"]["ratio"] == pytest.approx(1.1)
    agree = json.loads((res / "logprob_agreement.json").read_text())
    overall = agree["by_length"]["all"]
    assert overall["mean_abs_logprob_diff"] == pytest.approx(0.25)
    assert overall["top1_agreement"] == 1.0
    assert agree["backends"] == {"sage_attn": "sage_attn", "native": "flashinfer"}
    # counts of the logprob queries alone (the fake bench_serving never reaches the server)
    assert agree["sage_stats_during_queries"]["fallback_calls"] == {"no_cuda": 4}
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    for name in ("logs/native.log", "logs/sage.log", "logprobs/sage.json",
                 "logprobs/native.json", "jsonl/sage_c64_1k_128.jsonl"):  # fmt: skip
        assert name in names


def test_tp2_step_one_server_per_call(tmp_path):
    small = "--lengths 48 --per-length 1 --score-last 16 --vocab 1100 --chunk 32"
    result, out = run_step(tmp_path, "tp2", SKIP_SAGE="1", LOGPROB_ARGS=small,
                           WORKLOADS="single_32k")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "no logprob comparison" in result.stdout
    assert [c["kind"] for c in calls(tmp_path)] == ["server", "client"]
    summary = json.loads((out / "results" / "e2e_vs_native.json").read_text())
    assert summary["workloads"]["single_32k"]["sage_attn"] is None
    assert summary["workloads"]["single_32k"]["native"] == 1200.0
    with tarfile.open(out / "logs.tar.gz") as tar:
        assert "logprobs/native.json" in tar.getnames()


def test_e2e_step_runs_the_selected_workloads(tmp_path):
    result, out = run_step(tmp_path, "e2e", SKIP_NATIVE="1", WORKLOADS="single_1k shared_prefix")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    clients = [c["args"] for c in calls(tmp_path) if c["kind"] == "client"]
    assert [Path(_value(a, "--output-file")).name for a in clients] == [
        "sage_single_1k.jsonl", "sage_shared_prefix.jsonl",
    ]  # fmt: skip
    assert _value(clients[0], "--random-input-len") == "1024"
    assert _value(clients[1], "--dataset-name") == "generated-shared-prefix"
    assert "--tokenize-prompt" not in clients[1]
    summary = json.loads((out / "results" / "e2e_vs_native.json").read_text())
    assert list(summary["workloads"]) == ["single_1k", "shared_prefix"] and "tp" not in summary


@pytest.mark.parametrize("step", ["e2e", "tp2"])
def test_unknown_workload_stops_before_any_server(tmp_path, step):
    result, _ = run_step(tmp_path, step, WORKLOADS="single_32k single_2k")
    assert result.returncode == 2
    assert "unknown workload 'single_2k'" in result.stdout
    assert calls(tmp_path) == []
