"""`bench throughput`: serving throughput and latency over a grid, as SGLang's bench_serving.

The client is our own (bench_serving's module layout, globals and dependencies change between
releases) with bench_serving's definitions: closed loop with `concurrency` requests in flight
(`--max-concurrency`, request rate inf), random token prompts of a fixed length
(`--random-range-ratio 1`), streaming, `ignore_eos` and a fixed output length.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sglang_sage_ext.cli.bench import capacity, client, metrics, prompts
from sglang_sage_ext.cli.bench.runner import Endpoint

#: Gates this command reports (see thresholds.GATES).
GATES = ("ttft_increase_pct", "output_tps_drop_pct")
#: Tokens each warmup request generates.
WARMUP_TOKENS = 4


@dataclass(frozen=True)
class GridPoint:
    input_len: int
    output_len: int
    concurrency: int
    num_prompts: int

    @property
    def key(self) -> str:
        return f"in{self.input_len}_out{self.output_len}_c{self.concurrency}"


def make_grid(
    input_lens: Sequence[int],
    output_lens: Sequence[int],
    concurrencies: Sequence[int],
    num_prompts: int | None,
    prompts_per_concurrency: int = 4,
) -> list[GridPoint]:
    """Every combination; `num_prompts` None means max(8, 4 x concurrency)."""
    return [
        GridPoint(i, o, c, num_prompts or max(8, prompts_per_concurrency * c))
        for i in input_lens
        for o in output_lens
        for c in concurrencies
    ]


class MemorySampler:
    """Peak GPU memory while a server works, sampled with nvidia-smi every `interval_s`.

    `server_mib`: sum of `used_memory` of the compute processes in the server's process group
    (launched servers; empty where the container hides PIDs); `device_mib`: `memory.used` of
    every GPU (includes other processes; the only measure for attached servers). SGLang
    preallocates the KV cache (`--mem-fraction-static`), so both mostly show that pool plus
    activations, not attention workspace alone.
    """

    def __init__(self, pgid: int | None, interval_s: float = 0.25) -> None:
        self.pgid = pgid
        self.interval_s = interval_s
        self.server_mib: float | None = None
        self.device_mib: float | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def available(self) -> bool:
        return shutil.which("nvidia-smi") is not None

    def sample(self) -> None:
        total = 0.0
        for line in _smi("--query-gpu=memory.used"):
            with contextlib.suppress(ValueError):
                total += float(line)
        if total:
            self.device_mib = max(self.device_mib or 0.0, total)
        if self.pgid is None:
            return
        own = 0.0
        for line in _smi("--query-compute-apps=pid,used_memory"):
            pid, _, used = line.partition(",")
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                if os.getpgid(int(pid)) == self.pgid:
                    own += float(used)
        if own:
            self.server_mib = max(self.server_mib or 0.0, own)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # sampling must never break the benchmark
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self._stop.wait(self.interval_s)

    @contextlib.contextmanager
    def running(self) -> Iterator[MemorySampler]:
        if not self.available():
            self.error = "nvidia-smi not found"
            yield self
            return
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gpu-mem")
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)

    def as_dict(self) -> dict[str, Any]:
        return {
            "peak_server_mib": self.server_mib,
            "peak_device_mib": self.device_mib,
            "method": f"nvidia-smi every {self.interval_s:.2f} s",
            "error": self.error,
        }


def _smi(query: str) -> list[str]:
    try:
        out = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def run_point(
    endpoint: Endpoint, point: GridPoint, vocab: int, seed: int, advance: Any = None
) -> dict[str, Any]:
    """Send `point.num_prompts` requests, `point.concurrency` at a time; bench_serving metrics."""
    point_seed = seed * 1_000_003 + zlib.crc32(point.key.encode())
    batch = prompts.random_prompts(point.num_prompts, point.input_len, vocab, seed=point_seed)
    if not endpoint.launched or not endpoint.info.get("disable_radix_cache", True):
        client.flush_cache(endpoint.base_url)

    def one(ids: list[int]) -> client.StreamResult:
        result = client.stream_generate(endpoint.base_url, ids, point.output_len)
        if advance is not None:
            advance()
        return result

    start = time.perf_counter()
    results = client.parallel_map(one, batch, point.concurrency)
    duration = time.perf_counter() - start
    failed = [r.error for r in results if not r.success]
    if failed:
        raise client.ClientError(
            f"{len(failed)} of {len(results)} requests of grid point {point.key} failed "
            f"(first: {min(failed)}); a comparison with failed requests would be misleading"
        )
    return metrics.serving_metrics(results, duration)


def longest_request(input_lens: Sequence[int], output_lens: Sequence[int]) -> capacity.Need:
    """The longest request of the grid or its warmup (for the server's length limit)."""
    new_tokens = max(*output_lens, WARMUP_TOKENS)
    return capacity.Need(max(input_lens), new_tokens, "--input-lens")


def warmup(endpoint: Endpoint, vocab: int, input_lens: Sequence[int], seed: int) -> None:
    """One short request per prompt length (JIT, CUDA graphs, allocator) before timing."""
    for n in sorted(set(input_lens)):
        ids = prompts.random_prompts(1, n, vocab, seed=seed + 7919 + n)[0]
        result = client.stream_generate(endpoint.base_url, ids, WARMUP_TOKENS)
        if not result.success:
            raise client.ClientError(f"warmup request failed: {result.error}")
    client.flush_cache(endpoint.base_url)


def gates(sage: dict[str, dict], baseline: dict[str, dict]) -> dict[str, float | None]:
    """Worst median-TTFT increase and worst output-throughput drop over the grid, in %."""
    ttft, tps = [], []
    for key, s in sage.items():
        b = baseline.get(key)
        if not b:
            continue
        change = metrics.relative_change(s["ttft_ms"]["median"], b["ttft_ms"]["median"])
        if change is not None:
            ttft.append(change * 100)
        change = metrics.relative_change(s["output_throughput"], b["output_throughput"])
        if change is not None:
            tps.append(-change * 100)
    return {
        "ttft_increase_pct": max(ttft) if ttft else None,
        "output_tps_drop_pct": max(tps) if tps else None,
    }


def compare(sage: dict[str, dict], baseline: dict[str, dict]) -> dict[str, dict]:
    """Per grid point: the headline numbers of both and their relative change."""
    rows = {}
    for key, s in sage.items():
        b = baseline.get(key)
        if not b:
            continue
        flat_s, flat_b = _headline(s), _headline(b)
        rows[key] = metrics.delta_table(flat_s, flat_b)
    return rows


def _headline(m: dict[str, Any]) -> dict[str, float | None]:
    return {
        "request_throughput": m["request_throughput"],
        "input_throughput": m["input_throughput"],
        "output_throughput": m["output_throughput"],
        "ttft_ms_mean": m["ttft_ms"]["mean"],
        "ttft_ms_median": m["ttft_ms"]["median"],
        "ttft_ms_p99": m["ttft_ms"]["p99"],
        "tpot_ms_mean": m["tpot_ms"]["mean"],
        "tpot_ms_median": m["tpot_ms"]["median"],
        "tpot_ms_p99": m["tpot_ms"]["p99"],
        "itl_ms_mean": m["itl_ms"]["mean"],
        "itl_ms_median": m["itl_ms"]["median"],
        "itl_ms_p99": m["itl_ms"]["p99"],
    }


#: The metrics the side-by-side tables show, per grid point.
SUMMARY_METRICS = (
    "request_throughput",
    "input_throughput",
    "output_throughput",
    "ttft_ms_median",
    "ttft_ms_p99",
    "tpot_ms_median",
    "itl_ms_median",
    "itl_ms_p99",
)


def comparison_rows(comparison: dict[str, Any], change: Any) -> list[list[Any]]:
    """[grid point, metric, sage, baseline, change(rel)] rows for the side-by-side tables."""
    rows = []
    for key, c in comparison.items():
        for metric in SUMMARY_METRICS:
            v = c[metric]
            rows.append([key, metric, v["sage"], v["baseline"], change(v["rel"])])
    return rows
