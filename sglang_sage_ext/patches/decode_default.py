"""Patch point `decode_default`: pick the decode backend of `--attention-backend sage_attn`.

Wraps `ServerArgs.__post_init__` (every release) so that the choice is made before SGLang
resolves prefill/decode backends, page sizes and CUDA-graph settings, exactly as if the user had
passed `--decode-attention-backend`; the scheduler processes receive the resolved ServerArgs.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

import wrapt

from sglang_sage_ext import decode_backend, status
from sglang_sage_ext.patches import MARKER

logger = logging.getLogger("sglang_sage_ext")


def _post_init(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        line = decode_backend.choose(instance)
    except Exception as exc:  # never block a launch over an optimisation
        line = f"decode choice failed ({type(exc).__name__}: {exc}); decode on sage_attn (Triton)"
    if line is not None:
        status.record("decode_choice", line)
        logger.info("sage_attn: %s", line)
    return wrapped(*args, **kwargs)


def apply(module: ModuleType) -> str:
    """Wrap `ServerArgs.__post_init__` (idempotent)."""
    post_init = getattr(module.ServerArgs, "__post_init__", None)
    if post_init is None:
        raise AttributeError("ServerArgs.__post_init__ not found")
    if getattr(post_init, MARKER, False):
        return "already applied"
    wrapt.wrap_function_wrapper(module, "ServerArgs.__post_init__", _post_init)
    setattr(module.ServerArgs.__post_init__, MARKER, True)
    return "applied: ServerArgs.__post_init__ wrapped"
