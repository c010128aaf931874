"""Launch-mode error paths of `sglang-sage bench`: one clear message each, no traceback,
no server left running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from sglang_sage_ext.cli.bench import runner, servers
from sglang_sage_ext.cli.main import main


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
