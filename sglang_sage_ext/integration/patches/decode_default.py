"""Patch point `decode_default`: pick the decode backend of `--attention-backend sage_attn`.

Wraps the method where ServerArgs resolves its backends (`__post_init__`; `resolve_once` on
0.5.23, see `compat.server_args_resolution_method`) so that the choice is made before SGLang
resolves prefill/decode backends, page sizes and CUDA-graph settings, exactly as if the user had
passed `--decode-attention-backend`; the scheduler processes receive the resolved ServerArgs.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import wrapt

from sglang_sage_ext.integration import compat, status
from sglang_sage_ext.integration import native as decode_backend
from sglang_sage_ext.integration.patches import MARKER

logger = logging.getLogger("sglang_sage_ext")


def _before_resolution(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        line = decode_backend.choose(instance)
    except Exception as exc:  # never block a launch over an optimisation
        line = f"decode choice failed ({type(exc).__name__}: {exc}); decode on sage_attn (Triton)"
    if line is not None:
        status.record("decode_choice", line)
        logger.info("sage_attn: %s", line)
    return wrapped(*args, **kwargs)


def apply(module: ModuleType) -> str:
    """Wrap ServerArgs' resolution method (idempotent)."""
    name = compat.server_args_resolution_method(module.ServerArgs)
    method = getattr(module.ServerArgs, name, None)
    if method is None:
        raise AttributeError(f"ServerArgs.{name} not found")
    if getattr(method, MARKER, False):
        return "already applied"
    wrapt.wrap_function_wrapper(module, f"ServerArgs.{name}", _before_resolution)
    setattr(getattr(module.ServerArgs, name), MARKER, True)
    return f"applied: ServerArgs.{name} wrapped"


def is_applied(module: ModuleType) -> bool:
    """Whether the live ServerArgs' resolution method is still our wrapper (a reload drops it)."""
    server_args = getattr(module, "ServerArgs", None)
    if server_args is None:
        return False
    method = getattr(server_args, compat.server_args_resolution_method(server_args), None)
    return bool(getattr(method, MARKER, False))
