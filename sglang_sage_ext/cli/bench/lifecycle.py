"""Launched servers die with `bench`: signal handlers, a registry of live groups, PDEATHSIG.

A launched server runs in its own session (start_new_session), so neither Ctrl-C in the
terminal nor a closed terminal (SIGHUP) reaches it. Three layers make sure it never outlives
`bench` and keeps holding the GPU:

- every live server's process group is registered here; SIGINT, SIGTERM and SIGHUP first send
  SIGTERM to those groups (so blocked HTTP requests fail at once), then raise `Interrupted`,
  whose `finally` blocks stop the servers for good (TERM, wait, KILL);
- on Linux the server process gets `prctl(PR_SET_PDEATHSIG, SIGKILL)` before exec, so the
  kernel kills it when `bench` itself is killed with SIGKILL (no handler can run then); SGLang's
  own schedulers already die with their launcher;
- the exit code is 128 + the signal number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

PR_SET_PDEATHSIG = 1
#: Signals that stop a run (and every server it launched).
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)

_live_groups: set[int] = set()
_active = threading.local()


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which (the exit code is 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def signal_name(signum: int) -> str:
    """'SIGTERM' for 15, etc. (the number when the platform has no name for it)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def exit_code(signum: int) -> int:
    """The shell convention for "killed by signal N": 128 + N."""
    return 128 + int(signum)


def register(pgid: int) -> None:
    """Remember a launched server's process group until `unregister`."""
    _live_groups.add(pgid)


def unregister(pgid: int) -> None:
    _live_groups.discard(pgid)


def live_groups() -> list[int]:
    """Process groups of servers launched and not yet stopped (for tests and the handler)."""
    return sorted(_live_groups)


def signal_all(sig: int = signal.SIGTERM) -> None:
    """Send `sig` to every registered server group (never blocks; errors are ignored)."""
    for pgid in list(_live_groups):
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(pgid, sig)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While active, SIGINT/SIGTERM/SIGHUP raise `Interrupted` (once) after TERM-ing servers.

    Reentrant (an inner use is a no-op) and a no-op outside the main thread, where Python
    cannot install handlers. Later signals during the cleanup are ignored, so a second Ctrl-C
    cannot interrupt the `finally` that stops the servers.
    """
    if getattr(_active, "on", False) or threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        signal_all(signal.SIGTERM)
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    _active.on = True
    try:
        yield
    finally:
        _active.on = False
        for sig, old in previous.items():
            signal.signal(sig, old)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGKILL when this process dies (Linux only).

    Resolved before the fork (no dlopen in the child). PR_SET_PDEATHSIG fires when the thread
    that forked exits, so servers are launched from the main thread. If this process died
    between fork and prctl, the child kills itself at once. None where the OS has no prctl.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec
