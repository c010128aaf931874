"""Launching the paged Sage extend kernel (`paged_sage_kernels`) on SGLang's extend layout.

Per layer call: one pre-pass launch (two with FP8 P·V) that writes packed INT8 K / FP16 (or
FP8) V copies into a reused `Workspace`, and one attention launch over a flattened tile map;
the per-batch shapes come from an `ExtendPlan` built once per forward batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import torch
import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from sglang_sage_ext.kernels import sage_sm90
from sglang_sage_ext.kernels.paged_plan import (
    ExtendPlan,
    Workspace,
    plan_extend,
    plan_from_indptr,
)
from sglang_sage_ext.kernels.paged_prep_kernel import _kv_prep_kernel
from sglang_sage_ext.kernels.paged_sage_kernels import _sage_extend_fwd
from sglang_sage_ext.kernels.triton_helpers import KEY_BLOCK

__all__ = ["KEY_BLOCK", "ExtendPlan", "Workspace", "plan_extend", "sage_extend_attention"]

_LOG2E = 1.4426950408889634
#: Default launch configuration on sm90 (TMA; see default_config) and elsewhere.
HOPPER_CONFIG = {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3}
GENERIC_CONFIG = {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3}
#: Candidate launch configurations of the attention kernel (few: each is a separate compile).
CONFIGS: tuple[dict[str, int], ...] = (
    GENERIC_CONFIG,
    {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 4},
    {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
    HOPPER_CONFIG,
    {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
)
#: Triton's CPU interpreter (3.9) converts fp32 -> float8e4nv without carrying a round-up into
#: the exponent (125.75 -> 64 instead of 128). Under the interpreter we round to 3 mantissa bits
#: ourselves first, so the conversion is exact and CPU tests see what the GPU's cvt.rn computes.
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_DEFAULT_WORKSPACE = Workspace()
_LOGGED: set[str] = set()
logger = logging.getLogger("sglang_sage_ext")
_CAPABILITY: dict[int | None, tuple[int, int]] = {}


def default_config(head_dim: int, pv_fp8: bool, capability: tuple[int, int] | None = None) -> dict:
    """The launch configuration: on sm90 128x128 tiles, 8 warps, 3 stages (the fastest of
    CONFIGS on an H100 for both P·V modes, bench/results/kernel_notes.md); elsewhere 128x64
    (no TMA, fewer registers; not measured)."""
    del head_dim, pv_fp8
    if capability is not None and capability >= (9, 0):
        return dict(HOPPER_CONFIG)
    return dict(GENERIC_CONFIG)


def _capability(device: torch.device) -> tuple[int, int] | None:
    if device.type != "cuda":
        return None
    return _CAPABILITY.setdefault(device.index, torch.cuda.get_device_capability(device))


def resolve_pv_mode(pv_mode: str, device: torch.device) -> bool:
    """True for FP8 P·V. "auto" picks FP8 where the GPU has FP8 tensor cores (sm89+)."""
    if pv_mode == "fp8":
        return True
    if pv_mode == "fp16":
        return False
    if pv_mode != "auto":
        raise ValueError(f"pv_mode must be 'auto', 'fp16' or 'fp8', not {pv_mode!r}")
    capability = _capability(device)
    return capability is not None and capability >= (8, 9)


def resolve_q_smooth(q_smooth: str, pv_fp8: bool, kernel: str = "triton") -> bool:
    """True to smooth Q. "auto": on with FP16 P·V on the Triton kernel; off with FP8 P·V and on
    the Hopper CUDA kernel ("sm90"); "on" / "off" apply to both kernels.

    Why: on LLM-like queries (per-channel bias) Q smoothing takes the FP16 P·V error from
    1.5e-2..1.9e-2 to 1.05e-2..1.37e-2 rel-L2 (bench/llm_accuracy.py, either kernel, H100). In
    the Triton kernel that costs one FADD per score and one per-key vector load per key tile
    (+15 % of the loop's instructions). The CUDA kernel, issue-bound in its softmax, loses
    9-20 % of its speed at 8K-32K (bench/results/sm90-smooth-h100-2026-11-28), which the cost
    table was not calibrated for, so "auto" keeps it off there. With FP8 P·V, e4m3's ~3.4e-2
    dominates and smoothing gains ~5 % of it, so the speed mode keeps the shorter loop.
    """
    if q_smooth == "on":
        return True
    if q_smooth == "off":
        return False
    if q_smooth != "auto":
        raise ValueError(f"q_smooth must be 'auto', 'on' or 'off', not {q_smooth!r}")
    return not pv_fp8 and kernel != "sm90"


def _check_inputs(q, k, v, o, k_buffer, v_buffer) -> None:
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads {q.shape[1]} are not a multiple of kv heads {k.shape[1]}")
    named = (("q", q), ("k", k), ("v", v), ("o", o), ("k_buffer", k_buffer), ("v_buffer", v_buffer))
    for name, t in named:
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must have a contiguous last dimension")


def sage_extend_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    qo_indptr: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    max_len_extend: int,
    sm_scale: float | None = None,
    *,
    pv_mode: str = "auto",
    q_smooth: str = "auto",
    config: dict[str, int] | None = None,
    plan: ExtendPlan | None = None,
    workspace: Workspace | None = None,
    kernel: str = "triton",
    sm90_spec: sage_sm90.Spec | None = None,
) -> dict[str, int] | None:
    """Sage (INT8 QK, FP8/FP16 PV) attention of an SGLang extend batch into `o`.

    q: [T, Hq, D]; k, v: [T, Hkv, D] new tokens (strided views allowed, last dim contiguous);
    o: [T, Hq, D], only rows < qo_indptr[-1] are written. k_buffer, v_buffer: [slots, Hkv, D]
    KV pool indexed by token slot: prefix token i of request b is at
    k_buffer[kv_indices[kv_indptr[b] + i]]. qo_indptr / kv_indptr: int32 or int64 [B+1]
    (kv_indptr counts prefix tokens only).
    Query row i of request b sees all of b's prefix and its new tokens j <= i.
    `q_smooth` ("auto" | "on" | "off"): subtract the request's mean query before INT8
    quantization and add q_mean . k back per key (SageAttention2); see `resolve_q_smooth`.
    `plan`: the batch's `plan_extend(...)` (SGLang's host-side lengths); without it one is made
    from the indptrs, which waits for the GPU once. `workspace`: reused packed buffers (default:
    one per process). `config` (BLOCK_M, BLOCK_N, num_warps, num_stages) overrides the launch
    configuration (benchmarks); then the compiled kernel's metadata is returned, else None.
    `kernel`: "triton" or "sm90" (the Hopper CUDA kernel of `sage_sm90`: D=128 with either P·V,
    D=64 with FP16 P·V; the caller checks `sage_sm90.problem()` first); `sm90_spec` picks
    another Hopper kernel than the P·V mode's (benchmarks).
    """
    batch = qo_indptr.numel() - 1
    if batch <= 0 or max_len_extend <= 0:
        return None
    _check_inputs(q, k, v, o, k_buffer, v_buffer)
    plan = plan if plan is not None else plan_from_indptr(qo_indptr, kv_indptr)
    pv_fp8 = resolve_pv_mode(pv_mode, q.device)
    head_dim = q.shape[2]
    wrong_dim = sage_sm90.head_dim_problem(head_dim, pv_fp8) if kernel == "sm90" else None
    if wrong_dim:
        raise ValueError(f"the sm90 kernel cannot run {wrong_dim}")
    if kernel == "sm90":
        kernel = _sm90_or_triton(q, o, qo_indptr, kv_indptr, plan)
    smooth = resolve_q_smooth(q_smooth, pv_fp8, kernel)
    spec = None
    if kernel == "sm90":
        spec = sage_sm90.spec_for(pv_fp8, smooth, head_dim)
        if sm90_spec is not None:  # a benchmark's variant, in this call's modes
            spec = dataclasses.replace(sm90_spec, pv_fp8=pv_fp8, q_smooth=smooth, head_dim=head_dim)
    qk_scale = (sm_scale if sm_scale is not None else head_dim**-0.5) * _LOG2E
    packed = _pre_pass(
        (q, k, v, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices), plan,
        workspace or _DEFAULT_WORKSPACE, pv_fp8, smooth, spec, qk_scale,
    )  # fmt: skip
    if spec is not None:
        kq, ks, vq, vmax, qmean, cq = packed
        sage_sm90.launch(
            q, o, kq, ks, vq, qo_indptr, kv_indptr, plan.blk_indptr, plan.tiles(spec.block_m),
            qk_scale, spec=spec, vmax=vmax if pv_fp8 else None,
            q_terms=(qmean, cq) if smooth else None,
        )  # fmt: skip
        return None
    cfg = config or default_config(head_dim, pv_fp8, _capability(q.device))
    compiled = _launch_attention(
        q, o, packed, qo_indptr, kv_indptr, plan, cfg, pv_fp8, smooth, qk_scale
    )  # fmt: skip
    return compiled_metadata(compiled) if config is not None else None


def _pre_pass(tensors, plan, ws, pv_fp8, smooth, spec, qk_scale) -> tuple:
    """Packed INT8 K (+ scales), V^T (FP16, or FP8 + |V| amax) and, with Q smoothing, the query
    means and per-key terms: one or two launches. `spec`: the Hopper kernel that reads them
    (its layout: BLOCKED, or FP8 keys permuted), None for the Triton kernel."""
    q, k, v, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices = tensors
    batch, head_dim, hkv = qo_indptr.numel() - 1, q.shape[2], k.shape[1]
    block_d = triton.next_power_of_2(head_dim)
    blocked = spec is not None and spec.blocked
    kq, ks, vq, vmax = ws.buffers(hkv, plan.n_pad, block_d, batch, pv_fp8, q.device, blocked)
    # without Q smoothing the kernels never dereference cq / qmean
    cq, qmean = (
        ws.q_smooth_buffers(q.shape[1], plan.n_pad, block_d, batch, q.device)
        if smooth
        else (ks, ks)
    )
    strides = [n for t in (q, k, v, k_buffer, v_buffer) for n in t.stride()[:2]]  # per token, head
    prep_args = (
        k, v, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices, plan.blk_indptr, kq, ks, vq,
        vmax, q, qmean, cq, qk_scale, batch, hkv, q.shape[1] // hkv, *strides, plan.n_pad,
    )  # fmt: skip
    prep = {"HEAD_DIM": head_dim, "BLOCK_D": block_d, "INTERPRET": _INTERPRET}
    prep["num_warps"] = 4 if block_d <= 64 else 8
    grid = (plan.n_blk, hkv)
    if pv_fp8:
        _kv_prep_kernel[grid](*prep_args, STATS=True, PV_FP8=True, Q_SMOOTH=False, **prep)
    _kv_prep_kernel[grid](
        *prep_args, STATS=False, PV_FP8=pv_fp8, Q_SMOOTH=smooth,
        PERMUTE_V=spec is not None and pv_fp8, BLOCKED=blocked, **prep,
    )  # fmt: skip
    return kq, ks, vq, vmax, qmean, cq


#: CUDA's limit on gridDim.y, which holds the query tiles of the Hopper kernels' grid.
MAX_GRID_Y = 65535


def too_many_tiles(plan: ExtendPlan) -> bool:
    """Whether the batch may have more 64-row query tiles than the CUDA grid holds."""
    return plan.tile_bound > MAX_GRID_Y


def _sm90_or_triton(q, o, qo_indptr, kv_indptr, plan: ExtendPlan) -> str:
    """ "sm90", or "triton" (logged once per reason) for a layout the CUDA kernel cannot read
    or a batch with more query tiles than its grid holds (over ~4M new tokens or 65K requests)."""
    problem = sage_sm90.layout_problem(q, o, qo_indptr, kv_indptr)
    if problem is None and too_many_tiles(plan):
        problem = f"a batch of over {MAX_GRID_Y} query tiles (the CUDA grid's limit)"
    if problem is None:
        return "sm90"
    if problem not in _LOGGED:
        _LOGGED.add(problem)
        logger.warning("sage_attn: %s; this call runs the Triton Sage kernel", problem)
    return "triton"


def _launch_attention(q, o, packed, qo_indptr, kv_indptr, plan, cfg, pv_fp8, smooth, qk_scale):
    """The attention launch: TMA descriptors over the packed copies, grid (tiles, Hq)."""
    kq, ks, vq, vmax, qmean, cq = packed
    hkv, n_pad, block_d = kq.shape
    hq, head_dim = q.shape[1], q.shape[2]
    block_n = cfg["BLOCK_N"]
    k_desc = TensorDescriptor(
        kq.view(hkv * n_pad, block_d), [hkv * n_pad, block_d], [block_d, 1], [block_n, block_d]
    )
    v_desc = TensorDescriptor(
        vq.view(hkv * block_d, n_pad), [hkv * block_d, n_pad], [n_pad, 1], [block_d, block_n]
    )
    tiles = plan.tiles(cfg["BLOCK_M"])
    grid = (tiles.shape[0], hq)
    return _sage_extend_fwd[grid](
        q, o, k_desc, ks, v_desc, vmax, qmean, cq, qo_indptr, kv_indptr, plan.blk_indptr, tiles,
        qk_scale, hkv, hq // hkv, q.stride(0), q.stride(1), o.stride(0), o.stride(1),
        n_pad, HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=block_n,
        PV_FP8=pv_fp8, Q_SMOOTH=smooth, INTERPRET=_INTERPRET, num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"],
    )  # fmt: skip


def compiled_metadata(compiled: object) -> dict[str, int]:
    """Registers, spills, shared memory, warps and stages of a launched Triton kernel."""
    meta = getattr(compiled, "metadata", None)
    out: dict[str, int] = {}
    for key in ("n_regs", "n_spills"):
        val = getattr(compiled, key, None)
        if isinstance(val, int):
            out[key] = val
    for key in ("shared", "num_warps", "num_stages"):
        val = getattr(meta, key, None)
        if isinstance(val, int):
            out[key] = val
    return out
