"""Patch point `cli`: make `sage_attn` a valid choice of the three attention-backend flags.

0.5.5+ keep the choices in the module-level list `ATTENTION_BACKEND_CHOICES` (0.5.20+ define it
in `arg_groups/choices.py` and re-export the same object); argparse holds a reference to it,
so appending in place is enough. 0.4.10 builds inline lists inside `ServerArgs.add_cli_args`,
so that static method is wrapped to extend the parser's actions after it ran.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import wrapt

from sglang_sage_ext.integration.compat import BACKEND_NAME
from sglang_sage_ext.integration.patches import MARKER

BACKEND_FLAGS = ("attention_backend", "prefill_attention_backend", "decode_attention_backend")


def _append_choice(choices: Any) -> str:
    if not isinstance(choices, list):
        return "no choices list"
    if BACKEND_NAME in choices:
        return "already in choices list"
    choices.append(BACKEND_NAME)
    return "added to ATTENTION_BACKEND_CHOICES"


def extend_parser(parser: Any) -> int:
    """Add `sage_attn` to every attention-backend action of an argparse parser; returns count."""
    changed = 0
    for action in getattr(parser, "_actions", ()):
        if action.dest in BACKEND_FLAGS and action.choices and BACKEND_NAME not in action.choices:
            action.choices = [*action.choices, BACKEND_NAME]
            changed += 1
    return changed


def _add_cli_args(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    result = wrapped(*args, **kwargs)
    parser = args[0] if args else kwargs.get("parser")
    if parser is not None:
        extend_parser(parser)
    return result


def apply(module: ModuleType) -> str:
    """Patch `sglang.srt.server_args` (every release)."""
    notes = [_append_choice(getattr(module, "ATTENTION_BACKEND_CHOICES", None))]
    server_args = getattr(module, "ServerArgs", None)
    add_cli_args = getattr(server_args, "add_cli_args", None)
    if add_cli_args is None:
        raise AttributeError("ServerArgs.add_cli_args not found")
    if getattr(add_cli_args, MARKER, False):
        return "already applied"
    wrapt.wrap_function_wrapper(module, "ServerArgs.add_cli_args", _add_cli_args)
    setattr(server_args.add_cli_args, MARKER, True)
    notes.append("ServerArgs.add_cli_args wrapped")
    return "applied: " + "; ".join(notes)


def apply_choices(module: ModuleType) -> str:
    """Patch `sglang.srt.arg_groups.choices` (0.5.20+), where the list is defined."""
    return "applied: " + _append_choice(getattr(module, "ATTENTION_BACKEND_CHOICES", None))


def _choices_ok(module: ModuleType) -> bool:
    choices = getattr(module, "ATTENTION_BACKEND_CHOICES", None)
    return not isinstance(choices, list) or BACKEND_NAME in choices


def is_applied(module: ModuleType) -> bool:
    """Whether the live `server_args` still carries the patch (a reload drops it)."""
    add_cli_args = getattr(getattr(module, "ServerArgs", None), "add_cli_args", None)
    return bool(getattr(add_cli_args, MARKER, False)) and _choices_ok(module)


def is_choices_applied(module: ModuleType) -> bool:
    """Whether the live `arg_groups.choices` list still holds `sage_attn`."""
    return _choices_ok(module)
