"""Does the Sage kernel pay for this extend batch? Measured crossovers per GPU and native backend.

Sage's INT8 kernel wins where attention work per request is large (long prompts, long chunks
over cached prefixes) and loses where fixed costs and short tiles dominate (short prompts,
many small requests). Instead of a fixed token threshold, each batch is reduced to two numbers,
both known on the host before the forward runs:

* `pairs`: query-key pairs per head, sum over requests of n * (p + (n + 1) / 2) for n new
  tokens over a p-token prefix (attention FLOPs / (4 * heads * head_dim));
* `mean_kv`: the pairs-weighted mean key length p + n, i.e. how long the kernel's tiles run;
* `prefix_fraction`: the share of pairs that are new queries against a cached prefix
  (sum of n * p over pairs). Measured on an H200, flashinfer's prefix-free prefill (ragged,
  FA3-class on sm90) beats the Triton Sage kernel at every length, while its prefix path
  (paged FA2 kernel + merge) loses to Sage by up to 1.28x on long chunks over long prefixes.

Sage runs when all three reach the table's thresholds. The thresholds are measured by
`bench/calibrate.py` (Sage kernel against the native prefill kernel SGLang would run, on the
same GPU, over a sweep of batch shapes) and stored as JSON per (architecture, native backend)
under `cost_tables/`; the smallest thresholds with no measured point below 1.02x speedup win.
GPUs or native backends without a table get a conservative default.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TABLES_DIR = Path(__file__).with_name("cost_tables")
#: Unmeasured GPU or native backend: Sage only for very long single-request work.
DEFAULT_MIN_KV_LEN = 32768
DEFAULT_MIN_PAIRS = 32768 * 32768 // 2


@dataclass(frozen=True)
class CostTable:
    """Crossover thresholds for one (GPU architecture, native backend)."""

    name: str
    min_kv_len: int
    min_pairs: int
    enabled: bool = True
    source: str = ""
    min_prefix_fraction: float = 0.0

    def describe(self) -> str:
        if not self.enabled:
            return f"{self.name}: Sage never pays here ({self.source})"
        return (
            f"{self.name}: Sage when mean key length >= {self.min_kv_len}, "
            f">= {self.min_pairs:.3g} query-key pairs per head and >= "
            f"{self.min_prefix_fraction:.2f} of them against a cached prefix ({self.source})"
        )


def batch_features(
    extend_lens: Sequence[int], prefix_lens: Sequence[int]
) -> tuple[int, float, float]:
    """(pairs per head, pairs-weighted mean key length, prefix fraction) of one extend batch."""
    pairs = 0
    prefix_pairs = 0
    weighted = 0.0
    for n, p in zip(extend_lens, prefix_lens, strict=True):
        n, p = int(n), int(p)
        req_pairs = n * p + n * (n + 1) // 2
        pairs += req_pairs
        prefix_pairs += n * p
        weighted += req_pairs * (p + n)
    if not pairs:
        return 0, 0.0, 0.0
    return pairs, weighted / pairs, prefix_pairs / pairs


def sage_pays(table: CostTable, extend_lens: Sequence[int], prefix_lens: Sequence[int]) -> bool:
    """True when the table says the Sage kernel beats the native one on this batch."""
    if not table.enabled:
        return False
    pairs, mean_kv, prefix_fraction = batch_features(extend_lens, prefix_lens)
    return (
        pairs >= table.min_pairs
        and mean_kv >= table.min_kv_len
        and prefix_fraction >= table.min_prefix_fraction
    )


def table_from_json(data: dict, name: str) -> CostTable:
    """A CostTable from a `cost_tables/*.json` document (see bench/calibrate.py)."""
    return CostTable(
        name=name,
        min_kv_len=int(data.get("min_kv_len", DEFAULT_MIN_KV_LEN)),
        min_pairs=int(data.get("min_pairs", DEFAULT_MIN_PAIRS)),
        enabled=bool(data.get("enabled", True)),
        source=str(data.get("source", "")),
        min_prefix_fraction=float(data.get("min_prefix_fraction", 0.0)),
    )


@functools.lru_cache(maxsize=16)
def load_table(capability: tuple[int, int] | None, native: str) -> CostTable:
    """The table for this GPU (compute capability) against this native backend."""
    arch = "cpu" if capability is None else f"sm{capability[0]}{capability[1]}"
    path = TABLES_DIR / f"{arch}-{native}.json"
    if path.is_file():
        try:
            return table_from_json(json.loads(path.read_text()), f"{arch}-{native}")
        except (OSError, ValueError) as exc:
            source = f"{path.name} unreadable ({type(exc).__name__}); conservative default"
            return CostTable("default", DEFAULT_MIN_KV_LEN, DEFAULT_MIN_PAIRS, True, source)
    source = f"no measured table for {arch} vs {native}; conservative default"
    return CostTable("default", DEFAULT_MIN_KV_LEN, DEFAULT_MIN_PAIRS, True, source)
