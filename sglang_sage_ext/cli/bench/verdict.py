"""Did the sage_attn side really run Sage, and is this a measurement or a smoke test?

A sage_attn server that fell back on every batch (no CUDA, an old GPU, no sageattention)
compares a native backend with the baseline: its deltas look confident and mean nothing. Such
a run fails (exit 4) unless the user passes --allow-no-sage. Runs on CPU or under Triton's
interpreter get a caveat line: the SGLang Triton reference is known to be wrong there, so the
deltas are a smoke test of the mechanics, not a measurement.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: Exit code of a run whose sage_attn server never ran Sage (without --allow-no-sage).
EXIT_NO_SAGE = 4
INTERPRETER_VARS = ("TRITON_INTERPRET", "SGLANG_SAGE_CPU_INTERPRET")

SMOKE_CAVEAT = (
    "caveat: {why}: these deltas are a smoke test of the mechanics, not a measurement "
    "(SGLang's Triton reference is known to be wrong under the CPU interpreter)"
)


def no_sage_problem(stats: Mapping[str, Any] | None) -> str | None:
    """Why the sage_attn side never ran Sage during the workload, or None when it did.

    None also when nothing was recorded (attached without --sage-stats-dir): then the run
    cannot tell, and the stats table says so.
    """
    if stats is None:
        return None
    if stats.get("sage_calls", 0) > 0:
        return None
    fallback = stats.get("fallback_calls") or {}
    if fallback:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(fallback.items()))
        how = f"every extend call fell back to the native backend ({reasons})"
    else:
        how = "no Sage call was recorded (is sglang-sage-ext installed in the server's Python?)"
    return (
        f"the sage_attn server never ran Sage: {how}; the comparison is that native "
        "backend against the baseline. Run `sglang-sage doctor` on the server machine, or pass "
        "--allow-no-sage for a smoke test"
    )


def smoke_reason(servers: Mapping[str, Any], stats: Mapping[str, Any] | None) -> str | None:
    """Why this run is only a smoke test (CPU, Triton interpreter), or None."""
    active = [v for v in INTERPRETER_VARS if os.environ.get(v, "") not in ("", "0")]
    if active:
        return "Triton interpreter (" + ", ".join(f"{v}=1" for v in active) + ")"
    if any((s or {}).get("cpu") for s in servers.values()):
        return "servers launched on CPU with the Triton interpreter (no CUDA here)"
    if "no_cuda" in ((stats or {}).get("fallback_calls") or {}):
        return "the sage_attn server has no CUDA (fallback reason no_cuda)"
    return None
