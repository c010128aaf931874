"""Which native backend serves decode, and the extend batches Sage does not take.

Sage only speeds up prefill; decode is memory-bound and SGLang's Triton decode is up to 2.2x
slower than FlashInfer's at long context. So, unless the user chose a decode backend, sage_attn
runs decode (and everything decode CUDA graphs capture) on the best native backend available,
through SGLang's own hybrid prefill/decode mechanism: fa3 where sgl_kernel's FA3 loads and the
GPU is sm80..sm90, else flashinfer, else triton.
"""

from __future__ import annotations

import logging
from typing import Any

from sglang_sage_ext import env

logger = logging.getLogger("sglang_sage_ext")

DECODE_ENV = "SGLANG_SAGE_DECODE_BACKEND"
#: Preference order; "triton" means: sage_attn serves decode itself (TritonAttnBackend).
PREFERENCE = ("fa3", "flashinfer", "triton")


def _capability() -> tuple[int, int] | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_capability()
    except Exception:
        return None


def _fa3_problem(capability: tuple[int, int]) -> str | None:
    if not (8, 0) <= capability <= (9, 0):
        return f"FA3 needs sm80..sm90, this GPU is sm{capability[0]}{capability[1]}"
    try:
        from sgl_kernel.flash_attn import flash_attn_with_kvcache  # noqa: F401
    except Exception as exc:
        return f"sgl_kernel FA3 does not load ({type(exc).__name__}: {exc})"
    return None


def _flashinfer_problem() -> str | None:
    try:
        import flashinfer  # noqa: F401
    except Exception as exc:
        return f"flashinfer does not import ({type(exc).__name__}: {exc})"
    return None


def native_decode_problems() -> dict[str, str | None]:
    """For each candidate decode backend: None when usable here, else why not."""
    capability = _capability()
    if capability is None:
        reason = "no CUDA GPU"
        return {"fa3": reason, "flashinfer": reason, "triton": None}
    return {"fa3": _fa3_problem(capability), "flashinfer": _flashinfer_problem(), "triton": None}


def best_decode_backend() -> tuple[str, str]:
    """(backend name, why) for decode under sage_attn; SGLANG_SAGE_DECODE_BACKEND overrides.

    An unknown name (a typo) is refused with one warning line and the automatic choice is
    made: handing it to SGLang would crash the scheduler at startup.
    """
    forced = str(env.value(DECODE_ENV, logger.warning))
    if forced != "auto":
        return forced, f"{DECODE_ENV}={forced}"
    problems = native_decode_problems()
    skipped = []
    for name in PREFERENCE:
        if problems[name] is None:
            if not skipped:
                return name, "fastest native decode backend here"
            return name, "best available; " + "; ".join(skipped)
        skipped.append(f"{name}: {problems[name]}")
    return "triton", "; ".join(skipped)  # pragma: no cover - triton is always usable


def choose(server_args: object) -> str | None:
    """Set the decode backend of a `sage_attn` launch before SGLang resolves its backends.

    Returns a status line, or None when the launch is not a plain `--attention-backend
    sage_attn` one. The user's `--decode-attention-backend` / `--prefill-attention-backend`
    always win; speculative decoding and non-CUDA devices keep sage_attn's own Triton decode.
    """
    if getattr(server_args, "attention_backend", None) != "sage_attn":
        return None
    if getattr(server_args, "_resolution_finished", False):  # 0.5.23: read-only once resolved
        return None
    decode = getattr(server_args, "decode_attention_backend", None)
    prefill = getattr(server_args, "prefill_attention_backend", None)
    if decode is not None or prefill not in (None, "sage_attn"):
        return f"kept the user's split backends (prefill={prefill}, decode={decode})"
    if getattr(server_args, "speculative_algorithm", None):
        return "decode on sage_attn (Triton): speculative decoding keeps one backend"
    if getattr(server_args, "device", None) not in (None, "cuda"):
        return f"decode on sage_attn (Triton): device {server_args.device}"
    name, why = best_decode_backend()
    if name in ("triton", "sage_attn"):
        return f"decode on sage_attn (Triton): {why}"
    server_args.prefill_attention_backend = "sage_attn"
    server_args.decode_attention_backend = name
    return f"decode on {name}: {why}; override with --decode-attention-backend"


def native_extend_choice(runner: Any) -> tuple[str, str]:
    """(backend name, why) for the extend batches Sage does not take in this scheduler.

    The decode backend chosen at launch (`choose`) when it is native, else the same preference
    order; "triton" means this backend's own Triton code. Speculative decoding keeps Triton
    (one backend must own draft/verify metadata).
    """
    server_args = getattr(runner, "server_args", None)
    if getattr(server_args, "speculative_algorithm", None):
        return "triton", "speculative decoding keeps one backend"
    if str(getattr(runner, "device", "cuda")).split(":")[0] != "cuda":
        return "triton", "not a CUDA device"
    decode = getattr(server_args, "decode_attention_backend", None)
    if decode in ("fa3", "flashinfer"):
        return decode, "the native decode backend of this launch"
    return best_decode_backend()


def build_native_backend(runner: Any) -> tuple[Any, str, str]:
    """(backend object or None, name, why): the native backend that serves exact extend batches.

    Built through SGLang's own registry (0.5.5+) or ModelRunner's string factory (0.4.10), so it
    owns its metadata, K/V writes and workspace exactly as when a user launches it. None (and
    "triton") when Triton is the best native choice or the build fails (logged once).
    """
    name, why = native_extend_choice(runner)
    if name in ("triton", "sage_attn"):
        return None, "triton", why
    try:
        registry = _registry()
        if registry is not None:
            if name not in registry:
                raise KeyError(f"{name!r} is not registered in this SGLang release")
            return registry[name](runner), name, why
        return runner._get_attention_backend_from_str(name), name, why
    except Exception as exc:
        logger.warning(
            "sage_attn: could not build the native %s backend for exact extend batches (%s: %s); "
            "using SGLang's Triton extend kernel instead",
            name,
            type(exc).__name__,
            exc,
        )
        return None, "triton", f"{name} failed to build: {type(exc).__name__}: {exc}"


def _registry() -> dict | None:
    try:
        from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS
    except ImportError:
        return None
    return ATTENTION_BACKENDS
