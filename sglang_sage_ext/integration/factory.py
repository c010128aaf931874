"""`create_sage_backend(runner)`: what SGLang calls to build `sage_attn` (registry or 0.4.10 hook).

It refuses models the backend cannot serve with one message that names the problem and the
fix, and imports the torch-heavy backend module only when a backend is really built.
"""

from __future__ import annotations

import logging
from typing import Any

from sglang_sage_ext.integration import compat, native
from sglang_sage_ext.integration.patches import MARKER

logger = logging.getLogger("sglang_sage_ext")


class SageAttnConfigError(ValueError):
    """`sage_attn` cannot serve this model or configuration; the message says what to use."""


def check_model(runner: Any) -> None:
    """Raise SageAttnConfigError for models the Triton-based sage_attn backend cannot serve."""
    model_config = getattr(runner, "model_config", None)
    if getattr(model_config, "is_encoder_decoder", False):
        raise SageAttnConfigError(
            "sage_attn does not support encoder-decoder (cross-attention) models. "
            "Fix: launch with --attention-backend flashinfer (or another backend that supports "
            "cross-attention)."
        )
    if getattr(runner, "use_mla_backend", False):
        raise SageAttnConfigError(
            "sage_attn does not support MLA models (DeepSeek-V2/V3 style attention). "
            "Fix: launch with --attention-backend fa3, flashinfer, flashmla or triton."
        )


def create_sage_backend(runner: Any) -> Any:
    """Build the `sage_attn` backend for one ModelRunner (one per TP/PP rank)."""
    check_model(runner)
    from sglang_sage_ext.backend.sage_backend import SageTritonAttnBackend

    native_backend, name, why = native.build_native_backend(runner)
    logger.info("sage_attn: exact path for extend batches: %s (%s)", name, why)
    return SageTritonAttnBackend(
        runner,
        raw_extend_kernel=compat.raw_extend_kernel(),
        head_config=compat.head_config,
        native_backend=native_backend,
        native_name=name,
    )


setattr(create_sage_backend, MARKER, True)
