"""Run a short Python snippet in a fresh interpreter (so `.pth` bootstrapping really happens)."""

from __future__ import annotations

import os
import subprocess
import sys


def run_python(code: str, *, env: dict[str, str | None] | None = None, timeout: float = 300) -> str:
    """Run `code` with this interpreter in a new process; return stdout, raise on failure.

    `env` entries are added to the environment; a None value removes the variable.
    """
    full_env = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"subprocess failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout
