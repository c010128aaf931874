"""`sglang-sage demo`: a real CPU run end to end, and its bad-input paths (one line each)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sglang_sage_ext.cli import demo as demo_module
from sglang_sage_ext.cli.main import main
from tests._server import cuda_available


def _one_line_error(res, exit_code: int) -> str:
    assert res.exit_code == exit_code, res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    return lines[0]


def test_missing_model_path_is_a_usage_error(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["demo", "--model-path", str(tmp_path / "missing")])
    line = _one_line_error(res, 2)
    assert "--model-path" in line and "does not exist" in line
    res = CliRunner().invoke(main, ["demo", "-o", str(out), "--model-path", str(tmp_path)])
    assert "without config.json" in _one_line_error(res, 2)
    assert not out.exists(), "nothing is created before the input is checked"


def test_sglang_not_importable_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module.servers, "cuda_available", lambda: True)  # skip CPU set-up
    monkeypatch.setattr(
        demo_module.preflight, "sglang_import_problem", lambda: "ModuleNotFoundError: sglang"
    )
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "out")])
    line = _one_line_error(res, 1)
    assert "needs SGLang" in line and "ModuleNotFoundError: sglang" in line


def test_bad_cost_model_is_a_usage_error():
    res = CliRunner().invoke(main, ["demo", "--cost-model", "sometimes"])
    assert res.exit_code == 2 and "Traceback" not in res.output


@pytest.mark.e2e
@pytest.mark.e2e_full
@pytest.mark.skipif(cuda_available(), reason="CPU recipe; on a GPU the demo runs real kernels")
def test_demo_runs_end_to_end_on_cpu(tmp_path):
    """The command a new user types first: tiny model, two CPU servers, tables, Sage counts.

    ~1.5-2.5 min a release. Its CLI code is the same on every release and the servers it starts
    run on every release in test_e2e_cpu.py, so the tox matrix runs it on the oldest and the
    newest release only (e2e_full, tests/_selection.py)."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_sage_ext.cli", "demo", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,  # generous: 2 shared cores, Triton's interpreter
        check=False,
    )
    log = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, log
    assert "Traceback" not in proc.stdout + proc.stderr, log
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == demo_module.CPU_CAVEAT and lines[-1] == demo_module.CPU_CAVEAT, log
    assert "logits: sage_attn vs triton (reference)" in proc.stdout, log
    assert "throughput: sage_attn vs triton" in proc.stdout, log
    assert "where Sage ran (sage_attn server, extend calls per layer): sage_paged:" in proc.stdout

    doc = json.loads((out / "demo.json").read_text())
    stats = doc["sage_stats"]["sage"]
    assert stats["sage_calls"] > 0, stats
    assert stats["sage_kernels"].get("sage_paged", 0) > 0, stats
    assert doc["sage_ran"] is True
    assert doc["logits"]["all"]["positions"] > 0
    assert doc["throughput"], doc["throughput"]
