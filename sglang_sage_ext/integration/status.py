"""Status strings of every patch point, for `sglang-sage doctor` and the tests.

Each patch records one line per process, e.g. ``applied: ...``, ``already applied``,
``not needed: ...`` or ``failed: ...``; nothing here imports SGLang.
"""

from __future__ import annotations

#: The patch points, in the order `doctor` prints them.
PATCH_POINTS = ("cli", "arg_choices", "decode_default", "registry", "model_runner", "plugin")

_STATUS: dict[str, str] = {}


def record(point: str, status: str) -> str:
    """Remember what the patch at `point` did in this process; returns `status`."""
    _STATUS[point] = status
    return status


def snapshot() -> dict[str, str]:
    """Every patch point's status in this process (``not triggered`` until its module loads)."""
    return {point: _STATUS.get(point, "not triggered") for point in PATCH_POINTS}


def is_ok(status: str) -> bool:
    """Whether a status string means the patch is in place or not needed."""
    return status.startswith(("applied", "already applied", "not needed"))
