#!/usr/bin/env python3
"""The SASS instructions where a kernel's warps stall most, from an Nsight Compute source page.

    ncu -k regex:NAME -s 2 -c 1 --section SourceCounters -o prof python3 driver.py
    ncu -i prof.ncu-rep --page source --print-source sass --csv > src.csv
    python3 bench/tools/ncu_hot_sass.py src.csv [--top 40]

Prints, per instruction: its address, stall samples (all, and not issued), share of the total,
and the SASS text; then the samples summed per opcode. Column names differ between ncu
releases, so they are matched by substring, and the header is printed when one is missing.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter


def _column(header: list[str], *needles: str) -> int | None:
    for i, name in enumerate(header):
        if all(n.lower() in name.lower() for n in needles):
            return i
    return None


def _number(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv_path")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    with open(args.csv_path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    start = next((i for i, r in enumerate(rows) if _column(r, "source") is not None), None)
    if start is None:
        print("no source table in", args.csv_path)
        return 1
    header, body = rows[start], rows[start + 1 :]
    src = _column(header, "source")
    addr = _column(header, "address")
    stall_all = _column(header, "stall sampling", "all")
    stall_ni = _column(header, "stall sampling", "not", "issued")
    if stall_all is None:
        print("no stall-sampling column; header:", header)
        return 1
    total = sum(_number(r[stall_all]) for r in body if len(r) > stall_all) or 1.0
    ranked = sorted((r for r in body if len(r) > stall_all), key=lambda r: -_number(r[stall_all]))
    print(f"total stall samples {total:.0f}")
    for r in ranked[: args.top]:
        a = r[addr] if addr is not None else "?"
        ni = _number(r[stall_ni]) if stall_ni is not None else 0.0
        share = 100 * _number(r[stall_all]) / total
        print(f"{a:>8} {_number(r[stall_all]):8.0f} {ni:8.0f} {share:5.1f}%  {r[src].strip()}")
    per_op: Counter[str] = Counter()
    for r in body:
        if len(r) > stall_all:
            text = re.sub(r"^@!?U?P\w+\s+", "", r[src].strip())
            per_op[text.split(" ")[0] if text else "?"] += _number(r[stall_all])
    print("\nper opcode:")
    for op, n in per_op.most_common(20):
        print(f"{op:32} {n:8.0f} {100 * n / total:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
