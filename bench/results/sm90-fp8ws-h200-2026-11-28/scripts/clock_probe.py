"""SM clock and main-loop cycles per key tile of phase-trace builds (make_variants.py t_*) under
steady load: the traced launch runs 30 times back to back after do_bench and the last one's
clock64 / globaltimer marks are read (layout: csrc/sage_sm90_pipeline.cuh).

usage (repo root, GPU): PYTHONPATH=$PWD python3 <this file> OUT VARIANT_DIR NAME...
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/
import torch
from sm90_bench import SPEED, Batch, attention_launch
from triton.testing import do_bench

from sglang_sage_ext.kernels import sage_sm90
from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend

SLOTS = 12  # kTraceSlots


def probe(batch: Batch, plan, ws, spec, n_tiles: int) -> dict:
    trace = torch.zeros(batch.hq * n_tiles * 2 * SLOTS, dtype=torch.int64, device="cuda")
    fn = attention_launch(batch, plan, ws, spec, pack=False, trace=trace)
    ms = do_bench(fn, warmup=50, rep=300, return_mode="median")
    for _ in range(30):
        fn()
    torch.cuda.synchronize()
    raw = [r for r in trace.view(-1, SLOTS).tolist() if r[4] != 0]
    long_ctas = [r for r in raw if (r[1] & 0xFFFFFFFF) > 16]
    per_tile = [(r[9] - r[8]) / ((r[1] & 0xFFFFFFFF) - 1) for r in long_ctas]
    return {
        "tflops": round(batch.flops() / ms / 1e9, 1),
        "sm_ghz": round(sum(r[10] - r[4] for r in raw) / sum(r[3] - r[2] for r in raw), 3),
        "loop_cycles_per_tile": round(statistics.median(per_tile)) if per_tile else None,
        "cta_cycles_mean": round(statistics.fmean(r[10] - r[4] for r in raw)),
    }


def main() -> None:
    out, variant_dir, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, name in enumerate(("prefill_32k", "prefill_4k", "16x_3k_prefix_1k_new")):
        ext, pre, hq, hkv, *_ = SPEED[name]
        batch = Batch.make(ext, pre, hq, hkv, seed=300 + i)
        plan, ws = plan_extend(batch.ext, batch.pre, "cuda"), Workspace()
        attention_launch(batch, plan, ws, sage_sm90.WS_FP16)()  # packs K/V once
        n_tiles = plan.tiles(128).shape[0]
        for v in names:
            spec = dataclasses.replace(sage_sm90.WS_FP16, source=variant_dir / v / "kernel.cu")
            row = {"shape": name, "variant": v, **probe(batch, plan, ws, spec, n_tiles)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    (out / "clock_probe.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
