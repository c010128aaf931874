"""Pure metric functions (no I/O, no torch): latency statistics, logprob comparisons,
perplexity. Definitions follow SGLang's bench_serving (`calculate_metrics`) where it has one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TopLogprobs = Sequence[tuple[float, int]]


#: Above this a reported logprob is impossible (log p <= 0; the slack is rounding): the
#: server's output is broken, never a value to average.
MAX_LOGPROB = 1e-3


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy.percentile does."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """mean, median, std (population, as numpy), p99 of `values` times `scale`."""
    if not values:
        return {"mean": math.nan, "median": math.nan, "std": math.nan, "p99": math.nan}
    scaled = [v * scale for v in values]
    mean = sum(scaled) / len(scaled)
    std = math.sqrt(sum((v - mean) ** 2 for v in scaled) / len(scaled))
    return {
        "mean": mean,
        "median": percentile(scaled, 50),
        "std": std,
        "p99": percentile(scaled, 99),
    }


def tpot(latency: float, ttft: float, output_len: int) -> float | None:
    """Time per output token after the first: (latency - ttft) / (output_len - 1)."""
    if output_len <= 1:
        return None
    return (latency - ttft) / (output_len - 1)


def serving_metrics(results: Iterable[Any], duration_s: float) -> dict[str, Any]:
    """bench_serving's BenchmarkMetrics from StreamResult-like objects (times in ms).

    Throughputs count only successful requests and divide by the wall time of the whole run.
    """
    results = list(results)
    ok = [r for r in results if r.success]
    ttfts = [r.ttft for r in ok]
    tpots = [t for r in ok if (t := tpot(r.latency, r.ttft, r.output_len)) is not None]
    itls = [gap for r in ok for gap in r.itl]
    input_tokens = sum(r.input_len for r in ok)
    output_tokens = sum(r.output_len for r in ok)
    duration_s = max(duration_s, 1e-9)
    return {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "duration_s": duration_s,
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "request_throughput": len(ok) / duration_s,
        "input_throughput": input_tokens / duration_s,
        "output_throughput": output_tokens / duration_s,
        "total_throughput": (input_tokens + output_tokens) / duration_s,
        "ttft_ms": summarize(ttfts, 1000.0),
        "tpot_ms": summarize(tpots, 1000.0),
        "itl_ms": summarize(itls, 1000.0),
        "e2e_latency_ms": summarize([r.latency for r in ok], 1000.0),
    }


def relative_change(new: float | None, base: float | None) -> float | None:
    """(new - base) / base, or None when undefined."""
    if new is None or base is None or base == 0 or math.isnan(new) or math.isnan(base):
        return None
    return (new - base) / base


def _softmax(logprobs: Sequence[float]) -> list[float]:
    top = max(logprobs)
    exps = [math.exp(x - top) for x in logprobs]
    total = sum(exps)
    return [e / total for e in exps]


def topk_kl(ref: TopLogprobs, other: TopLogprobs) -> float:
    """KL(p_ref || q) over the reference's top-k ids, both renormalized over those ids.

    An id missing from the other's top-k gets the other's smallest top-k logprob (an upper
    bound on its true logprob), so a reshuffled top-k shows up as a larger KL.
    """
    if not ref or not other:
        return math.nan
    if max(float(lp) for lp, _ in ref) == -math.inf:
        return math.nan  # the reference puts probability 0 on all its top-k: not comparable
    other_lp = {int(i): float(lp) for lp, i in other}
    floor = min(other_lp.values())
    p = _softmax([float(lp) for lp, _ in ref])
    q = _softmax([other_lp.get(int(i), floor) for _, i in ref])
    pairs = [(pi, qi) for pi, qi in zip(p, q, strict=True) if pi > 0]
    if any(qi <= 0 or math.isnan(qi) for _, qi in pairs):
        return math.inf  # the other side gives probability 0 where the reference does not
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in pairs)


def top1_agreement(refs: Sequence[TopLogprobs], others: Sequence[TopLogprobs]) -> float | None:
    """Share of positions where both put the same token first."""
    pairs = [(r, o) for r, o in zip(refs, others, strict=False) if r and o]
    if not pairs:
        return None
    return sum(r[0][1] == o[0][1] for r, o in pairs) / len(pairs)


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first differing token of two greedy outputs; None when identical."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_logprobs(
    ref_tops: Sequence[TopLogprobs],
    other_tops: Sequence[TopLogprobs],
    ref_token_lps: Sequence[float | None],
    other_token_lps: Sequence[float | None],
) -> dict[str, Any]:
    """KL, top-1 agreement and |Δ logprob| over aligned positions of two runs."""
    kls = [topk_kl(r, o) for r, o in zip(ref_tops, other_tops, strict=False) if r and o]
    diffs = [
        abs(float(a) - float(b))
        for a, b in zip(ref_token_lps, other_token_lps, strict=False)
        if a is not None and b is not None
    ]
    return {
        "positions": len(kls),
        "kl_mean": sum(kls) / len(kls) if kls else None,
        "kl_max": max(kls) if kls else None,
        "top1_agreement": top1_agreement(ref_tops, other_tops),
        "max_abs_logprob_diff": max(diffs) if diffs else None,
        "mean_abs_logprob_diff": sum(diffs) / len(diffs) if diffs else None,
    }


def perplexity(token_logprobs: Iterable[float]) -> float:
    """exp(mean negative log-likelihood) of the scored tokens."""
    values = [float(x) for x in token_logprobs]
    if not values:
        return math.nan
    return math.exp(-sum(values) / len(values))


def sliding_windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) windows that score each token at most once.

    Each window is tokens[begin:end] (at most `window` long); only tokens[first_scored:end]
    are scored and the rest is context, as in Hugging Face's perplexity guide; with
    stride < window every scored token keeps at least window - stride tokens of context.
    """
    if window < 2 or stride < 1 or stride > window:
        raise ValueError("need window >= 2 and 1 <= stride <= window")
    spans: list[tuple[int, int, int]] = []
    prev_end = 0
    for begin in range(0, max(n_tokens - 1, 0), stride):
        end = min(begin + window, n_tokens)
        first = max(prev_end, begin + 1)  # token 0 has no context: never scored
        if first < end:
            spans.append((begin, end, first))
        prev_end = end
        if end == n_tokens:
            break
    return spans


def delta_table(sage: Mapping[str, float | None], base: Mapping[str, float | None]) -> dict:
    """{metric: {"sage", "baseline", "delta", "rel"}} for every metric both report."""
    out: dict[str, dict[str, float | None]] = {}
    for key in sage:
        if key not in base:
            continue
        s, b = sage[key], base[key]
        delta = None if s is None or b is None else s - b
        out[key] = {"sage": s, "baseline": b, "delta": delta, "rel": relative_change(s, b)}
    return out
