"""Launched servers die with `bench`: SIGINT, SIGTERM and SIGHUP stop them and exit with
128 + signal; SIGKILL of bench kills them through PR_SET_PDEATHSIG (Linux).

Real processes: bench runs in a fresh interpreter whose `servers.launch_command` starts a
sleeper (writes its pid, then sleeps) instead of SGLang, so everything else is the real code
path (own session, preexec prctl, handlers, killpg). Bounded waits only, no timing asserts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sglang_sage_ext.cli.bench import lifecycle

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups + prctl: Linux")

DRIVER = r"""
import os, sys
from sglang_sage_ext.cli.bench import servers
SLEEPER = "import os, sys, time; open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); "
SLEEPER += "os.replace(sys.argv[1] + '.tmp', sys.argv[1]); time.sleep(3600)"
def fake_command(model_path, attention_backend, port, cpu, extra_args=()):
    return [sys.executable, "-c", SLEEPER, os.environ["SLEEPER_PIDFILE"]]
servers.launch_command = fake_command
from sglang_sage_ext.cli.main import main
main(sys.argv[1:], prog_name="sglang-sage")
"""


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie waiting for init is dead


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_launched_server_dies_with_bench(tmp_path, sig):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    pidfile = tmp_path / "sleeper.pid"
    env = {**os.environ, "SLEEPER_PIDFILE": str(pidfile)}
    args = ["bench", "mmlu", "--model-path", str(model), "-o", str(tmp_path / "o")]
    bench = subprocess.Popen(
        [sys.executable, "-c", DRIVER, *args, "--timeout", "3600"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait(lambda: pidfile.exists() or bench.poll() is not None, 300)
        if not pidfile.exists():
            bench.kill()
            out = bench.communicate(timeout=60)[0].decode(errors="replace")
            pytest.fail(f"bench never launched the server (rc {bench.returncode}):\n{out}")
        server_pid = int(pidfile.read_text())
        assert not _gone(server_pid)
        os.kill(bench.pid, sig)
        out, _ = bench.communicate(timeout=120)
        text = out.decode(errors="replace")
        assert _wait(lambda: _gone(server_pid), 60), f"server {server_pid} outlived bench"
        if sig != signal.SIGKILL:
            assert bench.returncode == lifecycle.exit_code(sig), text
            assert "every server this run launched has been stopped" in text, text
            assert "Traceback" not in text, text
    finally:
        if bench.poll() is None:
            bench.kill()
        if pidfile.exists():
            pid = int(pidfile.read_text())
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
