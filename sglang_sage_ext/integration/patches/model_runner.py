"""Patch point `model_runner`: construct `sage_attn` on releases without a registry (0.4.10).

There, `ModelRunner._get_attention_backend_from_str` is an if/elif chain that raises
`ValueError("Invalid attention backend")` for unknown names; the wrapper answers
`sage_attn` itself and hands every other name to SGLang.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import wrapt

from sglang_sage_ext.integration import compat
from sglang_sage_ext.integration.compat import BACKEND_NAME
from sglang_sage_ext.integration.factory import create_sage_backend
from sglang_sage_ext.integration.patches import MARKER


def _from_str(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    name = args[0] if args else kwargs.get("backend_str")
    if name == BACKEND_NAME:
        return create_sage_backend(instance)
    return wrapped(*args, **kwargs)


def apply(module: ModuleType) -> str:
    """Wrap `ModelRunner._get_attention_backend_from_str` when there is no registry."""
    if compat.features().has_attention_registry:
        return "not needed: this release has attention_registry"
    method = getattr(module.ModelRunner, "_get_attention_backend_from_str", None)
    if method is None:
        raise AttributeError("ModelRunner._get_attention_backend_from_str not found")
    if getattr(method, MARKER, False):
        return "already applied"
    wrapt.wrap_function_wrapper(module, "ModelRunner._get_attention_backend_from_str", _from_str)
    setattr(module.ModelRunner._get_attention_backend_from_str, MARKER, True)
    return "applied: ModelRunner._get_attention_backend_from_str wrapped"


def is_applied(module: ModuleType) -> bool:
    """Whether the live ModelRunner still has our wrapper (a reload drops it)."""
    method = getattr(getattr(module, "ModelRunner", None), "_get_attention_backend_from_str", None)
    return bool(getattr(method, MARKER, False))
