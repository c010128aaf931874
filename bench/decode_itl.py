"""Decode inter-token latency of `sage_attn` vs the native backends, with SGLang's own
static-batch benchmark (`sglang.bench_one_batch`: no HTTP, no scheduler noise).

One `bench_one_batch` process per backend, each over the same (batch size x context) grid;
the decode latency per step is bench_one_batch's median over `--output-len - 1` steps.
Goal (issue "decode as fast as the best native backend"): sage_attn within 3% of the fastest
native backend at every point.

    python bench/decode_itl.py --model-path /tmp/models/llama31-8b-dummy --out DIR \
        [--backends sage_attn triton flashinfer] [--grid 1,32:1024,4096 --grid 1:8192,32768] \
        [--output-len 64]

Each `--grid BATCH_SIZES:INPUT_LENS` is one bench_one_batch process per backend (it runs the
product). Separate grids keep a single prefill batch small enough for the GPU: bench_one_batch
prefills the whole batch at once (32 x 8K tokens needs ~20 GiB of MLP activations on an 8B).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

NATIVE = ("fa3", "flashinfer", "triton")
TARGET = 1.03


def parse_grid(text: str) -> tuple[list[int], list[int]]:
    """`"1,32:1024,4096"` -> ([1, 32], [1024, 4096])."""
    sizes, _, lens = text.partition(":")
    return [int(x) for x in sizes.split(",")], [int(x) for x in lens.split(",")]


def run_backend(
    args: argparse.Namespace, backend: str, grid: str, index: int, out: Path
) -> list[dict]:
    """Run bench_one_batch for one backend and grid; return its jsonl records (rank 0)."""
    batch_sizes, input_lens = parse_grid(grid)
    result = out / f"one_batch_{backend}_{index}.jsonl"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "sglang.bench_one_batch",
        "--model-path",
        args.model_path,
        "--load-format",
        "dummy",
        "--attention-backend",
        backend,
        "--sampling-backend",
        "pytorch",
        "--grammar-backend",
        "none",
        "--batch-size",
        *map(str, batch_sizes),
        "--input-len",
        *map(str, input_lens),
        "--output-len",
        str(args.output_len),
        "--result-filename",
        str(result),
        "--run-name",
        backend,
        *args.extra,
    ]
    log = out / f"one_batch_{backend}_{index}.log"
    print(f"[decode_itl] {backend}: {' '.join(cmd)}", flush=True)
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=args.timeout)
    print(f"[decode_itl] {backend}: rc={proc.returncode} in {time.monotonic() - t0:.0f} s")
    if proc.returncode != 0 or not result.exists():
        tail = log.read_text(errors="replace").splitlines()[-25:]
        print("\n".join(tail))
        return []
    return [json.loads(line) for line in result.read_text().splitlines() if line.strip()]


def table(records: dict[str, list[dict]]) -> tuple[list[dict], str]:
    """Rows per (bs, input_len): each backend's decode ms/step and sage_attn vs the best."""
    points = sorted({(r["batch_size"], r["input_len"]) for recs in records.values() for r in recs})
    rows, lines = [], []
    natives = [b for b in records if b in NATIVE]
    header = ["bs", "context", *[f"{b} ms/step" for b in records], "best native", "sage/best"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for bs, il in points:
        row: dict = {"batch_size": bs, "input_len": il}
        for backend, recs in records.items():
            hit = [r for r in recs if (r["batch_size"], r["input_len"]) == (bs, il)]
            if hit and "median_decode_latency" in hit[0]:
                row[backend] = hit[0]["median_decode_latency"] * 1e3
                row[f"{backend}_prefill_s"] = hit[0].get("prefill_latency")
        native_ms = {b: row[b] for b in natives if b in row}
        if native_ms:
            best = min(native_ms, key=native_ms.get)
            row["best_native"] = best
            if "sage_attn" in row:
                row["sage_over_best"] = row["sage_attn"] / native_ms[best]
                row["within_target"] = row["sage_over_best"] <= TARGET
        rows.append(row)
        cells = [str(bs), str(il)]
        cells += [f"{row[b]:.2f}" if b in row else "-" for b in records]
        cells.append(row.get("best_native", "-"))
        ratio = row.get("sage_over_best")
        cells.append(f"{ratio:.3f}" if ratio else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return rows, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--backends", nargs="+", default=["sage_attn", "triton", "flashinfer"])
    parser.add_argument("--grid", action="append", help="BATCH_SIZES:INPUT_LENS, repeatable")
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("extra", nargs="*", help="extra bench_one_batch args after --")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grids = args.grid or ["1,32:1024,4096", "1:8192,32768"]
    records = {
        b: [r for i, g in enumerate(grids) for r in run_backend(args, b, g, i, out)]
        for b in args.backends
    }
    rows, md = table(records)
    print(md)
    (out / "decode_itl.json").write_text(
        json.dumps({"argv": sys.argv, "target": TARGET, "rows": rows, "raw": records}, indent=2)
    )
    (out / "decode_itl.md").write_text(
        "# Decode ms/step (bench_one_batch median), sage_attn vs native backends\n\n"
        f"Command: `{' '.join(sys.argv)}`\n\n{md}\n"
    )


if __name__ == "__main__":
    main()
