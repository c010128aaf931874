"""Real `python -m sglang.launch_server` processes on the GPU, started in parallel.

Each server runs in its own process group (killed as a group on stop), logs to
`<log_dir>/server_<name>.log`, and gets its own SGLANG_SAGE_STATS_DIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_sage_ext.cli.bench.servers import free_port


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as exc:
        return f"<no log: {exc}>"


@dataclass
class GpuServer:
    name: str
    model: str
    args: Sequence[str]
    env: Mapping[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    ready_after_s: float | None = None
    error: str | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server_{self.name}.log"

    @property
    def stats_dir(self) -> Path:
        return self.log_dir / f"stats_{self.name}"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "sglang.launch_server",
            "--model-path",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.args,
        ]

    def start(self) -> None:
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("SGLANG_SAGE_FORCE_FALLBACK", None)
        env["SGLANG_SAGE_STATS_DIR"] = str(self.stats_dir)
        env.update(self.env)
        log = open(self.log_path, "w")  # noqa: SIM115 - the child owns it until stop()
        log.write(f"$ {' '.join(self.command)}\n# env: {dict(self.env)}\n")
        log.flush()
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float) -> bool:
        """Poll /health until 200; False (with self.error) on death or timeout."""
        assert self.proc is not None
        deadline = self.started_at + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.error = f"server {self.name} exited with {self.proc.returncode}"
                return False
            try:
                with urllib.request.urlopen(self.url("/health"), timeout=5) as r:
                    if r.status == 200:
                        self.ready_after_s = round(time.time() - self.started_at, 1)
                        return True
            except (urllib.error.URLError, OSError, TimeoutError):
                pass
            time.sleep(1.0)
        self.error = f"server {self.name} not healthy after {timeout:.0f} s"
        return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path: str, payload: Any, timeout: float = 180.0) -> Any:
        req = urllib.request.Request(
            self.url(path),
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def get_json(self, path: str, timeout: float = 10.0) -> Any:
        with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
            return json.loads(r.read())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_all(servers: Sequence[GpuServer], timeout: float, stagger_s: float = 0.0) -> None:
    """Start every server, then wait for all of them (in parallel: they share the wait)."""
    for i, srv in enumerate(servers):
        if i and stagger_s:
            time.sleep(stagger_s)
        srv.start()
    for srv in servers:
        srv.wait_ready(timeout)
