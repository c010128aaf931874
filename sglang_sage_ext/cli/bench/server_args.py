"""`--server-args` for launched servers: split, parsed as SGLang parses them, then vetted.

SGLang's parser accepts unique abbreviations (argparse `allow_abbrev`), so `--ho 0.0.0.0` sets
`--host`; checking flag names by string would let that through and bind the launched server
beyond loopback. The tokens are therefore parsed with `ServerArgs.add_cli_args` of the
installed SGLang, and every flag the user really set (abbreviated or not) is checked by its
destination. Refused: the host (bench binds 127.0.0.1), remote code, and what bench controls
(model path, port, attention backend). Without an importable SGLang the check falls back to
flag names and every prefix of them, and says so.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
from collections.abc import Sequence
from typing import Any

import click

#: dest -> (flag, why bench refuses it)
CONTROLLED: dict[str, tuple[str, str]] = {
    "model_path": ("--model-path", "bench sets the model from its own --model-path"),
    "port": ("--port", "bench picks the port (use --sage-port / --baseline-port)"),
    "attention_backend": ("--attention-backend", "bench sets it (sage_attn, then --baseline)"),
    "prefill_attention_backend": (
        "--prefill-attention-backend",
        "it would replace the attention backend bench compares",
    ),
    "trust_remote_code": (
        "--trust-remote-code",
        "bench never runs a model's remote code; load a local model that needs none",
    ),
    "host": ("--host", "bench binds launched servers to 127.0.0.1 only"),
}
_SENTINEL_MODEL = "\0sglang-sage-bench-model\0"


class _Refused(Exception):
    pass


class _RecordingParser(argparse.ArgumentParser):
    """An ArgumentParser that remembers which actions the tokens invoked and never exits."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.invoked: dict[str, Any] = {}

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        value = super()._get_values(action, arg_strings)  # type: ignore[misc]
        self.invoked[action.dest] = action.const if action.nargs == 0 else value
        return value

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise _Refused(message)


def split(option_values: Sequence[str], trailing: Sequence[str]) -> list[str]:
    """`--server-args "..."` values (shell-quoted, repeatable) plus the tokens after `--`."""
    tokens: list[str] = []
    for value in option_values:
        try:
            tokens += shlex.split(value)
        except ValueError as exc:
            raise click.UsageError(
                f"--server-args {value!r}: {exc} (unbalanced quote); quote each value once, "
                'e.g. --server-args "--mem-fraction-static 0.5"'
            ) from None
    return tokens + list(trailing)


def _loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _refusal(dest: str, value: Any) -> str:
    flag, why = CONTROLLED[dest]
    if dest == "host" and not _loopback(str(value)):
        why = f"{value!r} would bind the server beyond loopback; {why}"
    return f"--server-args sets {flag} ({value!r}): {why}; remove it"


def _sglang_parser() -> _RecordingParser:
    from sglang.srt.server_args import ServerArgs

    parser = _RecordingParser(prog="launch_server", add_help=False)
    ServerArgs.add_cli_args(parser)
    return parser


def check_with_sglang(tokens: Sequence[str]) -> None:
    """UsageError when SGLang's own parser rejects the tokens or they set a refused flag."""
    parser = _sglang_parser()
    try:
        parser.parse_args(["--model-path", _SENTINEL_MODEL, *tokens])
    except _Refused as exc:
        raise click.UsageError(
            f"--server-args {shlex.join(tokens)!r}: SGLang's parser says: {exc}; "
            "see `python -m sglang.launch_server --help`"
        ) from None
    invoked = dict(parser.invoked)
    if invoked.get("model_path") == _SENTINEL_MODEL:
        del invoked["model_path"]
    for dest in CONTROLLED:
        if dest in invoked:
            raise click.UsageError(_refusal(dest, invoked[dest]))
    addr = invoked.get("dist_init_addr")
    if addr and not _loopback(str(addr).rsplit(":", 1)[0]):
        raise click.UsageError(
            f"--server-args sets --dist-init-addr {addr!r}: it would listen beyond loopback; "
            "bench runs single-node servers on 127.0.0.1 only; remove it"
        )


def check_by_name(tokens: Sequence[str]) -> None:
    """The fallback: refuse any refused flag name and any prefix of one (`--ho`, `--po=1`)."""
    for token in tokens:
        if not token.startswith("--") or len(token) < 3:
            continue
        name, _, value = token.partition("=")
        for dest, (flag, _) in CONTROLLED.items():
            if flag.startswith(name):
                shown = value or "..."
                if name != flag:
                    shown += f"; {name} may abbreviate {flag}"
                raise click.UsageError(_refusal(dest, shown))


def sglang_parser_problem() -> str | None:
    """None when SGLang's `ServerArgs.add_cli_args` builds a parser here, else why not."""
    try:
        _sglang_parser()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def vet(tokens: Sequence[str]) -> str | None:
    """Check launch tokens; None, or a note when only the by-name fallback could run."""
    if not tokens:
        return None
    problem = sglang_parser_problem()
    if problem is None:
        check_with_sglang(tokens)
        return None
    check_by_name(tokens)
    return (
        f"SGLang's argument parser is unavailable here ({problem}); --server-args were "
        "checked by flag names and their prefixes only"
    )
