"""Registers one wrapt post-import hook per patch point (called by the bootstrap and the plugin).

Each hook fires when SGLang imports the module it names (at once if already imported),
applies its patch, and records a status; an exception in a patch is recorded, logged once,
and never propagates into SGLang's import.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType

import wrapt

from sglang_sage_ext.integration import status

logger = logging.getLogger("sglang_sage_ext")

#: (patch point, module SGLang imports, "module:function" of the patch)
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("cli", "sglang.srt.server_args", "sglang_sage_ext.integration.patches.cli:apply"),
    (
        "arg_choices",
        "sglang.srt.arg_groups.choices",
        "sglang_sage_ext.integration.patches.cli:apply_choices",
    ),
    (
        "decode_default",
        "sglang.srt.server_args",
        "sglang_sage_ext.integration.patches.decode_default:apply",
    ),
    (
        "registry",
        "sglang.srt.layers.attention.attention_registry",
        "sglang_sage_ext.integration.patches.registry:apply",
    ),
    (
        "model_runner",
        "sglang.srt.model_executor.model_runner",
        "sglang_sage_ext.integration.patches.model_runner:apply",
    ),
)

_installed = False


def _resolve(target: str) -> Callable[[ModuleType], str]:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _guarded(point: str, target: str) -> Callable[[ModuleType], None]:
    def hook(module: ModuleType) -> None:
        try:
            status.record(point, _resolve(target)(module))
        except Exception as exc:
            status.record(point, f"failed: {type(exc).__name__}: {exc}")
            logger.warning(
                "sglang-sage-ext: patch %r on %s failed (%s); `sage_attn` may be unavailable. "
                "Run `sglang-sage doctor` for details.",
                point,
                module.__name__,
                exc,
            )

    return hook


def install() -> bool:
    """Register every hook once per process; returns False when they already were."""
    global _installed
    if _installed:
        return False
    _installed = True
    for point, module_name, target in HOOKS:
        wrapt.register_post_import_hook(_guarded(point, target), module_name)
    return True
