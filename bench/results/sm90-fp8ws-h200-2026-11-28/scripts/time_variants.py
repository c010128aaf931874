"""Time experiment builds (make_variants.py) beside the shipped ones, attention launch only, two
interleaved rounds per shape, after checking each against float64 (rel-L2; builds that compute
garbage on purpose are skipped there). FP8 builds (names f8_*) run with FP8 P·V inputs.

usage (repo root, GPU): PYTHONPATH=$PWD python3 <this file> OUT VARIANT_DIR NAME...
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/
import llm_like_inputs as llm
import torch
from sm90_bench import SPEED, Batch, attention_launch
from triton.testing import do_bench

from sglang_sage_ext.kernels import sage_sm90
from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend

GARBAGE = ("nosoftmax", "halfpv")  # timing-only builds
CHECKS = {
    "p1000": ([1000], [0], 32, 8),
    "mixed": ([1, 77, 200, 1024], [5000, 0, 130, 64], 32, 8),
    "long": ([1024], [15360], 8, 2),  # 128 key tiles: FP8 accumulation over a long context
}
SHAPES = ("prefill_2k_28q4kv", "prefill_4k", "prefill_16k", "prefill_32k", "16x_3k_prefix_1k_new")


def specs(variant_dir: Path, names: list[str]) -> dict:
    out = {"shipped": sage_sm90.WS_FP16}
    if any(n.startswith("f8") for n in names):
        out["shipped_fp8"] = sage_sm90.spec_for(True)
    for n in names:
        base = sage_sm90.spec_for(n.startswith("f8"))
        out[n] = dataclasses.replace(base, source=variant_dir / n / "kernel.cu")
    with ThreadPoolExecutor(8) as pool:  # nvcc in parallel
        list(pool.map(lambda s: sage_sm90.build_cubin(spec=s), out.values()))
    return out


def check(all_specs: dict) -> list[dict]:
    rows = []
    for fam in ("iid", "llm"):
        for name, (ext, pre, hq, hkv) in CHECKS.items():
            shape = llm.Shape(name, tuple(pre), tuple(ext), hq, hkv, 128)
            b = Batch(**vars(llm.make_batch(fam, shape, 3, device="cuda")))
            b.o = torch.empty_like(b.q)
            ref = llm.reference(b)
            plan, ws = plan_extend(b.ext, b.pre, "cuda"), Workspace()
            row = {"check": f"{fam}/{name}"}
            for key, spec in all_specs.items():
                if not key.startswith(GARBAGE):
                    fn = attention_launch(b, plan, ws, spec)
                    b.o.fill_(float("nan"))
                    fn()
                    row[key] = llm.rel_l2(b.o, ref)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def speed(all_specs: dict) -> list[dict]:
    rows = []
    for i, name in enumerate(SHAPES):
        ext, pre, hq, hkv, *_ = SPEED[name]
        b = Batch.make(ext, pre, hq, hkv, seed=100 + i)
        plan, ws = plan_extend(b.ext, b.pre, "cuda"), Workspace()
        row: dict = {"shape": name}
        for _round in range(2):  # interleaved against drift
            for key, spec in all_specs.items():
                fn = attention_launch(b, plan, ws, spec)
                ms = do_bench(fn, warmup=30, rep=200, return_mode="median")
                row.setdefault(key, []).append(round(b.flops() / ms / 1e9, 1))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    out, variant_dir, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    all_specs = specs(variant_dir, names)
    rows = check(all_specs) + speed(all_specs)
    (out / "variants.json").write_text(json.dumps(rows, indent=1))
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
