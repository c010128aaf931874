"""`bench logits`: next-token distributions of the two backends, position by position.

Each prompt (seeded random ids, the same for both servers) is sent once to each server with
`return_logprob`, `logprob_start_len` and `top_logprobs_num`, plus a greedy continuation.
Compared: the prompt positions from `logprob_start_len` on, and the output positions up to
and including the first greedy divergence (after it the two contexts differ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sglang_sage_ext.cli.bench import capacity, client, metrics, prompts

#: Gates this command reports (see thresholds.GATES).
GATES = ("kl_mean", "kl_max", "top1_disagree", "max_abs_logprob_diff", "greedy_diverged")


@dataclass
class Sample:
    """What one server answered for one prompt (compact: no text)."""

    context_length: int
    tops: list[list[tuple[float, int]]]  # prompt positions, then output positions
    token_lps: list[float | None]
    num_prompt_positions: int
    output_ids: list[int]


def make_prompts(
    context_lengths: Sequence[int], per_length: int, vocab: int, seed: int
) -> list[tuple[int, list[int]]]:
    out = []
    for n in context_lengths:
        for p in prompts.random_prompts(per_length, n, vocab, seed=seed * 7 + n):
            out.append((n, p))
    return out


def longest_request(context_lengths: Sequence[int], max_new_tokens: int) -> capacity.Need:
    """The longest request (for the server's length limit, checked before the first one)."""
    return capacity.Need(max(context_lengths), max_new_tokens, "--context-lengths")


def _logprob(value: Any) -> float:
    """A logprob from a reply: NaN or a positive value means the model's output is broken
    (never silently dropped); -inf (probability 0) is kept."""
    lp = float(value)
    if math.isnan(lp) or lp > metrics.MAX_LOGPROB:
        raise client.ClientError(
            f"/generate reply: logprob {lp} (NaN or > 0): this server's model output is broken"
        )
    return lp


def _top(entry: Any) -> list[tuple[float, int]]:
    if not entry:
        return []
    return [(_logprob(e[0]), int(e[1])) for e in entry if e is not None and e[0] is not None]


def _lp(entry: Any) -> float | None:
    return None if not entry or entry[0] is None else _logprob(entry[0])


def query(
    base_url: str, ids: Sequence[int], score_last: int | None, top_k: int, max_new_tokens: int
) -> Sample:
    start = 0 if score_last is None else max(0, len(ids) - score_last)
    reply = client.generate(
        base_url,
        input_ids=ids,
        max_new_tokens=max_new_tokens,
        return_logprob=True,
        logprob_start_len=start,
        top_logprobs_num=top_k,
    )
    hint = " (does this server support return_logprob and top_logprobs_num?)"
    try:
        in_tops = [_top(e) for e in client.meta_list(reply, "input_top_logprobs", hint)]
        out_tops = [_top(e) for e in client.meta_list(reply, "output_top_logprobs", hint)]
        in_lps = [_lp(e) for e in client.meta_list(reply, "input_token_logprobs", hint)]
        out_lps = [_lp(e) for e in client.meta_list(reply, "output_token_logprobs", hint)]
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as exc:
        raise client.ClientError(f"/generate reply: malformed logprob entries ({exc})") from None
    if len(in_tops) != len(in_lps) or len(out_tops) != len(out_lps):
        raise client.ClientError(
            f"/generate reply: {len(in_tops)} prompt top-logprob entries but {len(in_lps)} "
            f"token logprobs ({len(out_tops)} / {len(out_lps)} for the output): misaligned"
        )
    return Sample(
        context_length=len(ids),
        tops=in_tops + out_tops,
        token_lps=in_lps + out_lps,
        num_prompt_positions=len(in_tops),
        output_ids=client.output_ids(reply),
    )


def compare_samples(sage: Sequence[Sample], base: Sequence[Sample]) -> dict[str, Any]:
    """Metrics per context length and over everything (baseline = reference of the KL)."""
    groups: dict[str, tuple[list, list, list, list, list]] = {}
    for s, b in zip(sage, base, strict=True):
        if s.num_prompt_positions != b.num_prompt_positions:
            raise client.ClientError(
                f"the servers scored different prompt positions for the same request "
                f"(sage_attn {s.num_prompt_positions}, baseline {b.num_prompt_positions}): "
                "their logprobs cannot be aligned"
            )
        div = metrics.first_divergence(b.output_ids, s.output_ids)
        upto = b.num_prompt_positions + (len(b.output_ids) if div is None else div + 1)
        for key in (str(b.context_length), "all"):
            g = groups.setdefault(key, ([], [], [], [], []))
            g[0].extend(b.tops[:upto])
            g[1].extend(s.tops[:upto])
            g[2].extend(b.token_lps[:upto])
            g[3].extend(s.token_lps[:upto])
            g[4].append(div)
    out: dict[str, Any] = {}
    for key, (tb, ts, lb, ls, divs) in groups.items():
        m = metrics.compare_logprobs(tb, ts, lb, ls)
        m["requests"] = len(divs)
        m["identical_greedy"] = sum(d is None for d in divs)
        m["first_divergence"] = divs
        out[key] = m
    return out


#: Columns of `comparison_rows`; the last one (greedy divergence positions) is terminal-only.
TABLE_HEADER = ["context", "positions", "KL mean", "KL max", "top-1", "max |Δlp|", "same", "div@"]


def comparison_rows(comparison: dict[str, Any]) -> list[list[Any]]:
    """One row per context length (and "all") for the side-by-side tables."""
    return [
        [
            key,
            c["positions"],
            c["kl_mean"],
            c["kl_max"],
            c["top1_agreement"],
            c["max_abs_logprob_diff"],
            f"{c['identical_greedy']}/{c['requests']}",
            ",".join("-" if d is None else str(d) for d in c["first_divergence"]),
        ]
        for key, c in comparison.items()
    ]


def gates(comparison: dict[str, Any]) -> dict[str, float | None]:
    overall = comparison.get("all", {})
    top1 = overall.get("top1_agreement")
    requests = overall.get("requests") or 0
    return {
        "kl_mean": overall.get("kl_mean"),
        "kl_max": overall.get("kl_max"),
        "top1_disagree": None if top1 is None else 1 - top1,
        "max_abs_logprob_diff": overall.get("max_abs_logprob_diff"),
        "greedy_diverged": (requests - overall.get("identical_greedy", 0)) / requests
        if requests
        else None,
    }
