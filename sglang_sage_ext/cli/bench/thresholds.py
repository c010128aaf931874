"""`--fail-if NAME=LIMIT` gates: exit code 3 when a measured value exceeds its limit.

Every gate is "larger is worse", so one comparison rule covers all of them; a gate without
a value (None, NaN: nothing measured) fails too, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import click

#: Exit code of a run whose results exceed a --fail-if limit (0 ok, 1 error, 2 usage error).
EXIT_THRESHOLD = 3

#: Gate name -> what it measures (each subcommand reports a subset).
GATES: dict[str, str] = {
    "mmlu_drop": "baseline accuracy minus sage_attn accuracy (fraction, e.g. 0.01 = 1 point)",
    "kl_mean": "mean KL of the top-k next-token distributions, over all positions",
    "kl_max": "largest per-position KL",
    "top1_disagree": "1 - top-1 agreement",
    "max_abs_logprob_diff": "largest |logprob(sage) - logprob(baseline)| of a prompt token",
    "greedy_diverged": "share of greedy continuations that differ",
    "ppl_increase_pct": "perplexity increase of sage_attn over the baseline, in %",
    "ttft_increase_pct": "largest median-TTFT increase over the grid, in %",
    "output_tps_drop_pct": "largest output-throughput drop over the grid, in %",
    "drift_rel_l2_max": "largest per-layer rel-L2 of Sage vs exact attention output",
    "drift_logits_kl": "mean KL of the full-vocabulary logits, Sage everywhere vs exact",
}


def parse_fail_if(values: Iterable[str], allowed: Iterable[str]) -> dict[str, float]:
    """Parse NAME=LIMIT pairs; UsageError for a bad pair or a gate this command lacks."""
    allowed = list(allowed)
    limits: dict[str, float] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep:
            raise click.UsageError(f"--fail-if {item!r}: expected NAME=LIMIT, e.g. kl_mean=0.01")
        if name not in allowed:
            raise click.UsageError(
                f"--fail-if {name!r} is not a gate of this command; choose from: "
                + ", ".join(allowed)
            )
        try:
            limit = float(raw)
        except ValueError:
            raise click.UsageError(f"--fail-if {item!r}: {raw!r} is not a number") from None
        if not math.isfinite(limit):
            raise click.UsageError(f"--fail-if {item!r}: the limit must be a finite number")
        if name in limits:
            raise click.UsageError(f"--fail-if {name!r} is given twice; give each gate once")
        limits[name] = limit
    return limits


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


def check(
    values: Mapping[str, float | None], limits: Mapping[str, float], missing: str = ""
) -> list[dict]:
    """One dict per gate: value, limit, failed and the reason when it failed.

    A gate whose value is missing, None or NaN FAILS: nothing was measured, so nothing was
    shown to be within the limit. `missing` says why values can be missing (e.g. "0 questions
    answered") and goes into the reason.
    """
    rows = []
    for name, limit in limits.items():
        value = _number(values.get(name))
        if value is None:
            raw = values.get(name)
            is_nan = isinstance(raw, float) and math.isnan(raw)
            why = "it is NaN: a non-finite output" if is_nan else missing or "nothing was measured"
            reason = f"{name}: no value ({why})"
            rows.append(
                {"gate": name, "value": None, "limit": limit, "failed": True, "reason": reason}
            )
            continue
        failed = value > limit
        reason = f"{name}={value:.4g} > {limit}" if failed else None
        rows.append(
            {"gate": name, "value": value, "limit": limit, "failed": failed, "reason": reason}
        )
    return rows
