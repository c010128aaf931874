"""Run one workload on sage_attn and on a baseline backend, launched or attached.

Launched servers start one at a time (never two models in GPU memory at once), each with
`SGLANG_SAGE_STATS_DIR=<out>/stats_<role>_<backend>` so the run records how many extend
batches really ran on Sage, and are stopped in `finally`; stop signals become an exception
while a run is in progress (see lifecycle), so Ctrl-C, SIGTERM, SIGHUP or an error never
leaves one running.
"""

from __future__ import annotations

import datetime as _dt
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from sglang_sage_ext import _bootstrap
from sglang_sage_ext.backend.stats import STATS_DIR_ENV, read_stats_dir
from sglang_sage_ext.cli.bench import (
    capacity,
    client,
    lifecycle,
    preflight,
    server_args,
    servers,
    ui,
)

SAGE_BACKEND = "sage_attn"
STATS_SETTLE_S = 1.5  # stats files are rewritten at most every 0.5 s


class BenchError(click.ClickException):
    """A failure the user can act on: printed as one message, exit code 1, no traceback."""


@dataclass
class ServerOptions:
    """How to get the two servers (common options of every HTTP subcommand)."""

    output_dir: Path
    model_path: str | None = None
    sage_url: str | None = None
    baseline_url: str | None = None
    baseline: str = "triton"
    server_args: list[str] = field(default_factory=list)
    tp: int = 1
    seed: int = 0
    timeout_s: float = 900.0
    sage_port: int | None = None
    baseline_port: int | None = None
    sage_stats_dir: str | None = None
    disable_radix_cache: bool = True

    def roles(self) -> list[tuple[str, str, str | None, int | None]]:
        """(role, backend, attached url, port) for sage then baseline."""
        return [
            ("sage", SAGE_BACKEND, self.sage_url, self.sage_port),
            ("baseline", self.baseline, self.baseline_url, self.baseline_port),
        ]


@dataclass
class Endpoint:
    """One server a workload talks to."""

    role: str
    backend: str
    base_url: str
    launched: bool
    log_path: str | None = None
    stats_dir: str | None = None
    pgid: int | None = None
    healthy_after_s: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    server: servers.Server | None = None
    cpu: bool = False

    def describe(self) -> dict[str, Any]:
        info = self.info
        return {
            "role": self.role,
            "backend": self.backend,
            "url": self.base_url,
            "launched": self.launched,
            "cpu": self.cpu,
            "log": self.log_path,
            "stats_dir": self.stats_dir,
            "healthy_after_s": self.healthy_after_s,
            "reported_backend": client.served_backend(info),
            "version": info.get("version"),
            "tp_size": info.get("tp_size"),
            "max_total_num_tokens": info.get("max_total_num_tokens"),
            "chunked_prefill_size": info.get("chunked_prefill_size"),
            "disable_radix_cache": info.get("disable_radix_cache"),
            "mem_fraction_static": info.get("mem_fraction_static"),
        }

    def check_alive(self) -> None:
        """Raise BenchError with the log tail when a launched server has exited."""
        srv = self.server
        if srv is not None and srv.proc.poll() is not None:
            raise BenchError(
                f"the {self.backend} server exited with code {srv.proc.returncode} during the "
                f"run (log: {self.log_path}).\n--- last 40 log lines ---\n{srv.log_tail()}"
            )


def parse_server_args(option_values: Sequence[str], trailing: Sequence[str]) -> list[str]:
    """`--server-args "..."` (shlex-split, repeatable) plus arguments after `--`.

    Only split here (UsageError for an unbalanced quote); `validate` vets them with SGLang's
    own parser when servers are launched.
    """
    return server_args.split(option_values, trailing)


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a server's base URL, or None."""
    if not url.startswith(("http://", "https://")):
        return "is not an http(s) URL"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname or any(c.isspace() for c in url):
        return "is not a valid URL (no host, or a space in it)"
    return None


def validate(opts: ServerOptions) -> None:
    """Fail before anything starts: backend names, model path, ports, attach URLs, args."""
    for role, _, url, _ in opts.roles():
        problem = url_problem(url) if url is not None else None
        if problem:
            raise click.BadParameter(f"{url!r} {problem}", param_hint=f"--{role}-url")
    needs_launch = [r for r in opts.roles() if r[2] is None]
    if needs_launch and not opts.model_path:
        missing = " and ".join(f"--{role}-url" for role, *_ in needs_launch)
        raise click.UsageError(f"give --model-path (to launch servers) or {missing}")
    if opts.baseline == SAGE_BACKEND:
        raise click.UsageError("--baseline must be another backend than sage_attn")
    if not needs_launch:
        if opts.server_args:
            ui.info("[yellow]warning:[/] --server-args are ignored: both servers are attached")
        return
    preflight.require_sglang_for_launch()
    note = server_args.vet(opts.server_args)
    if note:
        ui.info(f"[yellow]note:[/] {note}")
    problem = servers.model_path_problem(str(opts.model_path))
    if problem:
        raise BenchError(problem)
    choices = servers.backend_choices()
    if choices is not None:
        for _, backend, _, _ in needs_launch:
            if backend == SAGE_BACKEND and backend not in choices:
                raise BenchError(sage_not_registered())
            if backend not in choices:
                raise click.BadParameter(
                    f"unknown attention backend {backend!r}; this SGLang accepts: "
                    + ", ".join(choices),
                    param_hint="--baseline",
                )
    for role, _, _, port in needs_launch:
        if port is not None and servers.port_in_use(port):
            raise BenchError(f"port {port} (--{role}-port) is already in use on 127.0.0.1")


def sage_not_registered() -> str:
    """Why SGLang does not list sage_attn: the bootstrap's own account (a missing dependency
    such as wrapt, SGLANG_SAGE_EXT_DISABLE, an editable install without the .pth)."""
    state = _bootstrap.state.get("bootstrap", "not run")
    if state.startswith("failed"):
        fix = (
            "install the package with its dependencies (pip install sglang-sage-ext, not --no-deps)"
        )
    elif state.startswith("disabled"):
        fix = f"unset {_bootstrap.DISABLE_ENV}"
    else:
        fix = "reinstall the package as a wheel (not -e), so that its .pth runs"
    return (
        f"this SGLang does not accept --attention-backend sage_attn: the extension's hooks did "
        f"not install (bootstrap: {state}); {fix}; `sglang-sage doctor` checks the rest"
    )


def _launch(opts: ServerOptions, kind: str, role: str, backend: str, port: int | None) -> Endpoint:
    out = opts.output_dir
    (out / "logs").mkdir(parents=True, exist_ok=True)
    stats_dir = out / f"stats_{role}_{backend}"
    stats_dir.mkdir(parents=True, exist_ok=True)
    for old in stats_dir.glob("sage_stats.*.json"):
        old.unlink()
    extra = ["--random-seed", str(opts.seed)]
    if opts.tp > 1:
        extra += ["--tp", str(opts.tp)]
    if opts.disable_radix_cache:
        extra.append("--disable-radix-cache")
    extra += opts.server_args
    log_path = out / "logs" / f"{kind}_{role}_{backend}.log"
    srv = servers.start_server(
        str(opts.model_path),
        attention_backend=backend,
        port=port,
        extra_args=extra,
        env={STATS_DIR_ENV: str(stats_dir)},
        log_path=log_path,
    )
    endpoint = Endpoint(
        role=role,
        backend=backend,
        base_url=srv.base_url,
        launched=True,
        log_path=str(log_path),
        stats_dir=str(stats_dir),
        pgid=srv.proc.pid,
        server=srv,
        cpu=srv.cpu,
    )
    try:
        ui.info(f"[bold]{kind}[/]: starting the {backend} server (log: {log_path})")
        endpoint.healthy_after_s = srv.wait_healthy(opts.timeout_s)
    except RuntimeError as exc:
        srv.stop()
        raise BenchError(f"the {backend} server did not start: {exc}") from None
    except BaseException:
        srv.stop()
        raise
    return endpoint


def _attach(opts: ServerOptions, role: str, backend: str, url: str) -> Endpoint:
    url = url.rstrip("/")
    try:
        servers.wait_url_healthy(url, timeout=min(30.0, opts.timeout_s))
    except servers.ServerError as exc:
        raise BenchError(f"cannot attach to the {backend} server: {exc}") from None
    stats_dir = opts.sage_stats_dir if role == "sage" else None
    return Endpoint(role=role, backend=backend, base_url=url, launched=False, stats_dir=stats_dir)


def _read_stats(endpoint: Endpoint) -> dict[str, Any] | None:
    if not endpoint.stats_dir:
        return None
    return read_stats_dir(endpoint.stats_dir)


def stats_delta(after: dict[str, Any] | None, before: dict[str, Any] | None) -> dict | None:
    """Sage/fallback counts of the workload alone (warmup and startup subtracted)."""
    if after is None:
        return None
    before = before or {}

    def diff(key: str) -> dict[str, int]:
        new, old = after.get(key, {}), before.get(key, {})
        delta = {k: new.get(k, 0) - old.get(k, 0) for k in sorted(set(new) | set(old))}
        return {k: n for k, n in delta.items() if n}

    fallback = diff("fallback_calls")
    sage_calls = after["sage_calls"] - before.get("sage_calls", 0)
    total = sage_calls + sum(fallback.values())
    return {
        "sage_calls": sage_calls,
        "sage_tokens": after["sage_tokens"] - before.get("sage_tokens", 0),
        "sage_kernels": diff("sage_kernels"),
        "fallback_calls": fallback,
        "sage_share": sage_calls / total if total else None,
        "processes": len(after.get("pids", [])),
    }


Workload = Callable[[Endpoint], dict[str, Any]]
Warmup = Callable[[Endpoint], None]


def _open(
    opts: ServerOptions, kind: str, role: str, backend: str, url: str | None, port: int | None
) -> Endpoint:
    if url is None:
        return _launch(opts, kind, role, backend, port)
    return _attach(opts, role, backend, url)


def _measure(
    endpoint: Endpoint, workload: Workload, warmup: Warmup | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Warmup, then the workload between two stats reads; every failed reply -> BenchError."""
    phase = "talking to"
    try:
        endpoint.info = client.server_info(endpoint.base_url)
        _check_reported_backend(endpoint)
        if warmup is not None:
            phase = "warming up"
            warmup(endpoint)
        before = _read_stats(endpoint)
        phase = "running the workload on"
        result = workload(endpoint)
    except client.ClientError as exc:
        endpoint.check_alive()
        where = f" (log: {endpoint.log_path})" if endpoint.log_path else ""
        raise BenchError(
            f"while {phase} the {endpoint.backend} server at {endpoint.base_url}: {exc}; "
            f"{capacity.reply_hint(str(exc))}{where}"
        ) from None
    if endpoint.stats_dir:
        time.sleep(STATS_SETTLE_S)
    return result, stats_delta(_read_stats(endpoint), before)


def run_both(
    opts: ServerOptions,
    kind: str,
    workload: Workload,
    warmup: Warmup | None = None,
) -> dict[str, Any]:
    """Run `workload` on the sage server, then on the baseline; collect results and stats.

    Stop signals raise while this runs, and `finally` stops the server (see lifecycle).
    """
    validate(opts)
    results: dict[str, Any] = {}
    described: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    with lifecycle.stop_signals_raise():
        for role, backend, url, port in opts.roles():
            endpoint: Endpoint | None = None
            try:
                endpoint = _open(opts, kind, role, backend, url, port)
                results[role], stats[role] = _measure(endpoint, workload, warmup)
                described[role] = endpoint.describe()
            finally:
                if endpoint is not None and endpoint.server is not None:
                    endpoint.server.stop()
    return {"results": results, "servers": described, "sage_stats": stats}


def _check_reported_backend(endpoint: Endpoint) -> None:
    reported = client.served_backend(endpoint.info)
    if reported and reported != endpoint.backend:
        msg = (
            f"the server at {endpoint.base_url} reports attention backend {reported!r}, "
            f"not {endpoint.backend!r}"
        )
        if endpoint.role == "sage":
            raise BenchError(msg)
        if reported == SAGE_BACKEND:
            raise BenchError(f"{msg}: the baseline must be another backend than sage_attn")
        ui.info(f"[yellow]warning:[/] {msg}; results are labelled with {reported!r}")
        endpoint.backend = reported


def header(kind: str, opts: ServerOptions | None, config: dict[str, Any]) -> dict[str, Any]:
    """The part every result JSON shares: what ran, where, when, with which versions."""
    from sglang_sage_ext import __version__
    from sglang_sage_ext.integration.compat import installed_version

    doc: dict[str, Any] = {
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sglang_sage_ext": __version__,
        "sglang": installed_version("sglang"),
        "config": config,
    }
    if opts is not None:
        doc["config"] = {
            "model_path": opts.model_path,
            "baseline": opts.baseline,
            "server_args": opts.server_args,
            "tp": opts.tp,
            "seed": opts.seed,
            "disable_radix_cache": opts.disable_radix_cache,
            **config,
        }
    return doc


def env_flag(name: str) -> bool:
    """True when the variable is set to anything but '' or '0'."""
    return preflight.env_flag(name)
