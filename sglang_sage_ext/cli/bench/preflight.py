"""Checks that run before any work, so a run never fails after the workload (results lost).

`-o` must be a directory this process can create and write into, in attach mode as well, and
an existing `<command>.json` in it a file this process can replace;
launch mode needs an importable SGLang in this interpreter (the servers run with it).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click


def check_output_dir(path: Path, *, create: bool = True, hint: str = "-o/--output-dir") -> None:
    """BadParameter (exit 2) unless `path` is (or can be created as) a writable directory.

    Writability is tested by creating and removing a temporary file: permission bits alone
    do not tell (root, ACLs, read-only mounts).
    """
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise click.BadParameter(
                f"{str(path)!r} is not a directory; pass the -o the other commands wrote into",
                param_hint=hint,
            )
        with tempfile.NamedTemporaryFile(dir=path, prefix=".sglang-sage-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise click.BadParameter(
            f"cannot write into {str(path)!r} ({reason}); pass a directory you can write to",
            param_hint=hint,
        ) from None


def check_result_file(path: Path, *, hint: str = "-o/--output-dir") -> None:
    """BadParameter (exit 2) when an existing `path` could not be replaced by the result file
    (a directory, a file this process cannot write), found before the workload, not after it.
    """
    if path.is_dir():
        raise click.BadParameter(
            f"{str(path)!r} is a directory, so the results could not be written there; "
            "move it away or pass another directory",
            param_hint=hint,
        )
    if not path.exists():
        if path.is_symlink():
            raise click.BadParameter(
                f"{str(path)!r} is a symlink to {os.readlink(path)!r}, which does not exist; "
                "remove the link or pass another directory",
                param_hint=hint,
            )
        return
    try:
        with open(path, "ab"):  # opens for writing without changing the file
            pass
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {str(path)!r} ({exc.strerror or type(exc).__name__}); make it "
            "writable, move it away or pass another directory",
            param_hint=hint,
        ) from None


def sglang_import_problem() -> str | None:
    """None when `sglang.srt.server_args` imports here; else one line saying what failed."""
    try:
        from sglang.srt import server_args  # noqa: F401
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"{type(exc).__name__}: {first}"
    return None


def require_sglang_for_launch() -> None:
    """ClickException (exit 1) when servers must be launched but SGLang does not import."""
    problem = sglang_import_problem()
    if problem is None:
        return
    raise click.ClickException(
        f"launching servers needs SGLang in this Python ({sys.executable}), but importing "
        f"sglang.srt.server_args failed ({problem}); install SGLang here "
        "(`sglang-sage doctor` says what is wrong) or attach to running servers with "
        "--sage-url and --baseline-url"
    )


def env_flag(name: str) -> bool:
    """True when the variable is set to anything but '' or '0'."""
    return os.environ.get(name, "") not in ("", "0")
