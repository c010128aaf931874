#!/usr/bin/env python3
"""Held-out perplexity text, extracted deterministically from this machine's stdlib sources.

The files are split train / held-out by a seeded hash of their stdlib-relative path (the same
split the trainer uses, see tinylm_data.py), so the models never saw these files. Generated on
the spot instead of committed: no large files in git. `bench/data/heldout_small.txt` is a small
committed excerpt made with `--max-bytes 190000` on Python 3.11.

usage: python3 make_heldout_text.py OUT.txt [--max-bytes N] [--seed SPLIT_SEED]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tinylm_data as data


def make_heldout(out: Path, max_bytes: int | None = 2_000_000, seed: str = data.SPLIT_SEED) -> dict:
    """Write the held-out text (cut at the last line end within `max_bytes`); return a summary."""
    text = data.heldout_text(max_bytes=max_bytes, seed=seed)
    if max_bytes is not None and len(text.encode()) >= max_bytes - 4 and "\n" in text:
        text = text[: text.rindex("\n") + 1]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    raw = text.encode()
    return {
        "path": str(out),
        "bytes": len(raw),
        "files": text.count("\n# ---- "),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "stdlib": str(data.stdlib_dir()),
        "split_seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--max-bytes", type=int, default=2_000_000, help="0 = everything")
    ap.add_argument("--seed", default=data.SPLIT_SEED, help="split seed")
    args = ap.parse_args(argv)
    print(make_heldout(args.out, args.max_bytes or None, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
