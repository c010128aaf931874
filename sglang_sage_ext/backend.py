"""`SageTritonAttnBackend`: SGLang's Triton backend with the extend kernel swapped per batch.

Decode, forward metadata, K/V writes and CUDA-graph hooks stay SGLang's own for each release
(they changed in 0.5.10, 0.5.14, 0.5.17 and 0.5.23). Only the instance attribute
`extend_attention_fwd`, which every release's `forward_extend` calls after writing K/V, is
replaced by a dispatcher: batches Sage computes exactly go to the paged Sage kernel
(`kernels.sage_extend_paged`; by default all of them, including radix hits, later chunks of a
chunked prefill and MIXED batches) or, with SGLANG_SAGE_PAGED_EXTEND=prefix, prefix-free ones to
sageattn_varlen (`kernels.sage_extend`); all others go to the saved Triton kernel, with the
reason counted and logged once.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import torch

from sglang_sage_ext import compat, fallback, kernels
from sglang_sage_ext.compat import head_config
from sglang_sage_ext.fallback import Reason
from sglang_sage_ext.stats import STATS

logger = logging.getLogger("sglang_sage_ext")

_TritonAttnBackend: Any = None


def _triton_backend_class() -> Any:
    global _TritonAttnBackend
    if _TritonAttnBackend is None:
        from sglang.srt.layers.attention.triton_backend import TritonAttnBackend

        _TritonAttnBackend = TritonAttnBackend
    return _TritonAttnBackend


@dataclass
class _ExtendCall:
    """What `forward_extend` learned about the current layer call, for the dispatcher."""

    reason: Reason | None
    num_tokens: int
    num_prefix_tokens: int | None = None
    paged: bool = False
    dispatched: bool = False


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _device_facts(model_runner: Any) -> tuple[str, tuple[int, int] | None]:
    device = str(getattr(model_runner, "device", "cuda"))
    device_type = device.split(":")[0]
    capability = None
    if device_type == "cuda" and torch.cuda.is_available():
        gpu_id = getattr(model_runner, "gpu_id", torch.cuda.current_device())
        capability = torch.cuda.get_device_capability(gpu_id)
    return device_type, capability


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


class SageTritonAttnBackend(_triton_backend_class()):  # type: ignore[misc]
    """The `sage_attn` attention backend (a TritonAttnBackend subclass)."""

    def __init__(self, model_runner: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(model_runner, *args, **kwargs)
        self._triton_extend = self.extend_attention_fwd
        self._extend_signature = inspect.signature(compat.raw_extend_kernel())
        self.extend_attention_fwd = self._extend_dispatch
        self._call: _ExtendCall | None = None
        self._min_tokens = fallback.min_tokens()
        device_type, capability = _device_facts(model_runner)
        cpu_interpret = device_type == "cpu" and fallback.cpu_interpret_enabled()
        problem = kernels.sageattention_problem() if device_type == "cuda" else None
        self.sage_unavailable = fallback.process_reason(
            device_type=device_type,
            capability=capability,
            sageattention_ok=problem is None,
            model_dtype=_dtype_name(getattr(model_runner, "dtype", torch.bfloat16)),
            cpu_interpret=cpu_interpret,
        )
        paged_problem = kernels.paged_kernel_problem() if self.sage_unavailable is None else None
        # sageattn_varlen needs CUDA: under the CPU interpreter every Sage batch is paged
        self._paged_mode = "all" if cpu_interpret else fallback.paged_kernel_mode()
        self._paged_ok = self._paged_mode != "off" and paged_problem is None
        self._paged_pv = kernels.paged_pv_mode()
        if self.sage_unavailable is None:
            where = "CPU, Triton interpreter"
            if not cpu_interpret:
                where = f"GPU sm{capability[0]}{capability[1]}"
            logger.info(
                "sage_attn: Sage extend path on (%s; extend batches >= %d new tokens): %s; "
                "the rest on SGLang's Triton extend kernel",
                where,
                self._min_tokens,
                kernels.extend_route_summary(self._paged_mode, paged_problem, self._paged_pv),
            )
        else:
            detail = problem if self.sage_unavailable is Reason.SAGEATTENTION_UNAVAILABLE else ""
            STATS.announce(self.sage_unavailable, detail)

    def forward_extend(self, q, k, v, layer, forward_batch, *args, **kwargs):
        """Decide Sage or Triton for this layer call, then let SGLang run its own extend."""
        prefix_lens = getattr(forward_batch, "extend_prefix_lens_cpu", None)
        num_tokens = int(forward_batch.extend_num_tokens or 0)
        # head dims only where Sage could run (unknown layer classes must still fall back)
        head = head_config(layer) if self.sage_unavailable is None and k is not None else None
        reason = self._layer_reason(
            q, k, layer, forward_batch, kwargs, prefix_lens, num_tokens, head
        )
        paged = reason is None and fallback.needs_paged_kernel(
            prefix_lens, head.qk_head_dim, self._paged_mode
        )
        self._call = _ExtendCall(
            reason=reason,
            num_tokens=num_tokens,
            num_prefix_tokens=sum(int(n) for n in prefix_lens) if paged else None,
            paged=paged,
        )
        try:
            return super().forward_extend(q, k, v, layer, forward_batch, *args, **kwargs)
        finally:
            call, self._call = self._call, None
            if call is not None and not call.dispatched:
                STATS.record_fallback(Reason.TRITON_ONLY_BRANCH)

    def _layer_reason(
        self, q, k, layer, forward_batch, kwargs, prefix_lens, num_tokens, head
    ) -> Reason | None:
        if self.sage_unavailable is not None:
            return self.sage_unavailable
        if k is None:
            return Reason.TRITON_ONLY_BRANCH
        return fallback.extend_reason(
            forward_mode=forward_batch.forward_mode.name,
            capturing=_capturing(),
            dtype=_dtype_name(q.dtype),
            head=head,
            is_cross_attention=bool(getattr(layer, "is_cross_attention", False)),
            sliding_window_size=getattr(layer, "sliding_window_size", -1),
            logit_cap=getattr(layer, "logit_cap", 0.0),
            xai_temperature_len=getattr(layer, "xai_temperature_len", -1),
            extra_kwargs=kwargs,
            prefix_lens=prefix_lens,
            num_tokens=num_tokens,
            min_new_tokens=self._min_tokens,
            paged_kernel=self._paged_ok,
        )

    def _extend_dispatch(self, *args: Any, **kwargs: Any) -> Any:
        """Stands in for SGLang's `extend_attention_fwd` (same arguments, writes o_extend)."""
        call = self._call
        if call is None:  # called outside forward_extend: not ours to judge
            return self._triton_extend(*args, **kwargs)
        call.dispatched = True
        reason = call.reason
        params: dict[str, Any] = {}
        if reason is None:
            params = self._extend_signature.bind(*args, **kwargs).arguments
            reason = fallback.kernel_reason(params, paged=call.paged)
        if reason is not None:
            STATS.record_fallback(reason)
            return self._triton_extend(*args, **kwargs)
        if call.paged:
            kernels.sage_extend_paged(params, self._paged_pv, call.num_prefix_tokens)
            STATS.record_sage(call.num_tokens, "sage_paged")
            return None
        kernels.sage_extend(
            params["q_extend"],
            params["k_extend"],
            params["v_extend"],
            params["o_extend"],
            params["qo_indptr"],
            int(params["max_len_extend"]),
            params.get("sm_scale"),
            call.num_tokens,
        )
        STATS.record_sage(call.num_tokens, "sageattn_varlen")
        return None
