"""Does the longest request of a workload fit the server? Checked before the first request.

A request longer than the server takes fails with HTTP 400 halfway through a run, and some
servers (`--allow-auto-truncate`) cut it silently instead. SGLang reports its limit in
/get_server_info (every release since 0.4.10): `max_req_input_len` = min(model context length,
KV cache tokens) - 6, with `max_total_num_tokens` the KV cache size. From it, SGLang's own rules:

- the scheduler refuses (or truncates) a prompt of >= max_req_input_len tokens;
- it clips max_new_tokens to max_req_len - prompt - 1, max_req_len = max_req_input_len + 5;
  the tokenizer manager refuses prompt + max_new_tokens beyond the context length, which is
  larger.

So a request fits when prompt <= max_req_input_len - 1 and prompt + new <= max_req_input_len + 4.
A server that reports no limit is not checked; its 400 gets `reply_hint` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

#: SGLang's reserve between max_req_len and max_req_input_len (tp_worker: max_req_len - 5).
_INPUT_RESERVE = 5
#: Phrases of SGLang's length refusals (tokenizer manager and scheduler, 0.4.10 - 0.5.23).
_LENGTH_PHRASES = ("context length", "maximum allowed length", "max context length")


@dataclass(frozen=True)
class Need:
    """The longest request a workload sends, and the option that sets its prompt length.

    `extra`: tokens bench adds to the option's value (the BOS token in front of a window).
    """

    prompt_tokens: int
    new_tokens: int
    option: str
    extra: int = 0


def server_limit(info: Mapping[str, Any]) -> int | None:
    """`max_req_input_len` from /get_server_info, or None when the server does not say."""
    value = info.get("max_req_input_len")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 1:
        return None
    return value


def largest_prompt(limit: int, new_tokens: int) -> int:
    """The longest prompt that still gets all `new_tokens` from a server with this limit."""
    return min(limit - 1, limit + _INPUT_RESERVE - 1 - new_tokens)


def _cause_and_fix(info: Mapping[str, Any], limit: int) -> tuple[str, str]:
    """What sets the limit (the KV cache or the context length) and how to raise it."""
    kv_tokens = info.get("max_total_num_tokens")
    if isinstance(kv_tokens, int) and kv_tokens - 1 - _INPUT_RESERVE <= limit:
        return (
            f"its KV cache holds {kv_tokens} tokens",
            "give the server more KV-cache memory (--mem-fraction-static)",
        )
    context = info.get("context_length")  # set when the server was given --context-length
    cause = (
        f"its --context-length {context}"
        if isinstance(context, int)
        else "the model's context length"
    )
    return cause, "launch the server with a larger --context-length where the model supports it"


def problem(need: Need, info: Mapping[str, Any], server: str = "the server") -> str | None:
    """Why `need` does not fit the server described by `info`, or None (also when unknown)."""
    limit = server_limit(info)
    if limit is None:
        return None
    longest = largest_prompt(limit, need.new_tokens)
    if need.prompt_tokens <= longest:
        return None
    cause, fix = _cause_and_fix(info, limit)
    fits = longest - need.extra
    use = f"use {need.option} <= {fits}" if fits >= 1 else "generate fewer tokens"
    asked = f"{need.prompt_tokens - need.extra}" + (f" (+{need.extra} BOS)" if need.extra else "")
    return (
        f"{asked} prompt tokens + {need.new_tokens} generated do not fit {server}, which takes "
        f"prompts of at most {limit - 1} tokens and {limit + _INPUT_RESERVE - 1} with the "
        f"generated ones (max_req_input_len {limit} in /get_server_info: {cause}); {use}, "
        f"or {fix}"
    )


def check(need: Need | None, info: Mapping[str, Any], backend: str, url: str) -> None:
    """BadParameter (exit 2) naming the limit and the fix, before any request is sent."""
    why = problem(need, info, f"the {backend} server at {url}") if need is not None else None
    if why:
        raise click.BadParameter(why, param_hint=need.option)


def reply_hint(message: str) -> str:
    """What to do about a failed reply: a length refusal says so, anything else is a server
    that is not working."""
    lowered = message.lower()
    if any(p in lowered for p in _LENGTH_PHRASES):
        return (
            "the request is longer than this server takes: lower the prompt length options "
            "(--context-lengths, --context-length, --input-lens/--output-lens) or serve a "
            "longer context"
        )
    return "check that it is a working SGLang server"
