#!/usr/bin/env python3
"""Prompt-logprob agreement of sage_attn and the native backend, one server at a time.

`sglang-sage bench logits` needs both servers up at once; the tp2 device step runs them one
after the other, so asking and comparing are split, reusing bench logits' own code
(`logits.query`, `logits.compare_samples`, `metrics.compare_logprobs`):

  query    while a server is up: empty its radix cache, send seeded random-id prompts to
           /generate (return_logprob, top-k, 1 new token), save the answers as JSON with the
           server's chunked_prefill_size and (--stats-dir) the Sage counts of these requests
  compare  offline: KL over the top-k, top-1 agreement, max/mean |delta logprob| (native =
           reference) per prompt length and overall, and per region around the first chunk
           boundary: "prefix_free" positions (< chunk) are prefilled with no cached prefix,
           which the cost model keeps on the native path (expect exactly 0); "over_prefix"
           ones (> chunk) by chunks over a cached prefix, where sage_attn runs Sage (the
           boundary token itself, scored by the first chunk's last position, is left out)

usage: python3 bench/tp_logprob_agreement.py query --url URL --out FILE [--stats-dir DIR]
       python3 bench/tp_logprob_agreement.py compare --sage FILE --native FILE --out FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from sglang_sage_ext.cli.bench import client, metrics
from sglang_sage_ext.cli.bench import logits as lg


def _stats(directory: str | None) -> dict[str, Any] | None:
    """Summed Sage/fallback counts of the server's processes (every TP rank), or None."""
    from sglang_sage_ext.backend.stats import read_stats_dir

    return read_stats_dir(directory) if directory else None


def query(args: argparse.Namespace) -> dict[str, Any]:
    """Ask the running server at args.url; returns the document `compare` reads."""
    info = client.server_info(args.url)
    prompts = lg.make_prompts(args.lengths, args.per_length, args.vocab, args.seed)
    client.flush_cache(args.url)  # both servers start from the same (empty) radix cache
    before = _stats(args.stats_dir)
    samples = [lg.query(args.url, ids, args.score_last, args.top_k, 1) for _, ids in prompts]
    stats = None
    if before is not None:
        from sglang_sage_ext.cli.bench.runner import stats_delta

        time.sleep(1.5)  # stats files are rewritten at most every 0.5 s
        stats = stats_delta(_stats(args.stats_dir), before)
    ids_json = json.dumps([ids for _, ids in prompts]).encode()
    keys = ("lengths", "per_length", "vocab", "seed", "score_last", "top_k")
    return {
        "attention_backend": client.served_backend(info),
        "tp_size": info.get("tp_size"),
        "chunked_prefill_size": info.get("chunked_prefill_size") or args.chunk,
        "prompts": {k: getattr(args, k) for k in keys}
        | {"sha256": hashlib.sha256(ids_json).hexdigest()[:16]},
        "score_from": [max(0, len(ids) - args.score_last) for _, ids in prompts],
        "samples": [dataclasses.asdict(s) for s in samples],
        "sage_stats": stats,
    }


def compare(sage: dict[str, Any], native: dict[str, Any]) -> dict[str, Any]:
    """bench logits' metrics of sage_attn against the native server (the reference)."""
    if sage["prompts"] != native["prompts"]:
        raise ValueError(f"different prompts: {sage['prompts']} vs {native['prompts']}")
    chunk = int(native["chunked_prefill_size"] or 0)
    if chunk <= 0:  # chunked prefill off: every prompt is one prefix-free extend
        chunk = max(s["context_length"] for s in native["samples"]) + 1
    regions: dict[str, tuple[list, list, list, list]] = {}
    for start, s, n in zip(native["score_from"], sage["samples"], native["samples"], strict=True):
        columns = (n["tops"], s["tops"], n["token_lps"], s["token_lps"])
        # entry j scores the token at start + j (the output token follows the prompt's last)
        for j in range(len(n["tops"])):
            pos = start + j
            key = "prefix_free" if pos < chunk else "over_prefix" if pos > chunk else None
            if key:
                acc = regions.setdefault(key, ([], [], [], []))
                for a, col in zip(acc, columns, strict=True):
                    a.append(col[j])
    gaps = sorted(t[0][0] - t[1][0] for n in native["samples"] for t in n["tops"] if len(t) > 1)
    return {
        "reference": "native",
        "backends": {"sage_attn": sage["attention_backend"], "native": native["attention_backend"]},
        "tp_size": native["tp_size"],
        "chunked_prefill_size": chunk,
        "prompts": native["prompts"],
        "by_length": lg.compare_samples(
            [lg.Sample(**x) for x in sage["samples"]], [lg.Sample(**x) for x in native["samples"]]
        ),
        "regions": {k: metrics.compare_logprobs(*v) for k, v in sorted(regions.items())},
        # how peaked the reference is: on near-flat distributions (dummy weights) tiny changes
        # flip the top-1, and |delta logprob| says more than top-1 agreement
        "reference_top1_top2_gap_median": gaps[len(gaps) // 2] if gaps else None,
        "sage_stats_during_queries": sage.get("sage_stats"),
    }


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("query", help="ask one running server, save its answers")
    q.add_argument("--url", required=True)
    q.add_argument("--out", type=Path, required=True)
    q.add_argument("--lengths", type=_ints, default=[12288, 16384], help="e.g. 12288,16384")
    q.add_argument("--per-length", type=int, default=2)
    q.add_argument("--score-last", type=int, default=8192, help="score the last N positions")
    q.add_argument("--top-k", type=int, default=5)
    q.add_argument("--vocab", type=int, default=8192, help="ids drawn from [10, vocab)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--chunk", type=int, default=8192, help="if the server does not report it")
    q.add_argument("--stats-dir", help="the server's SGLANG_SAGE_STATS_DIR")
    c = sub.add_parser("compare", help="compare two saved answers (offline)")
    c.add_argument("--sage", type=Path, required=True)
    c.add_argument("--native", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "query":
            doc = query(args)
        else:
            doc = compare(json.loads(args.sage.read_text()), json.loads(args.native.read_text()))
    except (client.ClientError, OSError, ValueError, KeyError, TypeError) as exc:
        print(f"tp_logprob_agreement {args.cmd}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=None if args.cmd == "query" else 2) + "\n")
    if args.cmd == "compare":
        for key, m in [("all", doc["by_length"]["all"]), *doc["regions"].items()]:
            shown = {k: v for k, v in m.items() if k != "first_divergence"}
            print(f"{key:12s}", " ".join(f"{k}={v}" for k, v in shown.items()))
        print("sage_attn route counts during the queries:", doc["sage_stats_during_queries"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
