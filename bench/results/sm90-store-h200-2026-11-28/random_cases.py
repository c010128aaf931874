"""The 1000-case suite's random batches (tests/gpu/test_sage_extend_kernel_gpu.py), for as many
cases as fit in a time budget, on the Hopper CUDA kernel alone (Q smoothing off and on) in one
P·V mode: rel-L2 vs float64 per family, NaN in written rows, rows past the batch touched.

usage (repo root, GPU): python3 <this file> SECONDS [fp16|fp8]
"""

import math
import random
import statistics
import sys
import time

import torch

sys.path.insert(0, ".")
import tests.gpu.test_sage_extend_kernel_gpu as suite
from sglang_sage_ext.kernels.paged_sage import sage_extend_attention

PV = sys.argv[2] if len(sys.argv) > 2 else "fp16"


def one_case(i: int, rng: random.Random, gen: torch.Generator) -> list[tuple]:
    family = suite.FAMILIES[i % len(suite.FAMILIES)]
    if family == "large" and i % (6 * len(suite.FAMILIES)) != len(suite.FAMILIES) - 2:
        family = "mixed"  # as the suite: ~1 in 6 "large" slots
    spec = suite._draw(rng, family)
    q, k, v, kb, vb, qo, kvp, kvi = suite._inputs(spec, gen)
    sm_scale = 1.0 / math.sqrt(spec["d"])
    ref = suite._reference(q, k, v, kb, vb, qo, kvp, kvi, sm_scale)
    n = sum(spec["ext"])
    rows = []
    for smooth in ("off", "on"):
        shape = (q.shape[0], spec["hq"], spec["d"])
        o = torch.full(shape, float("nan"), dtype=q.dtype, device="cuda")
        sage_extend_attention(
            q, k, v, o, kb, vb, qo, kvp, kvi, max(spec["ext"]), sm_scale, pv_mode=PV,
            kernel="sm90", q_smooth=smooth,
        )  # fmt: skip
        out = o[:n].double()
        rel = float((out - ref[:n]).norm() / ref[:n].norm())
        rows.append((family, smooth, rel, bool(out.isnan().any()), bool(o[n:].isnan().all())))
    return rows


def main(budget: float) -> None:
    rng, gen = random.Random(20261121), torch.Generator(device="cuda").manual_seed(20261121)
    rows, t0, i = [], time.time(), 0
    while time.time() - t0 < budget:
        rows += one_case(i, rng, gen)
        i += 1
    print(f"{PV} P.V: {i} cases x 2 builds in {time.time() - t0:.0f} s")
    for fam in suite.FAMILIES:
        for smooth in ("off", "on"):
            r = [x for x in rows if x[0] == fam and x[1] == smooth]
            if r:
                med, worst = statistics.median(x[2] for x in r), max(x[2] for x in r)
                bad = sum(x[3] for x in r), sum(not x[4] for x in r)
                print(fam, smooth, len(r), f"median {med:.2e} worst {worst:.2e}", "nan", bad[0],
                      "pad_touched", bad[1])  # fmt: skip


if __name__ == "__main__":
    main(float(sys.argv[1]))
