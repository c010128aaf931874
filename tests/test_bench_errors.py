"""Launch-mode error paths of `sglang-sage bench`: one clear message each, no traceback,
no server left running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sglang_sage_ext.cli.bench import runner, servers
from sglang_sage_ext.cli.main import main
from tests._subproc import write_tree


def _invoke(args, out):
    return CliRunner().invoke(main, ["bench", *args, "-o", str(out)])


def test_unknown_backend(tiny_model_dir, tmp_path):
    res = _invoke(["mmlu", "--model-path", str(tiny_model_dir), "--baseline", "nope"], tmp_path)
    assert res.exit_code == 2, res.output
    assert "unknown attention backend 'nope'" in res.output and "triton" in res.output
    assert "Traceback" not in res.output


def test_missing_model_path(tmp_path):
    res = _invoke(["mmlu", "--model-path", str(tmp_path / "missing")], tmp_path)
    assert res.exit_code == 1
    assert "does not exist" in res.output and "Traceback" not in res.output


def test_port_in_use(tiny_model_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = _invoke(
            ["mmlu", "--model-path", str(tiny_model_dir), "--sage-port", str(port)], tmp_path
        )
    assert res.exit_code == 1
    assert f"port {port} (--sage-port) is already in use" in res.output


def test_server_that_dies_shows_log_tail_and_is_reaped(tiny_model_dir, tmp_path, monkeypatch):
    started = []

    def fake_start(
        model_path,
        *,
        attention_backend,
        port=None,
        extra_args=(),
        env=None,
        log_path=None,
        cpu=None,
    ):
        """A 'server' that logs two lines and exits 7, in its own process group."""
        script = "import sys; print('loading weights'); print('CUDA out of memory'); sys.exit(7)"
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-c", script],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        srv = servers.Server(
            proc=proc,
            port=port or servers.free_port(),
            log_path=Path(log_path),
            started=time.monotonic(),
            cmd=["fake", attention_backend],
        )
        started.append(srv)
        return srv

    monkeypatch.setattr(runner.servers, "start_server", fake_start)
    res = _invoke(["mmlu", "--model-path", str(tiny_model_dir)], tmp_path)
    assert res.exit_code == 1, res.output
    assert "did not start" in res.output and "exited with code 7" in res.output
    assert "CUDA out of memory" in res.output  # the last log lines
    assert "Traceback" not in res.output
    assert started and all(s.proc.poll() is not None for s in started)
    for s in started:
        try:
            os.killpg(s.proc.pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive


def test_model_path_problem_cases(tmp_path):
    assert servers.model_path_problem(str(tmp_path)) is not None  # dir without config.json
    (tmp_path / "config.json").write_text("{}")
    assert servers.model_path_problem(str(tmp_path)) is None
    assert "does not exist" in servers.model_path_problem("./nope/model")
    assert servers.model_path_problem("org/name") is None or os.environ.get("HF_HUB_OFFLINE")


@pytest.mark.parametrize(
    ("case", "fix"),
    [
        ("missing_wrapt", "not --no-deps"),
        ("disabled", "unset SGLANG_SAGE_EXT_DISABLE"),
    ],
)
def test_sage_attn_not_registered_names_the_cause(tiny_model_dir, tmp_path, case, fix):
    """A fresh interpreter whose bootstrap could not install the hooks (a dependency missing,
    as after `pip install --no-deps`; or switched off): one line with the cause and the fix,
    exit 1, not SGLang's bare list of backends."""
    env = dict(os.environ)
    if case == "missing_wrapt":
        stub = write_tree(
            tmp_path / "stub",
            {"wrapt/__init__.py": "raise ModuleNotFoundError(\"No module named 'wrapt'\")\n"},
        )
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stub), env.get("PYTHONPATH")]))
    else:
        env["SGLANG_SAGE_EXT_DISABLE"] = "1"
    code = "from sglang_sage_ext.cli.main import main; main()"
    args = ["bench", "mmlu", "--model-path", str(tiny_model_dir), "-o", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "does not accept --attention-backend sage_attn" in output, output
    assert fix in output and "Traceback" not in output, output
    if case == "missing_wrapt":
        assert "No module named 'wrapt'" in output, output
