"""Counts of Sage and fallback extend calls in this process, logged once per reason.

Counts are per attention call (one per layer per batch). Set SGLANG_SAGE_STATS_DIR to have
every SGLang process write them to `<dir>/sage_stats.<pid>.json` (what `bench`, the tests and
`doctor --stats-dir` read), since the backend lives in the scheduler subprocess. A daemon
thread writes the file at most every 0.5 s while counts change, so the hot path only counts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sglang_sage_ext.backend.fallback import EXPLAIN, PROCESS_WIDE, Reason

logger = logging.getLogger("sglang_sage_ext")

STATS_DIR_ENV = "SGLANG_SAGE_STATS_DIR"
_WRITE_INTERVAL_S = 0.5


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
        """Write the stats file now (no-op unless SGLANG_SAGE_STATS_DIR is set)."""
        directory = os.environ.get(STATS_DIR_ENV)
        if not directory:
            return
        try:
            text = json.dumps(self.snapshot())
        except RuntimeError:  # a counter grew while being copied: write on the next round
            self._dirty.set()
            return
        try:
            path = Path(directory) / f"sage_stats.{os.getpid()}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        except OSError as exc:  # statistics must never break serving
            logger.debug("sage_attn: cannot write stats: %s", exc)


STATS = ExtendStats()


def read_stats_dir(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Sum the stats files every process wrote into `directory`."""
    total: dict[str, Any] = {
        "sage_calls": 0,
        "sage_tokens": 0,
        "sage_kernels": {},
        "fallback_calls": {},
        "pids": [],
    }
    for path in sorted(Path(directory).glob("sage_stats.*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        total["pids"].append(data.get("pid"))
        total["sage_calls"] += data.get("sage_calls", 0)
        total["sage_tokens"] += data.get("sage_tokens", 0)
        for key in ("sage_kernels", "fallback_calls"):
            for name, count in data.get(key, {}).items():
                total[key][name] = total[key].get(name, 0) + count
    return total
