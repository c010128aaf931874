"""How much the `.pth` bootstrap adds to interpreter start (target: < 5 ms).

Runs `python -c pass` many times with the bootstrap on and off (SGLANG_SAGE_EXT_DISABLE=1),
alternating, and also reads `-X importtime` for `sglang_sage_ext._bootstrap` itself.

    python bench/startup_time.py [--runs 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _start(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return (time.perf_counter() - t0) * 1e3


def _importtime_us() -> int:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        check=True,
    )
    total = 0
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        ours = ("sglang_sage_ext", "sglang_sage_ext._bootstrap")
        if len(parts) == 3 and parts[2].lstrip() in ours:
            total += int(parts[0])  # self time, microseconds
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_SAGE")}
    on, off = [], []
    for _ in range(args.runs):
        on.append(_start(base))
        off.append(_start({**base, "SGLANG_SAGE_EXT_DISABLE": "1"}))
    result = {
        "python": sys.version.split()[0],
        "runs": args.runs,
        "median_ms_bootstrap_on": round(statistics.median(on), 2),
        "median_ms_bootstrap_off": round(statistics.median(off), 2),
        "median_delta_ms": round(statistics.median(on) - statistics.median(off), 2),
        "importtime_self_us_bootstrap_modules": _importtime_us(),
    }
    print(json.dumps(result, indent=2))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
