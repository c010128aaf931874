"""Patch point `registry`: register the `sage_attn` factory in SGLang's backend registry.

`attention_registry.ATTENTION_BACKENDS` exists from 0.5.5 on and is imported by name
everywhere, so registering into it works whatever the import order.
"""

from __future__ import annotations

from types import ModuleType

from sglang_sage_ext.integration.compat import BACKEND_NAME
from sglang_sage_ext.integration.factory import create_sage_backend
from sglang_sage_ext.integration.patches import MARKER


def apply(module: ModuleType) -> str:
    """Register `create_sage_backend` under `sage_attn` (idempotent)."""
    backends = module.ATTENTION_BACKENDS
    current = backends.get(BACKEND_NAME)
    if current is not None and getattr(current, MARKER, False):
        return "already applied"
    if current is not None:
        return f"not needed: {BACKEND_NAME!r} is already registered by {current.__module__}"
    module.register_attention_backend(BACKEND_NAME)(create_sage_backend)
    return "applied: register_attention_backend('sage_attn')"


def is_applied(module: ModuleType) -> bool:
    """Whether the live registry still holds `sage_attn` (a reload empties it)."""
    return BACKEND_NAME in getattr(module, "ATTENTION_BACKENDS", {})
