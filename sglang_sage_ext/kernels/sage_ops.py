"""The two Sage extend kernel calls, on SGLang's extend-kernel arguments.

* `sage_extend`: SageAttention 1.0.6 `sageattn_varlen` (Zhang et al., "SageAttention: Accurate
  8-Bit Attention for Plug-and-play Inference Acceleration", ICLR 2025, arXiv:2410.02367):
  INT8 Q/K per block after smoothing K, FP16 PV. Prefix-free batches only (top-left mask).
* `sage_extend_paged`: the project's Triton kernel (`paged_sage`), same method with a
  bottom-right mask over the paged prefix: any batch, including radix hits, chunked prefill and
  MIXED batches (the default for every Sage batch).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import torch

from sglang_sage_ext import env
from sglang_sage_ext.package import SAGEATTENTION_MIN, installed_version, parse_version

logger = logging.getLogger("sglang_sage_ext")


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


PAGED_PV_ENV = "SGLANG_SAGE_EXTEND_PV"
#: FP16 P·V by default: 7e-3..9e-3 median rel-L2 vs float64 (sageattn 1.0.6: 1.15e-2) for 4-5 %
#: less speed than FP8 P·V on an H100 (3.0e-2..3.8e-2; bench/results/kernel_notes.md).
DEFAULT_PAGED_PV = "fp16"  # = env.BY_NAME[PAGED_PV_ENV].default (a test keeps them equal)


Q_SMOOTH_ENV = "SGLANG_SAGE_Q_SMOOTH"
#: auto = on with FP16 P·V in the Triton kernel (LLM-like inputs: ~30 % less error, +15 %
#: instructions in its loop), off with FP8 P·V (e4m3 dominates there) and in the Hopper CUDA
#: kernel (9-20 % slower with it); `paged_sage.resolve_q_smooth`.
DEFAULT_Q_SMOOTH = "auto"  # = env.BY_NAME[Q_SMOOTH_ENV].default (a test keeps them equal)


@functools.lru_cache(maxsize=1)
def paged_kernel_problem() -> str | None:
    """None when the paged Sage kernel can be built here, else why not and how to fix it."""
    try:
        import sglang_sage_ext.kernels.paged_sage  # noqa: F401  (needs triton tensor descriptors)
    except Exception as exc:
        return (
            f"the paged Sage kernel does not import ({type(exc).__name__}: {exc}); "
            "fix: a Triton with triton.tools.tensor_descriptor (3.4+)"
        )
    return None


def paged_pv_mode() -> str:
    """P·V precision of the paged kernel: SGLANG_SAGE_EXTEND_PV = fp16 (default) | fp8 | auto."""
    return str(env.value(PAGED_PV_ENV, logger.warning))  # invalid: fp16, with one warning


KERNEL_ENV = "SGLANG_SAGE_KERNEL"


def paged_kernel_choice(
    device: torch.device, pv_mode: str, q_smooth: str = DEFAULT_Q_SMOOTH, head_dim: int = 128
) -> tuple[str, str]:
    """("sm90" | "triton", one line for the log and `doctor`): which kernel runs Sage batches.

    The Hopper CUDA kernel (`sage_sm90`: head_dim 128 with FP16 or FP8 P·V, head_dim 64 with
    FP16 P·V; with or without Q smoothing) where SGLANG_SAGE_KERNEL is auto or cuda and it
    builds here (the first call compiles the variant these modes and the model's `head_dim` run
    with nvcc and caches the cubin); the Triton kernel otherwise.
    """
    choice = str(env.value(KERNEL_ENV, logger.warning))
    if choice == "triton":
        return "triton", "Triton (SGLANG_SAGE_KERNEL=triton)"
    from sglang_sage_ext.kernels import sage_sm90
    from sglang_sage_ext.kernels.paged_sage import resolve_pv_mode, resolve_q_smooth

    pv_fp8 = device.type == "cuda" and resolve_pv_mode(pv_mode, device)
    smooth = resolve_q_smooth(q_smooth, pv_fp8, "sm90")
    problem = sage_sm90.problem(device, head_dim, pv_fp8, smooth)
    if problem is None:
        pv, qs = "FP8" if pv_fp8 else "FP16", "on" if smooth else "off"
        what = f"{sage_sm90.describe(pv_fp8, smooth, head_dim)}, {pv} P·V, Q smoothing {qs}"
        return "sm90", f"Hopper CUDA kernel ({what}; other head dims on Triton)"
    if choice == "cuda":
        logger.warning("sage_attn: SGLANG_SAGE_KERNEL=cuda but %s; using Triton", problem)
    return "triton", f"Triton ({problem})"


def kernel_choice_here(pv_mode: str, q_smooth: str = DEFAULT_Q_SMOOTH) -> tuple[str, str]:
    """`paged_kernel_choice` on this machine's first GPU (builds the head_dim 128 kernel), for
    `doctor`."""
    if not torch.cuda.is_available():
        return "triton", "Triton (no CUDA GPU)"
    return paged_kernel_choice(torch.device("cuda"), pv_mode, q_smooth)


def kernel_line() -> str:
    """The Sage extend kernel a server on this machine would run, for `doctor` (builds it)."""
    return kernel_choice_here(paged_pv_mode(), paged_q_smooth())[1]


def paged_q_smooth() -> str:
    """Q smoothing of the paged kernel: SGLANG_SAGE_Q_SMOOTH = auto (default) | on | off."""
    return str(env.value(Q_SMOOTH_ENV, logger.warning))  # invalid: auto, with one warning


def extend_route_summary(
    mode: str,
    paged_problem: str | None,
    pv_mode: str,
    q_smooth: str | None = None,
    kernel: str = "triton",
) -> str:
    """Which kernel takes which Sage extend batches, in words (startup log and `doctor`).

    `kernel`: `paged_kernel_choice()`'s pick; "auto" leaves Q smoothing off in the Hopper CUDA
    kernel (`paged_sage.resolve_q_smooth`), "on" smooths there too."""
    if q_smooth == "auto":  # paged_sage.resolve_q_smooth's rule, in words
        q_smooth = {"fp16": "on", "fp8": "off"}.get(pv_mode, "on with FP16 P·V")
        if kernel == "sm90" and q_smooth != "off":
            both = f"{Q_SMOOTH_ENV}=on smooths both"
            q_smooth = f"off in the Hopper CUDA kernel ({q_smooth} where Triton runs; {both})"
    smooth = f", Q smoothing {q_smooth}" if q_smooth else ""
    paged = f"the paged Sage kernel (P·V {pv_mode}{smooth})"
    if mode == "off" or paged_problem:
        why = paged_problem or "SGLANG_SAGE_PAGED_EXTEND=off"
        return f"prefix-free on sageattn_varlen, cached prefixes on Triton ({why})"
    if mode == "all":
        return f"all on {paged}"
    return f"prefix-free on sageattn_varlen, cached prefixes and head_dim 96 on {paged}"


def sage_extend_paged(
    params: Mapping[str, Any],
    pv_mode: str,
    plan: Any = None,
    workspace: Any = None,
    kernel: str = "triton",
    q_smooth: str = DEFAULT_Q_SMOOTH,
) -> None:
    """Sage attention of an extend batch (cached prefixes or not), from SGLang's kernel arguments.

    `params`: the bound arguments of SGLang's `extend_attention_fwd` (q/k/v/o_extend, k/v_buffer,
    qo_indptr, kv_indptr, kv_indices, max_len_extend, sm_scale); writes `o_extend`.
    `plan` / `workspace`: the forward batch's `paged_plan.ExtendPlan` and the reused buffers.
    `kernel`: `paged_kernel_choice()`'s pick; head dims and P·V modes no sm90 kernel is built
    for run Triton.
    `q_smooth`: auto | on | off (`paged_q_smooth()`).
    """
    from sglang_sage_ext.kernels import sage_sm90
    from sglang_sage_ext.kernels.paged_sage import resolve_pv_mode, sage_extend_attention

    q = params["q_extend"]
    if kernel == "sm90" and sage_sm90.head_dim_problem(
        q.shape[-1], resolve_pv_mode(pv_mode, q.device)
    ):
        kernel = "triton"
    sage_extend_attention(
        q,
        params["k_extend"],
        params["v_extend"],
        params["o_extend"],
        params["k_buffer"],
        params["v_buffer"],
        params["qo_indptr"],
        params["kv_indptr"],
        params["kv_indices"],
        int(params["max_len_extend"]),
        params.get("sm_scale"),
        pv_mode=pv_mode,
        q_smooth=q_smooth,
        plan=plan,
        workspace=workspace,
        kernel=kernel,
    )
