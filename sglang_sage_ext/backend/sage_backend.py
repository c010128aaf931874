"""`SageTritonAttnBackend`: Sage where it pays, the best native backend everywhere else.

Each forward batch is routed once, in `init_forward_metadata`, from host-side shapes:
* "sage": the cost model (`cost_model`) says the Sage kernel beats the native one on this batch
  shape. SGLang's own Triton code (this class's base) writes K/V and builds the prefix indices
  for each release (the protocol changed in 0.5.10, 0.5.14, 0.5.17 and 0.5.23); only the
  instance attribute `extend_attention_fwd` is replaced by a dispatcher that runs the paged
  Sage kernel with a per-batch plan and a reused workspace. A layer Sage cannot compute
  exactly runs on the native backend (its metadata is then built once for the batch).
* "native": the native backend (fa3 / flashinfer, built through SGLang's registry and passed
  in) owns metadata, K/V writes and attention, so `sage_attn` computes exactly what that
  backend computes; the reason (cost model, forced fallback, no CUDA, ...) is counted.
* "triton": forward modes SGLang keeps on this backend's own Triton code (speculative verify,
  draft extend, decode without the hybrid split), as SGLang's Triton backend does them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sglang_sage_ext.backend import cost_model, fallback
from sglang_sage_ext.backend.fallback import HeadConfig, Reason
from sglang_sage_ext.backend.stats import STATS
from sglang_sage_ext.kernels import sage_ops as kernels
from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend

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
    paged: bool = False
    dispatched: bool = False


@dataclass
class _BatchRoute:
    """Where one forward batch runs (see the module docstring), decided once per batch."""

    forward_batch: Any
    kind: str  # "sage" | "native" | "triton"
    reason: Reason | None = None
    plan: Any = None
    native_ready: bool = False


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


def _model_head_dim(model_runner: Any) -> int:
    """The model's attention head_dim (ModelConfig.head_dim in every supported release), so that
    startup builds the Hopper kernel the layers will run; 128 where a runner does not say."""
    head_dim = getattr(getattr(model_runner, "model_config", None), "head_dim", None)
    return int(head_dim) if isinstance(head_dim, int) and head_dim > 0 else 128


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _extend_lens(forward_batch: Any) -> tuple[list[int] | None, list[int] | None]:
    prefix = getattr(forward_batch, "extend_prefix_lens_cpu", None)
    seq = getattr(forward_batch, "extend_seq_lens_cpu", None)
    if prefix is None or seq is None:
        return None, None
    return [int(n) for n in seq], [int(n) for n in prefix]


class SageTritonAttnBackend(_triton_backend_class()):  # type: ignore[misc]
    """The `sage_attn` attention backend (a TritonAttnBackend subclass over a native backend)."""

    def __init__(
        self,
        model_runner: Any,
        *args: Any,
        raw_extend_kernel: Callable[..., Any],
        head_config: Callable[[Any], HeadConfig],
        native_backend: Any = None,
        native_name: str = "triton",
        **kwargs: Any,
    ) -> None:
        super().__init__(model_runner, *args, **kwargs)
        self._triton_extend = self.extend_attention_fwd
        self._extend_signature = inspect.signature(raw_extend_kernel)
        self.extend_attention_fwd = self._extend_dispatch
        self._head_config = head_config
        self._native = native_backend
        self.native_name = native_name if native_backend is not None else "triton"
        self._call: _ExtendCall | None = None
        self._batch: _BatchRoute | None = None
        self._min_tokens = fallback.min_tokens()
        self._workspace = Workspace()
        self._setup_sage(model_runner)

    def _setup_sage(self, model_runner: Any) -> None:
        """Decide once per process whether and how Sage can run, and log it."""
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
        kv_dtype = getattr(model_runner, "kv_cache_dtype", None)  # e.g. --kv-cache-dtype fp8_e4m3
        if (
            self.sage_unavailable is None
            and isinstance(kv_dtype, torch.dtype)
            and _dtype_name(kv_dtype) not in fallback.SAGE_DTYPES
        ):
            self.sage_unavailable = Reason.KV_CACHE_DTYPE
        paged_problem = kernels.paged_kernel_problem() if self.sage_unavailable is None else None
        # sageattn_varlen needs CUDA: under the CPU interpreter every Sage batch is paged
        self._paged_mode = "all" if cpu_interpret else fallback.paged_kernel_mode()
        self._paged_ok = self._paged_mode != "off" and paged_problem is None
        self._paged_pv = kernels.paged_pv_mode()
        self._paged_kernel, self.kernel_summary = "triton", "Triton"
        self._q_smooth = kernels.paged_q_smooth()
        self.cost_table = cost_model.load_table(capability, self.native_name)
        self._cost_model_on = fallback.cost_model_enabled()
        if self.sage_unavailable is not None:
            detail = problem if self.sage_unavailable is Reason.SAGEATTENTION_UNAVAILABLE else ""
            STATS.announce(self.sage_unavailable, detail)
            return
        if device_type == "cuda" and self._paged_ok:
            gpu = torch.device("cuda", getattr(model_runner, "gpu_id", torch.cuda.current_device()))
            self._paged_kernel, self.kernel_summary = kernels.paged_kernel_choice(
                gpu, self._paged_pv, self._q_smooth, _model_head_dim(model_runner)
            )
        where = (
            "CPU, Triton interpreter" if cpu_interpret else f"GPU sm{capability[0]}{capability[1]}"
        )
        routing = self.cost_table.describe() if self._cost_model_on else "cost model off"
        logger.info(
            "sage_attn: Sage extend path on (%s): %s, kernel %s; routing: %s; every other extend "
            "batch on the native backend %s",
            where,
            kernels.extend_route_summary(
                self._paged_mode, paged_problem, self._paged_pv, self._q_smooth, self._paged_kernel
            ),
            self.kernel_summary,
            routing,
            self.native_name,
        )

    # -- per forward batch -------------------------------------------------------------------

    def init_forward_metadata(self, forward_batch: Any) -> None:
        """Route the batch (Sage / native / Triton) and build only that path's metadata."""
        route = self._route(forward_batch)
        self._batch = route
        if route.kind == "native" and self._native is not None:
            self._native.init_forward_metadata(forward_batch)
            route.native_ready = True
            return
        super().init_forward_metadata(forward_batch)

    def _route(self, forward_batch: Any) -> _BatchRoute:
        mode = forward_batch.forward_mode.name
        if mode not in fallback.SAGE_FORWARD_MODES:
            return _BatchRoute(forward_batch, "triton")
        if self.sage_unavailable is not None:
            return _BatchRoute(forward_batch, "native", self.sage_unavailable)
        extend_lens, prefix_lens = _extend_lens(forward_batch)
        reason = fallback.batch_reason(
            capturing=_capturing(),
            extend_lens=extend_lens,
            prefix_lens=prefix_lens,
            min_new_tokens=self._min_tokens,
            paged_kernel=self._paged_ok,
        )
        if (
            reason is None
            and self._cost_model_on
            and not cost_model.sage_pays(self.cost_table, extend_lens, prefix_lens)
        ):
            reason = Reason.COST_MODEL
        if reason is not None:
            return _BatchRoute(forward_batch, "native", reason)
        plan = None
        if self._paged_ok:
            plan = plan_extend(extend_lens, prefix_lens, self.device)
        return _BatchRoute(forward_batch, "sage", plan=plan)

    def _current_route(self, forward_batch: Any) -> _BatchRoute:
        """The route `init_forward_metadata` chose for the batch this layer call belongs to.

        Not matched by object identity: SGLang's breakable prefill CUDA graphs (0.5.17+) call
        `init_forward_metadata` with the real batch and attention with the graph's static one.
        Forward modes this backend never routes (verify, draft, decode) always take Triton's
        path, whose metadata SGLang's graph runners build through Triton's own hooks.
        """
        route = self._batch
        if forward_batch.forward_mode.name not in fallback.SAGE_FORWARD_MODES or route is None:
            return _BatchRoute(forward_batch, "triton")
        return route

    # -- per layer call ----------------------------------------------------------------------

    def forward_extend(self, q, k, v, layer, forward_batch, *args, **kwargs):
        """Run this layer's extend on the route of its batch."""
        route = self._current_route(forward_batch)
        if route.kind == "native":
            return self._native_extend(route.reason, q, k, v, layer, forward_batch, args, kwargs)
        head = None
        if self.sage_unavailable is None and k is not None:
            head = self._head_config(layer)  # unknown layer classes must still fall back
        reason = self._layer_reason(q, k, layer, forward_batch, kwargs, head)
        if reason is not None and route.kind == "sage":
            return self._native_extend(reason, q, k, v, layer, forward_batch, args, kwargs)
        return self._triton_forward(
            reason, head, route, q, k, v, layer, forward_batch, args, kwargs
        )

    def _native_extend(self, reason, q, k, v, layer, forward_batch, args, kwargs):
        """The exact path: the native backend's own forward_extend (Triton's when none)."""
        if self._native is None:
            route = self._current_route(forward_batch)
            return self._triton_forward(reason, None, route, q, k, v, layer, forward_batch,
                                        args, kwargs)  # fmt: skip
        route = self._batch
        if not route.native_ready:  # a Sage batch with a layer Sage cannot compute
            self._native.init_forward_metadata(forward_batch)
            route.native_ready = True
        STATS.record_fallback(reason)
        return self._native.forward_extend(q, k, v, layer, forward_batch, *args, **kwargs)

    def _triton_forward(self, reason, head, route, q, k, v, layer, forward_batch, args, kwargs):
        """SGLang's Triton forward_extend (K/V write, prefix indices) with our dispatcher."""
        paged = False
        if reason is None:
            prefix_lens = getattr(forward_batch, "extend_prefix_lens_cpu", None) or ()
            paged = fallback.needs_paged_kernel(prefix_lens, head.qk_head_dim, self._paged_mode)
        num_tokens = int(getattr(forward_batch, "extend_num_tokens", 0) or 0)
        self._call = _ExtendCall(reason=reason, num_tokens=num_tokens, paged=paged)
        try:
            return super().forward_extend(q, k, v, layer, forward_batch, *args, **kwargs)
        finally:
            call, self._call = self._call, None
            if call is not None and not call.dispatched:
                STATS.record_fallback(Reason.TRITON_ONLY_BRANCH)

    def _layer_reason(self, q, k, layer, forward_batch, kwargs, head) -> Reason | None:
        if self.sage_unavailable is not None:
            return self.sage_unavailable
        if k is None:
            return Reason.TRITON_ONLY_BRANCH
        _, prefix_lens = _extend_lens(forward_batch)
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
            num_tokens=int(getattr(forward_batch, "extend_num_tokens", 0) or 0),
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
            route = self._batch
            plan = route.plan if route is not None and route.kind == "sage" else None
            kernels.sage_extend_paged(
                params, self._paged_pv, plan, self._workspace, self._paged_kernel, self._q_smooth
            )
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
