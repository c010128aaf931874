"""Counts of Sage and fallback extend calls in this process, logged once per reason.

Counts are per attention call (one per layer per batch). Set SGLANG_SAGE_STATS_DIR to have
every SGLang process write them to `<dir>/sage_stats.<pid>.json` (what `bench`, the tests and
`doctor --stats-dir` read), since the backend lives in the scheduler subprocess. A daemon
thread writes the file at most every 0.5 s while counts change, so the hot path only counts.

The directory may be shared (e.g. /tmp), so files are written without following anything
another user planted there: a temp file created exclusively (O_EXCL|O_NOFOLLOW, mode 0600)
replaces the final name atomically (a symlink there is replaced, never followed), and
`read_stats_dir` reads only regular files, opened without following symlinks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sglang_sage_ext import env
from sglang_sage_ext.backend.fallback import EXPLAIN, PROCESS_WIDE, Reason

logger = logging.getLogger("sglang_sage_ext")

STATS_DIR_ENV = "SGLANG_SAGE_STATS_DIR"
_WRITE_INTERVAL_S = 0.5
#: Stats files are a few hundred bytes; anything much larger in the directory is not ours.
_MAX_READ_BYTES = 1 << 20
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class ExtendStats:
    """Counters for one process."""

    def __init__(self) -> None:
        self.sage_calls = 0
        self.sage_tokens = 0
        self.sage_kernels: Counter[str] = Counter()
        self.fallback_calls: Counter[str] = Counter()
        self._logged: set[Reason] = set()
        self._dirty = threading.Event()
        self._writer: threading.Thread | None = None
        self._write_failed = False

    def record_sage(self, num_tokens: int, kernel: str) -> None:
        self.sage_calls += 1
        self.sage_tokens += num_tokens
        self.sage_kernels[kernel] += 1
        if self.sage_kernels[kernel] == 1:
            logger.info("sage_attn: first extend batch on the Sage kernel %s", kernel)
        self._changed()

    def record_fallback(self, reason: Reason, detail: str = "") -> None:
        self.fallback_calls[reason.value] += 1
        self.announce(reason, detail)
        self._changed()

    def announce(self, reason: Reason, detail: str = "") -> None:
        """Log `reason` once per process (process-wide reasons as warnings)."""
        if reason not in self._logged:
            self._logged.add(reason)
            log = logger.warning if reason in PROCESS_WIDE else logger.info
            log(
                "sage_attn: extend ran on the exact native path: %s (%s)%s. "
                "Logged once per reason; later calls are only counted.",
                reason.value,
                EXPLAIN[reason],
                f" [{detail}]" if detail else "",
            )

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "sage_calls": self.sage_calls,
            "sage_tokens": self.sage_tokens,
            "sage_kernels": dict(self.sage_kernels),
            "fallback_calls": dict(self.fallback_calls),
        }

    def _changed(self) -> None:
        if not os.environ.get(STATS_DIR_ENV):
            return
        self._dirty.set()
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, daemon=True, name="sage-stats")
            self._writer.start()

    def _write_loop(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            self.flush()
            time.sleep(_WRITE_INTERVAL_S)

    def flush(self) -> None:
        """Write the stats file now (no-op unless SGLANG_SAGE_STATS_DIR is a usable directory)."""
        if not os.environ.get(STATS_DIR_ENV):
            return
        directory = env.value(STATS_DIR_ENV, logger.warning)  # invalid: one warning, no file
        if directory is None:
            return
        try:
            text = json.dumps(self.snapshot())
        except RuntimeError:  # a counter grew while being copied: write on the next round
            self._dirty.set()
            return
        try:
            write_private(Path(str(directory)) / f"sage_stats.{os.getpid()}.json", text)
        except OSError as exc:  # statistics must never break serving
            if not self._write_failed:
                self._write_failed = True
                logger.warning("sage_attn: cannot write stats into %s: %s", directory, exc)


def write_private(path: Path, text: str) -> None:
    """Atomically make `path` hold `text` (mode 0600) without following planted symlinks.

    The temp file gets a random name and O_CREAT|O_EXCL|O_NOFOLLOW, so nothing that already
    exists (a symlink included) is opened; os.replace then swaps the directory entry itself,
    so a symlink at `path` is replaced, not followed.
    """
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_regular(path: Path) -> str | None:
    """The text of `path` if it is a regular file (not a symlink, FIFO, ...) of sane size."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:  # ELOOP: a symlink
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_READ_BYTES:
            return None
        return handle.read(_MAX_READ_BYTES).decode("utf-8", errors="replace")


STATS = ExtendStats()

_KEYS = ("sage_kernels", "fallback_calls")


def read_stats_dir(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Sum the stats files every process wrote into `directory` (symlinks and junk skipped)."""
    total: dict[str, Any] = {
        "sage_calls": 0,
        "sage_tokens": 0,
        "sage_kernels": {},
        "fallback_calls": {},
        "pids": [],
    }
    for path in sorted(Path(directory).glob("sage_stats.*.json")):
        try:
            text = _read_regular(path)
            data = json.loads(text) if text is not None else None
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        try:
            _add(total, data)
        except (TypeError, ValueError, AttributeError):  # not a file this package wrote
            continue
    return total


def _add(total: dict[str, Any], data: dict[str, Any]) -> None:
    """Add one process's counts to `total` (raises on a file of the wrong shape, unchanged)."""
    calls, tokens = int(data.get("sage_calls", 0)), int(data.get("sage_tokens", 0))
    per_key = {key: {str(k): int(v) for k, v in data.get(key, {}).items()} for key in _KEYS}
    total["pids"].append(data.get("pid"))
    total["sage_calls"] += calls
    total["sage_tokens"] += tokens
    for key, counts in per_key.items():
        for name, count in counts.items():
            total[key][name] = total[key].get(name, 0) + count
