"""Launch, attach to and stop real `python -m sglang.launch_server` processes.

Every launched server runs in its own process group (start_new_session) bound to 127.0.0.1,
logs to a file, and is stopped as a group (TERM, then KILL), so no scheduler or detokenizer
outlives a benchmark, a failed start, Ctrl-C or a test.

CPU recipe (no CUDA): `--device cpu` with the Triton kernels run by Triton's interpreter
(TRITON_INTERPRET=1), SGLang's CPU code paths (SGLANG_USE_CPU_ENGINE=1) and the CPU shims in
every spawned process (SGLANG_SAGE_CPU_SHIMS=1 + the `.pth` from `cpu_shims.install_pth()`).

    with running_server(model_dir, attention_backend="triton") as srv:
        ids = generate(srv.port, [1, 2, 3], max_new_tokens=8)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sglang_sage_ext.cli.bench import lifecycle

#: Server flags for a CPU run of a tiny model (KV cache capped: it is host RAM here).
CPU_ARGS: tuple[str, ...] = (
    "--device",
    "cpu",
    "--max-total-tokens",
    "4096",
    "--disable-cuda-graph",
    # one scheduler thread: Triton's interpreter is not thread-safe, and the overlap scheduler
    # (0.4.x on CPU) runs the forward in a second thread while the scheduler thread interprets
    # write_req_to_token_pool_triton ("Did you forget to add @triton.jit?", seen on 0.4.10)
    "--disable-overlap-schedule",
    "--mem-fraction-static",
    "0.05",
    "--log-level",
    "info",
)

#: Environment for a CPU run (added to os.environ).
CPU_ENV: dict[str, str] = {
    "TRITON_INTERPRET": "1",
    "SGLANG_USE_CPU_ENGINE": "1",
    "SGLANG_SAGE_CPU_SHIMS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def cuda_available() -> bool:
    """True when torch sees a CUDA device (then the CPU recipe is not used)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def sglang_version() -> tuple[int, ...]:
    """The installed SGLang release as a tuple of ints, e.g. (0, 4, 10)."""
    from importlib.metadata import version

    return tuple(int(p) for p in version("sglang").split(".")[:3] if p.isdigit())


def cpu_args() -> list[str]:
    """CPU_ARGS plus what the installed release needs.

    `--skip-server-warmup` saves a warmup request, but on 0.4.x /health then stays 503 forever
    (the server status only turns "Up" after the warmup), so it is used from 0.5 on.
    """
    args = list(CPU_ARGS)
    if sglang_version() >= (0, 5):
        args.append("--skip-server-warmup")
    return args


#: SGLang derives more ports from --port (0.5.14: the gRPC port is port + 10000 and must stay
#: <= 65535), so launched servers get ports from this range, not the kernel's ephemeral ones.
PORT_RANGE = (20000, 50000)


def free_port() -> int:
    """A TCP port on 127.0.0.1 in PORT_RANGE that was free a moment ago."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in {PORT_RANGE} on 127.0.0.1")


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<no log: {exc}>"
    return "\n".join(lines[-n:])


@dataclass
class Server:
    """A launch_server subprocess in its own process group."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started: float
    healthy_after_s: float | None = None
    cmd: list[str] = field(default_factory=list)
    cpu: bool = False  # launched with the CPU recipe (Triton interpreter)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 40) -> str:
        return _tail(self.log_path, n)

    def wait_healthy(self, timeout: float = 300.0) -> float:
        """Poll /health until 200; raise RuntimeError (with the log tail) on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"sglang server exited with code {rc} before becoming healthy.\n"
                    f"cmd: {' '.join(self.cmd)}\n--- last 40 log lines ---\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=5) as r:
                    if r.status == 200:
                        self.healthy_after_s = time.monotonic() - self.started
                        return self.healthy_after_s
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"sglang server not healthy after {timeout:.0f} s.\n"
                    f"cmd: {' '.join(self.cmd)}\n--- last 40 log lines ---\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self, grace: float = 3.0) -> None:
        """Kill the whole process group (server, scheduler, detokenizer): TERM, then KILL."""
        if self.proc.poll() is None or _group_alive(self.proc.pid):
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, sig)
                end = time.monotonic() + wait
                while time.monotonic() < end and _group_alive(self.proc.pid):
                    self.proc.poll()
                    time.sleep(0.2)
                if not _group_alive(self.proc.pid):
                    break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if not _group_alive(self.proc.pid):
            lifecycle.unregister(self.proc.pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def launch_command(
    model_path: str | os.PathLike[str],
    attention_backend: str,
    port: int,
    cpu: bool,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The `python -m sglang.launch_server` command line (bound to 127.0.0.1)."""
    return [
        sys.executable,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--attention-backend",
        attention_backend,
        *(cpu_args() if cpu else ()),
        *extra_args,
    ]


def start_server(
    model_path: str | os.PathLike[str],
    *,
    attention_backend: str = "triton",
    port: int | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cpu: bool | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> Server:
    """Launch the server (does not wait). `cpu=None` means: CPU recipe when torch has no CUDA.

    The server gets its own session (stop() kills the whole tree), is registered with
    `lifecycle` (stop signals reach it) and, on Linux, dies with this process (PDEATHSIG).
    """
    cpu = (not cuda_available()) if cpu is None else cpu
    port = port or free_port()
    cmd = launch_command(model_path, attention_backend, port, cpu, extra_args)
    full_env = dict(os.environ)
    if cpu:
        full_env.update(CPU_ENV)
    full_env.update(env or {})
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"sglang-{port}-", suffix=".log")
        os.close(fd)
        log_path = name
    log = Path(log_path)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,  # own process group: stop() kills the whole tree
            preexec_fn=lifecycle.die_with_parent(),
        )
    lifecycle.register(proc.pid)
    return Server(proc=proc, port=port, log_path=log, started=time.monotonic(), cmd=cmd, cpu=cpu)


@contextlib.contextmanager
def running_server(
    model_path: str | os.PathLike[str], *, timeout: float = 300.0, **kwargs: object
) -> Iterator[Server]:
    """Start a server, wait until /health answers, and always kill its process group after."""
    srv = start_server(model_path, **kwargs)  # type: ignore[arg-type]
    try:
        srv.wait_healthy(timeout)
        yield srv
    finally:
        srv.stop()


def post_json(port: int, path: str, payload: Mapping[str, object], timeout: float = 300.0) -> dict:
    """POST `payload` as JSON to 127.0.0.1:`port``path` and return the decoded JSON reply."""
    from sglang_sage_ext.cli.bench import client

    return client.post_json(f"http://127.0.0.1:{port}", path, payload, timeout)


def generate(
    port: int,
    input_ids: Sequence[int],
    max_new_tokens: int = 8,
    *,
    timeout: float = 300.0,
    **sampling: object,
) -> list[int]:
    """Greedy /generate from `input_ids`; returns the new token ids.

    Newer releases return `output_ids`; 0.4.x does not (unless --skip-tokenizer-init), so the
    ids are also requested as logprobs (`meta_info.output_token_logprobs`: (logprob, id, text)).
    """
    params: dict[str, object] = {
        "temperature": 0.0,
        "max_new_tokens": max_new_tokens,
        "ignore_eos": True,
        **sampling,
    }
    payload = {"input_ids": list(input_ids), "sampling_params": params, "return_logprob": True}
    out = post_json(port, "/generate", payload, timeout)
    if "output_ids" in out:
        return [int(t) for t in out["output_ids"]]
    logprobs = (out.get("meta_info") or {}).get("output_token_logprobs")
    if logprobs is None:
        raise RuntimeError(f"/generate reply has no output_ids nor logprobs: {str(out)[:1000]}")
    return [int(entry[1]) for entry in logprobs]


# ---------------------------------------------------------------- checks before a launch


class ServerError(RuntimeError):
    """A server could not be started, died, or is not what the user asked for."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on (or holds) `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def model_path_problem(model_path: str) -> str | None:
    """None when `model_path` can be loaded offline or is a Hub id; else what is wrong.

    A path-like value (absolute, ./, ../, ~) must exist; a Hub id ("org/name") is accepted
    unless HF_HUB_OFFLINE=1 and it is not a local directory either.
    """
    path = Path(model_path).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            return f"model path {model_path!r} is a directory without config.json"
        return None
    looks_like_path = model_path.startswith(("/", "./", "../", "~")) or model_path.count("/") != 1
    if looks_like_path:
        return f"model path {model_path!r} does not exist"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return f"model {model_path!r} is not a local directory and HF_HUB_OFFLINE=1"
    return None


def backend_choices() -> list[str] | None:
    """The installed SGLang's `--attention-backend` choices (with sage_attn once patched).

    `ATTENTION_BACKEND_CHOICES` where the release has it (0.5.5+), else the argparse action
    that `ServerArgs.add_cli_args` builds (0.4.10). None when SGLang does not import here.
    """
    try:
        from sglang.srt import server_args as module
    except Exception:
        return None
    choices = getattr(module, "ATTENTION_BACKEND_CHOICES", None)
    if isinstance(choices, list) and choices:
        return list(choices)
    try:
        import argparse

        parser = argparse.ArgumentParser()
        module.ServerArgs.add_cli_args(parser)
        for action in parser._actions:
            if action.dest == "attention_backend" and action.choices:
                return list(action.choices)
    except Exception:
        return None
    return None


def get_json(base_url: str, path: str, timeout: float = 10.0) -> dict:
    """GET `base_url + path` and decode the JSON reply."""
    with urllib.request.urlopen(base_url + path, timeout=timeout) as r:
        return json.loads(r.read())


def wait_url_healthy(base_url: str, timeout: float = 30.0) -> None:
    """Raise ServerError unless `base_url/health` answers 200 within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() > deadline:
            raise ServerError(f"{base_url}/health: no HTTP 200 within {timeout:.0f} s ({last})")
        time.sleep(0.5)
