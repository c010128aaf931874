"""The Sage extend kernel call: SageAttention 1.0.6 `sageattn_varlen` on SGLang's packed layout.

SageAttention (Zhang et al., "SageAttention: Accurate 8-Bit Attention for Plug-and-play
Inference Acceleration", ICLR 2025, arXiv:2410.02367) quantizes Q and K per block to INT8
after subtracting the mean of K ("smoothing"), and computes PV in FP16.
"""

from __future__ import annotations

import functools

import torch

from sglang_sage_ext.compat import installed_version, parse_version
from sglang_sage_ext.package import SAGEATTENTION_MIN


@functools.lru_cache(maxsize=1)
def sageattention_problem() -> str | None:
    """None when a usable sageattention is importable, else what is wrong and how to fix it."""
    version = installed_version("sageattention")
    if version is None:
        return "sageattention is not installed; fix: pip install 'sageattention>=1.0.6'"
    if parse_version(version) < SAGEATTENTION_MIN:
        return f"sageattention {version} is too old; fix: pip install -U 'sageattention>=1.0.6'"
    try:
        from sageattention import sageattn_varlen  # noqa: F401
    except Exception as exc:
        return f"sageattention {version} does not import ({type(exc).__name__}: {exc})"
    return None


def sage_extend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    sm_scale: float | None,
    num_tokens: int,
) -> None:
    """Causal attention of `num_tokens` packed new tokens (no prefix) into `o[:num_tokens]`.

    q: [T, Hq, D], k/v: [T, Hkv, D], o: [T, Hq, D] (T >= num_tokens; rows past num_tokens are
    padding SGLang may add for piecewise CUDA graphs). cu_seqlens: [bs + 1] int32 starts of
    each request, equal for queries and keys because there is no prefix.
    """
    from sageattention import sageattn_varlen

    k_new = k[:num_tokens]
    # Smoothing out of place: sageattention 1.0.6 subtracts the mean from K *in place*, and K
    # may alias SGLang's tensors. Any per-head vector subtracted from every key leaves the
    # softmax unchanged; the mean over the batch is what sageattn_varlen itself uses.
    k_smoothed = k_new - k_new.mean(dim=0, keepdim=True)
    out = sageattn_varlen(
        q[:num_tokens],
        k_smoothed,
        v[:num_tokens],
        cu_seqlens,
        cu_seqlens,
        max_seqlen,
        max_seqlen,
        is_causal=True,
        sm_scale=sm_scale,
        smooth_k=False,
    )
    o[:num_tokens].copy_(out)
