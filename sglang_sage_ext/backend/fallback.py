"""When the Sage path is exact enough to use, and why not otherwise (the fallback decision table).

Two Sage kernels serve extend batches. SageAttention 1.0.6's `sageattn_varlen` masks top-left
and has no paged-KV input, so it only takes batches where every request starts at position 0.
The project's paged kernel (`kernels.paged_sage`, bottom-right mask, prefix read from the KV
pool) takes the rest: radix-cache hits, later chunks of a chunked prefill, MIXED batches, and
head_dim 96. What neither can do runs on the exact native path (the best native backend),
with a reason; so do batches where the measured cost model (`cost_model`) says Sage loses.
Nothing here imports SGLang; inputs are plain values.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sglang_sage_ext import env


@dataclass(frozen=True)
class HeadConfig:
    """Per-rank head counts and head dims of one attention layer."""

    q_heads: int
    k_heads: int
    v_heads: int
    qk_head_dim: int
    v_head_dim: int


logger = logging.getLogger("sglang_sage_ext")

FORCE_FALLBACK_ENV = "SGLANG_SAGE_FORCE_FALLBACK"
PAGED_KERNEL_ENV = "SGLANG_SAGE_PAGED_EXTEND"
CPU_INTERPRET_ENV = "SGLANG_SAGE_CPU_INTERPRET"
MIN_TOKENS_ENV = "SGLANG_SAGE_MIN_TOKENS"
COST_MODEL_ENV = "SGLANG_SAGE_COST_MODEL"
#: Below this many new tokens in a batch the native path is used: Sage's quantization
#: pass costs more than it saves there, and a single token smoothed by its own mean
#: quantizes to a zero scale (0/0 in sageattention 1.0.6's per-block int8 quantizer).
DEFAULT_MIN_TOKENS = 16  # = env.BY_NAME[MIN_TOKENS_ENV].default (a test keeps them equal)

SAGE_HEAD_DIMS = (64, 128)  # sageattn_varlen 1.0.6 asserts head_dim in [64, 128]
PAGED_HEAD_DIMS = (64, 96, 128)  # the paged kernel (kernels.paged_sage), D padded to 128
SAGE_DTYPES = ("float16", "bfloat16")
SAGE_FORWARD_MODES = ("EXTEND", "MIXED")


class Reason(str, enum.Enum):
    """Why an extend call ran on the exact native path instead of Sage."""

    # process-wide: decided once when the backend is built
    FORCED_OFF = "forced_off"
    NO_CUDA = "no_cuda"
    GPU_TOO_OLD = "gpu_older_than_sm80"
    SAGEATTENTION_UNAVAILABLE = "sageattention_unavailable"
    MODEL_DTYPE = "model_dtype"
    # per layer or per batch
    FORWARD_MODE = "forward_mode"
    GRAPH_CAPTURE = "cuda_graph_capture"
    DTYPE = "dtype"
    HEAD_DIM = "head_dim"
    GQA_RATIO = "gqa_ratio"
    NOT_CAUSAL = "not_causal"
    SLIDING_WINDOW = "sliding_window"
    LOGIT_CAP = "logit_cap"
    SINKS_OR_SCORE_MOD = "sinks_or_score_mod"
    XAI_TEMPERATURE = "xai_temperature"
    CACHED_PREFIX = "cached_prefix"
    PREFIX_UNKNOWN = "prefix_lens_unknown"
    SHORT_EXTEND = "short_extend"
    COST_MODEL = "cost_model"
    KV_CACHE_DTYPE = "kv_cache_dtype"
    LAYOUT = "layout"
    CUSTOM_MASK = "custom_mask"
    LSE_OR_SKIP = "lse_or_skip"
    TRITON_ONLY_BRANCH = "triton_only_branch"


#: What each reason means and how a user gets Sage back, for logs and `doctor`.
EXPLAIN: dict[Reason, str] = {
    Reason.FORCED_OFF: f"{FORCE_FALLBACK_ENV}=1 forces the exact native path; unset it to use Sage",
    Reason.NO_CUDA: "not running on a CUDA GPU (e.g. --device cpu); Sage needs an NVIDIA GPU "
    f"({CPU_INTERPRET_ENV}=1 with TRITON_INTERPRET=1 runs it under Triton's interpreter, slowly)",
    Reason.GPU_TOO_OLD: "SageAttention needs compute capability 8.0+ (Ampere or newer)",
    Reason.SAGEATTENTION_UNAVAILABLE: "sageattention>=1.0.6 is not importable; "
    "fix: pip install 'sageattention>=1.0.6'",
    Reason.MODEL_DTYPE: "model dtype is not float16/bfloat16; fix: --dtype bfloat16",
    Reason.FORWARD_MODE: "not a plain extend (speculative verify/draft, DLLM, ...)",
    Reason.GRAPH_CAPTURE: "inside CUDA-graph capture",
    Reason.DTYPE: "query dtype is not float16/bfloat16",
    Reason.HEAD_DIM: "head_dim not in (64, 96, 128) (without the paged kernel: (64, 128)) or "
    "qk/v head dims differ",
    Reason.GQA_RATIO: "query heads are not a multiple of KV heads",
    Reason.NOT_CAUSAL: "non-causal attention (cross-attention, encoder-only, bidirectional)",
    Reason.SLIDING_WINDOW: "sliding-window layer",
    Reason.LOGIT_CAP: "logit soft-capping",
    Reason.SINKS_OR_SCORE_MOD: "attention sinks or score_mod",
    Reason.XAI_TEMPERATURE: "xai temperature scaling",
    Reason.CACHED_PREFIX: "a request in the batch has a cached prefix (radix-cache hit or a "
    "later chunk of chunked prefill) and the paged Sage kernel is off or unavailable "
    f"({PAGED_KERNEL_ENV}=0, or a Triton without tensor descriptors); sageattn 1.0.6's causal "
    "mask is top-left aligned",
    Reason.PREFIX_UNKNOWN: "the batch carries no CPU prefix lengths",
    Reason.SHORT_EXTEND: f"fewer new tokens than {MIN_TOKENS_ENV} (default {DEFAULT_MIN_TOKENS})",
    Reason.COST_MODEL: "the measured cost model predicts the native kernel is faster for this "
    f"batch shape (short or many small requests); {COST_MODEL_ENV}=off sends every eligible "
    "batch to Sage",
    Reason.KV_CACHE_DTYPE: "the KV cache is not float16/bfloat16 (e.g. --kv-cache-dtype "
    "fp8_e4m3) or holds scaled K/V (k_scale/v_scale != 1); the paged Sage kernel reads the "
    "pool as plain K and V",
    Reason.LAYOUT: "q/k/v/o or the KV pool without a contiguous last dimension, or a paged "
    "4-D KV pool view ([pages, page_size, heads, dim])",
    Reason.CUSTOM_MASK: "custom attention mask",
    Reason.LSE_OR_SKIP: "the caller needs the LSE or a split prefix/extend pass",
    Reason.TRITON_ONLY_BRANCH: "SGLang took a Triton-only branch (deterministic mode, DCP, "
    "split-KV verify)",
}

PROCESS_WIDE = frozenset(
    {
        Reason.FORCED_OFF,
        Reason.NO_CUDA,
        Reason.GPU_TOO_OLD,
        Reason.SAGEATTENTION_UNAVAILABLE,
        Reason.MODEL_DTYPE,
    }
)


def forced_off() -> bool:
    """The documented switch that sends every extend batch to the exact native path.

    Parsed by `env` (as `doctor` does), so `0`/`off` mean off and a typo is warned about once.
    """
    return env.flag(FORCE_FALLBACK_ENV, logger.warning)


#: SGLANG_SAGE_PAGED_EXTEND values: which Sage batches the paged kernel takes.
PAGED_MODES = env.BY_NAME[PAGED_KERNEL_ENV].choices


def paged_kernel_mode() -> str:
    """Which Sage batches the paged kernel takes (SGLANG_SAGE_PAGED_EXTEND).

    "all" (default): every one; it needs no host sync and is more accurate than
    sageattn_varlen. "prefix": only what sageattn_varlen cannot do (cached prefixes, head_dim
    96). "off" (or 0): prefix batches go back to Triton.
    """
    return str(env.value(PAGED_KERNEL_ENV, logger.warning))


def cpu_interpret_enabled() -> bool:
    """SGLANG_SAGE_CPU_INTERPRET=1 with TRITON_INTERPRET=1: on `--device cpu`, run the paged Sage
    kernel under Triton's interpreter instead of falling back (slow; for CI and debugging, so
    that the whole Sage route through a real server is testable without a GPU).
    """
    return env.flag(CPU_INTERPRET_ENV, logger.warning) and os.environ.get("TRITON_INTERPRET") == "1"


def paged_kernel_enabled() -> bool:
    """False when the user turned the paged Sage kernel off (prefix batches then use Triton)."""
    return paged_kernel_mode() != "off"


def needs_paged_kernel(prefix_lens: Iterable[int], head_dim: int, mode: str = "prefix") -> bool:
    """True when the batch goes to the paged kernel rather than sageattn_varlen."""
    if mode == "all":
        return True
    return head_dim not in SAGE_HEAD_DIMS or any(int(n) for n in prefix_lens)


def min_tokens() -> int:
    """Smallest number of new tokens in a batch that Sage handles (invalid: the default, warned)."""
    return int(env.value(MIN_TOKENS_ENV, logger.warning))  # type: ignore[call-overload]


def process_reason(
    *,
    device_type: str,
    capability: tuple[int, int] | None,
    sageattention_ok: bool,
    model_dtype: str,
    cpu_interpret: bool = False,
) -> Reason | None:
    """The reason Sage can never run in this process, or None.

    `cpu_interpret`: a CPU process where the paged kernel runs under Triton's interpreter
    (`cpu_interpret_enabled`); only the model dtype and the force switch then apply.
    """
    if forced_off():
        return Reason.FORCED_OFF
    if device_type != "cuda" and not cpu_interpret:
        return Reason.NO_CUDA
    if device_type == "cuda" and (capability is None or capability < (8, 0)):
        return Reason.GPU_TOO_OLD
    if device_type == "cuda" and not sageattention_ok:
        return Reason.SAGEATTENTION_UNAVAILABLE
    if model_dtype not in SAGE_DTYPES:
        return Reason.MODEL_DTYPE
    return None


def cost_model_enabled() -> bool:
    """SGLANG_SAGE_COST_MODEL: "auto" (default) routes by the measured cost model; "off" sends
    every batch Sage can compute exactly to Sage (tests, and measuring Sage where it loses)."""
    return env.value(COST_MODEL_ENV, logger.warning) != "off"


def batch_reason(
    *,
    capturing: bool,
    extend_lens: Sequence[int] | None,
    prefix_lens: Sequence[int] | None,
    min_new_tokens: int,
    paged_kernel: bool,
) -> Reason | None:
    """The reason a whole extend batch must use the native path, from its host-side shapes."""
    if capturing:
        return Reason.GRAPH_CAPTURE
    if prefix_lens is None or extend_lens is None:
        return Reason.PREFIX_UNKNOWN
    if not paged_kernel and any(prefix_lens):
        return Reason.CACHED_PREFIX
    if sum(extend_lens) < min_new_tokens:
        return Reason.SHORT_EXTEND
    return None


def extend_reason(
    *,
    forward_mode: str,
    capturing: bool,
    dtype: str,
    head: HeadConfig,
    is_cross_attention: bool,
    sliding_window_size: int | None,
    logit_cap: float | None,
    xai_temperature_len: int | None,
    extra_kwargs: Mapping[str, Any],
    prefix_lens: Iterable[int] | None,
    num_tokens: int,
    min_new_tokens: int,
    paged_kernel: bool,
) -> Reason | None:
    """The reason one layer's extend call must use Triton, or None when Sage is exact.

    `paged_kernel`: the paged Sage kernel is usable in this process (prefix batches, D=96).
    """
    if forward_mode not in SAGE_FORWARD_MODES:
        return Reason.FORWARD_MODE
    if capturing:
        return Reason.GRAPH_CAPTURE
    if dtype not in SAGE_DTYPES:
        return Reason.DTYPE
    head_dims = PAGED_HEAD_DIMS if paged_kernel else SAGE_HEAD_DIMS
    if head.qk_head_dim != head.v_head_dim or head.qk_head_dim not in head_dims:
        return Reason.HEAD_DIM
    if head.k_heads <= 0 or head.q_heads % head.k_heads or head.k_heads != head.v_heads:
        return Reason.GQA_RATIO
    if is_cross_attention:
        return Reason.NOT_CAUSAL
    if sliding_window_size is not None and sliding_window_size > -1:
        return Reason.SLIDING_WINDOW
    if logit_cap:
        return Reason.LOGIT_CAP
    if any(extra_kwargs.get(name) is not None for name in ("sinks", "score_mod", "aux_tensors")):
        return Reason.SINKS_OR_SCORE_MOD
    if xai_temperature_len is not None and xai_temperature_len > 0:
        return Reason.XAI_TEMPERATURE
    if prefix_lens is None:
        return Reason.PREFIX_UNKNOWN
    if not paged_kernel and any(int(n) for n in prefix_lens):
        return Reason.CACHED_PREFIX
    if num_tokens < min_new_tokens:
        return Reason.SHORT_EXTEND
    return None


def kernel_reason(params: Mapping[str, Any], *, paged: bool = False) -> Reason | None:
    """Re-check the arguments SGLang actually passed to its extend kernel.

    `params` holds only the arguments given (`inspect.BoundArguments.arguments`), so the
    kernel's defaults are assumed for the rest. `paged`: the batch goes to the paged kernel,
    which also reads the KV pool (dtype and layout checked here).
    """
    if params.get("custom_mask") is not None:
        return Reason.CUSTOM_MASK
    if not params.get("is_causal", True):
        return Reason.NOT_CAUSAL
    window = params.get("sliding_window_size", -1)
    if window is not None and window > -1:
        return Reason.SLIDING_WINDOW
    if params.get("logit_cap") or 0.0:
        return Reason.LOGIT_CAP
    if any(params.get(name) is not None for name in ("sinks", "score_mod", "aux_tensors")):
        return Reason.SINKS_OR_SCORE_MOD
    xai = params.get("xai_temperature_len", -1)
    if xai is not None and xai > 0:
        return Reason.XAI_TEMPERATURE
    if (
        params.get("lse_extend") is not None
        or params.get("skip_prefix")
        or params.get("skip_extend")
    ):
        return Reason.LSE_OR_SKIP
    if paged:
        pool = [params.get("k_buffer"), params.get("v_buffer")]
        pool_dtypes = [str(getattr(t, "dtype", "")).removeprefix("torch.") for t in pool]
        if any(dtype not in SAGE_DTYPES for dtype in pool_dtypes):
            return Reason.KV_CACHE_DTYPE
        # checkpoints with KV scales store K/scale, V/scale in the pool (SGLang's kernel
        # multiplies them back in); the paged kernel reads the pool as plain K and V
        if any(params.get(name, 1.0) not in (None, 1.0) for name in ("k_scale", "v_scale")):
            return Reason.KV_CACHE_DTYPE
        names = ("q_extend", "k_extend", "v_extend", "o_extend", "k_buffer", "v_buffer")
        if any(params[n].stride(-1) != 1 for n in names if params.get(n) is not None):
            return Reason.LAYOUT
        # the kernel reads [slots, heads, dim] pools; 0.5.17+ shared pools pass
        # [pages, page_size, heads, dim] views with PAGE_SIZE-aware addressing
        if any(getattr(t, "ndim", 3) != 3 for t in pool if t is not None):
            return Reason.LAYOUT
    return None
