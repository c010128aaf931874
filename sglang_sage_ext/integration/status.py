"""Status strings of every patch point, for `sglang-sage doctor` and the tests.

Each patch records one line per process, e.g. ``applied: ...``, ``already applied``,
``not needed: ...`` or ``failed: ...``; nothing here imports SGLang.

A recorded "applied" can go stale: re-executing a patched module (`importlib.reload`, or
deleting it from `sys.modules` and importing it again) builds fresh, unpatched objects. So a
patch may register a `verify` callable, and `snapshot()` re-checks the live objects and reports
``lost: ...`` instead of a stale "applied".
"""

from __future__ import annotations

from collections.abc import Callable

#: The patch points, in the order `doctor` prints them.
PATCH_POINTS = ("cli", "arg_choices", "decode_default", "registry", "model_runner", "plugin")

_STATUS: dict[str, str] = {}
#: point -> callable answering "is the patch still in place on the live objects?" (None: unknown)
_VERIFY: dict[str, Callable[[], bool | None]] = {}


def record(point: str, status: str, verify: Callable[[], bool | None] | None = None) -> str:
    """Remember what the patch at `point` did in this process; returns `status`."""
    _STATUS[point] = status
    if verify is not None:
        _VERIFY[point] = verify
    return status


def _live(point: str, status: str) -> str:
    verify = _VERIFY.get(point)
    if verify is None or not status.startswith(("applied", "already applied")):
        return status
    try:
        in_place = verify()
    except Exception:  # a check must never break doctor or the tests
        return status
    if in_place is False:
        return (
            "lost: the module was executed again after the patch (e.g. importlib.reload) and "
            f"its live objects are unpatched (was: {status})"
        )
    return status


def snapshot() -> dict[str, str]:
    """Every patch point's status in this process (``not triggered`` until its module loads)."""
    return {point: _live(point, _STATUS.get(point, "not triggered")) for point in PATCH_POINTS}


def is_ok(status: str) -> bool:
    """Whether a status string means the patch is in place or not needed."""
    return status.startswith(("applied", "already applied", "not needed"))
