"""The Sage-or-Triton decision table, one row per reason, plus the all-clear row."""

from __future__ import annotations

import pytest

from sglang_sage_ext.backend import fallback
from sglang_sage_ext.backend.fallback import Reason
from sglang_sage_ext.integration.compat import HeadConfig

GOOD_HEAD = HeadConfig(q_heads=32, k_heads=8, v_heads=8, qk_head_dim=128, v_head_dim=128)


def decide(**overrides):
    values = dict(
        forward_mode="EXTEND",
        capturing=False,
        dtype="bfloat16",
        head=GOOD_HEAD,
        is_cross_attention=False,
        sliding_window_size=-1,
        logit_cap=0.0,
        xai_temperature_len=-1,
        extra_kwargs={},
        prefix_lens=[0, 0],
        num_tokens=4096,
        min_new_tokens=16,
        paged_kernel=False,
    )
    values.update(overrides)
    return fallback.extend_reason(**values)


def test_prefix_free_causal_extend_takes_sage():
    assert decide() is None
    assert decide(forward_mode="MIXED", dtype="float16") is None
    assert decide(head=HeadConfig(8, 2, 2, 64, 64), sliding_window_size=None) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"forward_mode": "TARGET_VERIFY"}, Reason.FORWARD_MODE),
        ({"forward_mode": "DRAFT_EXTEND"}, Reason.FORWARD_MODE),
        ({"forward_mode": "DLLM_EXTEND"}, Reason.FORWARD_MODE),
        ({"capturing": True}, Reason.GRAPH_CAPTURE),
        ({"dtype": "float32"}, Reason.DTYPE),
        ({"head": HeadConfig(32, 8, 8, 96, 96)}, Reason.HEAD_DIM),
        ({"head": HeadConfig(32, 8, 8, 256, 256)}, Reason.HEAD_DIM),
        ({"head": HeadConfig(16, 16, 16, 192, 128)}, Reason.HEAD_DIM),
        ({"head": HeadConfig(12, 8, 8, 128, 128)}, Reason.GQA_RATIO),
        ({"is_cross_attention": True}, Reason.NOT_CAUSAL),
        ({"sliding_window_size": 4096}, Reason.SLIDING_WINDOW),
        ({"logit_cap": 30.0}, Reason.LOGIT_CAP),
        ({"extra_kwargs": {"sinks": object()}}, Reason.SINKS_OR_SCORE_MOD),
        ({"extra_kwargs": {"score_mod": object()}}, Reason.SINKS_OR_SCORE_MOD),
        ({"xai_temperature_len": 512}, Reason.XAI_TEMPERATURE),
        ({"prefix_lens": None}, Reason.PREFIX_UNKNOWN),
        ({"prefix_lens": [0, 4096]}, Reason.CACHED_PREFIX),
        ({"num_tokens": 15}, Reason.SHORT_EXTEND),
    ],
)
def test_each_reason_falls_back(overrides, reason):
    assert decide(**overrides) is reason


def test_prefix_beats_length_and_mode_beats_everything():
    assert decide(prefix_lens=[5], num_tokens=1) is Reason.CACHED_PREFIX
    assert decide(forward_mode="DECODE", capturing=True, dtype="float32") is Reason.FORWARD_MODE


def test_paged_kernel_takes_prefixes_and_head_dim_96():
    """With the paged kernel, radix hits / later chunks / MIXED and D=96 take the Sage path."""
    assert decide(prefix_lens=[0, 4096], paged_kernel=True) is None
    assert decide(forward_mode="MIXED", prefix_lens=[300, 7, 0], paged_kernel=True) is None
    assert decide(head=HeadConfig(32, 8, 8, 96, 96), paged_kernel=True) is None
    assert decide(head=HeadConfig(32, 8, 8, 256, 256), paged_kernel=True) is Reason.HEAD_DIM
    assert decide(prefix_lens=[5], num_tokens=1, paged_kernel=True) is Reason.SHORT_EXTEND


@pytest.mark.parametrize(
    ("prefix_lens", "head_dim", "paged"),
    [([0, 0], 128, False), ([0, 0], 64, False), ([0, 1], 128, True), ([0], 96, True)],
)
def test_which_sage_kernel(prefix_lens, head_dim, paged):
    assert fallback.needs_paged_kernel(prefix_lens, head_dim, "prefix") is paged
    assert fallback.needs_paged_kernel(prefix_lens, head_dim, "all") is True


@pytest.mark.parametrize(
    ("value", "mode"),
    [(None, "all"), ("prefix", "prefix"), ("off", "off"), ("0", "off"), ("bogus", "all")],
)
def test_paged_kernel_switch(monkeypatch, value, mode):
    if value is None:
        monkeypatch.delenv(fallback.PAGED_KERNEL_ENV, raising=False)
    else:
        monkeypatch.setenv(fallback.PAGED_KERNEL_ENV, value)
    assert fallback.paged_kernel_mode() == mode
    assert fallback.paged_kernel_enabled() is (mode != "off")


class _Tensor:
    """Only what kernel_reason reads of a tensor: dtype and last-dimension stride."""

    def __init__(self, dtype: str = "torch.bfloat16", last_stride: int = 1, ndim: int = 3):
        self.dtype, self._last, self.ndim = dtype, last_stride, ndim

    def stride(self, dim: int) -> int:
        assert dim == -1
        return self._last


@pytest.mark.parametrize(
    ("pool_dtype", "q_stride", "reason"),
    [
        ("torch.bfloat16", 1, None),
        ("torch.float16", 1, None),
        ("torch.float8_e4m3fn", 1, Reason.KV_CACHE_DTYPE),
        ("torch.bfloat16", 2, Reason.LAYOUT),
    ],
)
def test_paged_kernel_arguments(pool_dtype, q_stride, reason):
    params = {
        "q_extend": _Tensor(last_stride=q_stride),
        "k_buffer": _Tensor(pool_dtype),
        "v_buffer": _Tensor(pool_dtype),
    }
    assert fallback.kernel_reason(params, paged=True) is reason
    assert fallback.kernel_reason(params) is None  # sageattn_varlen never reads the pool


@pytest.mark.parametrize(
    ("k_scale", "reason"), [(1.0, None), (None, None), (0.5, Reason.KV_CACHE_DTYPE)]
)
def test_paged_kernel_refuses_scaled_kv(k_scale, reason):
    params = {"k_buffer": _Tensor(), "v_buffer": _Tensor(), "k_scale": k_scale, "v_scale": 1.0}
    assert fallback.kernel_reason(params, paged=True) is reason


def test_paged_kernel_refuses_4d_pool_views():
    """SGLang 0.5.17+ shared pools hand [pages, page_size, heads, dim] views to the kernel."""
    params = {"k_buffer": _Tensor(ndim=4), "v_buffer": _Tensor(ndim=4)}
    assert fallback.kernel_reason(params, paged=True) is Reason.LAYOUT


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({}, None),
        ({"is_causal": True, "custom_mask": None, "sliding_window_size": -1}, None),
        ({"custom_mask": object()}, Reason.CUSTOM_MASK),
        ({"is_causal": False}, Reason.NOT_CAUSAL),
        ({"sliding_window_size": 128}, Reason.SLIDING_WINDOW),
        ({"logit_cap": 50.0}, Reason.LOGIT_CAP),
        ({"sinks": object()}, Reason.SINKS_OR_SCORE_MOD),
        ({"xai_temperature_len": 10}, Reason.XAI_TEMPERATURE),
        ({"lse_extend": object()}, Reason.LSE_OR_SKIP),
        ({"skip_prefix": True}, Reason.LSE_OR_SKIP),
    ],
)
def test_kernel_arguments(params, reason):
    assert fallback.kernel_reason(params) is reason


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, None),
        ({"device_type": "cpu"}, Reason.NO_CUDA),
        ({"capability": (7, 5)}, Reason.GPU_TOO_OLD),
        ({"capability": None}, Reason.GPU_TOO_OLD),
        ({"sageattention_ok": False}, Reason.SAGEATTENTION_UNAVAILABLE),
        ({"model_dtype": "float32"}, Reason.MODEL_DTYPE),
    ],
)
def test_process_wide_reasons(kwargs, reason, monkeypatch):
    monkeypatch.delenv(fallback.FORCE_FALLBACK_ENV, raising=False)
    values = dict(
        device_type="cuda", capability=(9, 0), sageattention_ok=True, model_dtype="bfloat16"
    )
    values.update(kwargs)
    assert fallback.process_reason(**values) is reason


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"device_type": "cpu", "capability": None, "sageattention_ok": False}, None),
        ({"device_type": "cpu", "capability": None, "model_dtype": "float32"}, Reason.MODEL_DTYPE),
        ({"capability": (7, 5)}, Reason.GPU_TOO_OLD),  # on CUDA the GPU checks still apply
    ],
)
def test_cpu_interpret_lifts_only_the_device_checks(kwargs, reason, monkeypatch):
    monkeypatch.delenv(fallback.FORCE_FALLBACK_ENV, raising=False)
    values = dict(
        device_type="cuda", capability=(9, 0), sageattention_ok=True, model_dtype="bfloat16"
    )
    values.update(kwargs)
    assert fallback.process_reason(**values, cpu_interpret=True) is reason


@pytest.mark.parametrize(
    ("flag", "interpret", "enabled"),
    [("1", "1", True), ("1", None, False), (None, "1", False), ("0", "1", False)],
)
def test_cpu_interpret_switch(monkeypatch, flag, interpret, enabled):
    for name, value in ((fallback.CPU_INTERPRET_ENV, flag), ("TRITON_INTERPRET", interpret)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert fallback.cpu_interpret_enabled() is enabled


def test_force_fallback_switch(monkeypatch):
    monkeypatch.setenv(fallback.FORCE_FALLBACK_ENV, "1")
    assert (
        fallback.process_reason(
            device_type="cuda", capability=(9, 0), sageattention_ok=True, model_dtype="bfloat16"
        )
        is Reason.FORCED_OFF
    )


def test_min_tokens_env(monkeypatch):
    monkeypatch.setenv(fallback.MIN_TOKENS_ENV, "1024")
    assert fallback.min_tokens() == 1024
    monkeypatch.setenv(fallback.MIN_TOKENS_ENV, "nonsense")
    assert fallback.min_tokens() == fallback.DEFAULT_MIN_TOKENS


def test_every_reason_is_explained():
    assert set(fallback.EXPLAIN) == set(Reason)


@pytest.mark.parametrize(
    ("mode", "problem", "expected"),
    [
        ("all", None, "all on the paged Sage kernel (P·V fp16)"),
        ("prefix", None, "prefix-free on sageattn_varlen, cached prefixes and head_dim 96 on"),
        ("off", None, "cached prefixes on Triton (SGLANG_SAGE_PAGED_EXTEND=off)"),
        ("all", "no tensor descriptors", "cached prefixes on Triton (no tensor descriptors)"),
    ],
)
def test_route_summary(mode, problem, expected):
    from sglang_sage_ext.kernels.sage_ops import extend_route_summary

    assert expected in extend_route_summary(mode, problem, "fp16")


CUDA_AUTO = "Q smoothing off in the Hopper CUDA kernel (on where Triton runs; SGLANG_SAGE_Q_SMOOTH"


@pytest.mark.parametrize(
    ("pv_mode", "q_smooth", "kernel", "expected"),
    [
        ("fp16", "auto", "triton", "(P·V fp16, Q smoothing on)"),
        ("fp8", "auto", "triton", "(P·V fp8, Q smoothing off)"),
        ("auto", "auto", "triton", "Q smoothing on with FP16 P·V)"),
        ("fp8", "on", "triton", "(P·V fp8, Q smoothing on)"),
        ("fp16", "off", "triton", "(P·V fp16, Q smoothing off)"),
        # "auto" keeps the CUDA kernel unsmoothed (doctor once said "on" on an H100 that ran it)
        ("fp16", "auto", "sm90", CUDA_AUTO),
        ("fp16", "on", "sm90", "(P·V fp16, Q smoothing on)"),
        ("fp8", "auto", "sm90", "(P·V fp8, Q smoothing off)"),
        ("fp16", "off", "sm90", "(P·V fp16, Q smoothing off)"),
    ],
)
def test_route_summary_names_q_smoothing(pv_mode, q_smooth, kernel, expected):
    from sglang_sage_ext.kernels.sage_ops import extend_route_summary

    assert expected in extend_route_summary("all", None, pv_mode, q_smooth, kernel)


def test_paged_q_smooth(monkeypatch):
    from sglang_sage_ext.kernels import sage_ops as kernels

    monkeypatch.delenv(kernels.Q_SMOOTH_ENV, raising=False)
    assert kernels.paged_q_smooth() == "auto"
    monkeypatch.setenv(kernels.Q_SMOOTH_ENV, "false")
    assert kernels.paged_q_smooth() == "off"
    monkeypatch.setenv(kernels.Q_SMOOTH_ENV, "ON")
    assert kernels.paged_q_smooth() == "on"


def test_paged_pv_mode(monkeypatch):
    from sglang_sage_ext.kernels import sage_ops as kernels

    monkeypatch.delenv(kernels.PAGED_PV_ENV, raising=False)
    assert kernels.paged_pv_mode() == "fp16"
    monkeypatch.setenv(kernels.PAGED_PV_ENV, "FP8")
    assert kernels.paged_pv_mode() == "fp8"
    monkeypatch.setenv(kernels.PAGED_PV_ENV, "int4")
    assert kernels.paged_pv_mode() == "fp16"
