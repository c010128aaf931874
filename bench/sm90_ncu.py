#!/usr/bin/env python3
"""Drive one kernel launch for Nsight Compute: `ncu ... python3 bench/sm90_ncu.py KERNEL SHAPE`.

KERNEL: sm90 | triton. SHAPE: a name from bench/sm90_bench.py's SPEED table. Runs the whole
call three times (warm-up, compile) so ncu can skip to a steady-state launch.
"""

from __future__ import annotations

import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from sm90_bench import SPEED, Batch

from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend


def main() -> int:
    kernel, shape = sys.argv[1], sys.argv[2]
    ext, pre, hq, hkv = SPEED[shape]
    batch = Batch.make(ext, pre, hq, hkv, seed=0)
    plan, ws = plan_extend(batch.ext, batch.pre, "cuda"), Workspace()
    for _ in range(3):
        batch.sage(kernel, plan, ws)
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
