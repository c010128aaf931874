"""The Hopper CUDA kernel's build, cache and selection, on a machine without a GPU.

The kernel itself runs in tests/gpu (marked gpu); here: nvcc compiles the real source to an
sm_90a cubin (where nvcc exists), the cache is reused, a failing or missing nvcc gives one
line, the ctypes parameter block matches the C struct, and the kernel choice falls back to
Triton with the reason.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import stat

import pytest
import torch

from sglang_sage_ext.kernels import sage_ops, sage_sm90


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.skipif(sage_sm90.find_nvcc() is None, reason="needs nvcc")
@pytest.mark.release_independent  # nvcc only (tests/_selection.py)
def test_real_source_builds_for_sm90a_and_is_cached(cache):
    path, seconds = sage_sm90.build_cubin()
    assert seconds > 0
    assert path.parent == cache / "sglang_sage_ext"
    assert path.read_bytes()[:4] == b"\x7fELF"
    again, seconds_again = sage_sm90.build_cubin()
    assert (again, seconds_again) == (path, 0.0)
    fp8, _ = sage_sm90.build_cubin(spec=sage_sm90.ONE_WG_FP8)
    d64_spec = sage_sm90.spec_for(False, head_dim=64)
    d64, _ = sage_sm90.build_cubin(spec=d64_spec)
    assert len({fp8, path, d64}) == 3  # source and flags are part of the cache key
    for spec, cubin in ((sage_sm90.WS_FP16, path), (sage_sm90.ONE_WG_FP8, fp8), (d64_spec, d64)):
        image = cubin.read_bytes()  # the loader looks up the entry and its shared-memory size
        assert spec.entry in image and spec.entry + b"_smem_bytes" in image


def test_an_edited_header_rebuilds(cache, tmp_path):
    """The cache key covers the headers beside the source (a fake nvcc: only the key matters)."""
    nvcc = _fake_nvcc(
        tmp_path,
        'case "$1" in --version) echo "Cuda compilation tools, release 0.0";; *) '
        'while [ "$1" != "-o" ]; do shift; done; printf "\\177ELF" > "$2";; esac\n',
    )
    csrc = tmp_path / "csrc"
    csrc.mkdir()
    for f in sage_sm90.CSRC.iterdir():
        (csrc / f.name).write_bytes(f.read_bytes())
    spec = dataclasses.replace(sage_sm90.ONE_WG_FP16, source=csrc / "sage_sm90.cu")
    first, seconds = sage_sm90.build_cubin(nvcc, spec=spec)
    assert seconds > 0 and first.read_bytes() == b"\x7fELF"
    assert sage_sm90.build_cubin(nvcc, spec=spec) == (first, 0.0)
    header = csrc / "sage_sm90_common.cuh"
    header.write_text(header.read_text() + "\n// edited\n")
    second, seconds = sage_sm90.build_cubin(nvcc, spec=spec)
    assert second != first and seconds > 0


def test_each_pv_mode_has_its_kernel():
    assert sage_sm90.spec_for(False) is sage_sm90.WS_FP16 and sage_sm90.WS_FP16.blocked
    assert sage_sm90.spec_for(True) is sage_sm90.ONE_WG_FP8 and not sage_sm90.ONE_WG_FP8.blocked
    for spec in (sage_sm90.WS_FP16, sage_sm90.ONE_WG_FP8):
        assert spec.source.is_file()
        assert "void __launch_bounds__(kThreads" in spec.source.read_text()
        assert spec.entry.decode() in spec.source.read_text()
        assert "-DSAGE_Q_SMOOTH=0" in spec.flags()


def test_head_dims_per_pv_mode():
    """head_dim 64 has a build of the FP16 P·V kernel (its own flag, so its own cubin); the
    FP8 P·V kernel has head_dim 128 only, and asking for 64 there names the reason."""
    d64 = sage_sm90.spec_for(False, head_dim=64)
    assert d64.head_dim == 64 and "-DSAGE_HEAD_DIM=64" in d64.flags()
    assert "-DSAGE_HEAD_DIM=128" in sage_sm90.WS_FP16.flags()
    assert sage_sm90.spec_for(False, q_smooth=True, head_dim=64).q_smooth
    assert sage_sm90.head_dim_problem(64, False) is None
    assert sage_sm90.head_dim_problem(64, True) == "head_dim 64 (the FP8 P·V kernel has 128)"
    assert "has 64 and 128" in sage_sm90.head_dim_problem(96, False)
    with pytest.raises(ValueError, match="head_dim 64"):
        sage_sm90.spec_for(True, head_dim=64)
    assert sage_sm90.problem(torch.device("cpu"), 64) == "not a CUDA device"


@pytest.mark.parametrize("pv_fp8", [False, True])
def test_q_smoothing_is_its_own_build(cache, tmp_path, pv_fp8):
    """Q smoothing is compiled in (SAGE_Q_SMOOTH): another flag, so another cached cubin."""
    nvcc = _fake_nvcc(
        tmp_path,
        'case "$1" in --version) echo "Cuda compilation tools, release 0.0";; *) '
        'echo "$@" > "$(dirname "$0")/args"; while [ "$1" != "-o" ]; do shift; done; '
        'printf "\\177ELF" > "$2";; esac\n',
    )
    plain, smooth = sage_sm90.spec_for(pv_fp8), sage_sm90.spec_for(pv_fp8, q_smooth=True)
    assert (plain.source, plain.entry) == (smooth.source, smooth.entry) and smooth.q_smooth
    first, _ = sage_sm90.build_cubin(nvcc, spec=plain)
    second, seconds = sage_sm90.build_cubin(nvcc, spec=smooth)
    assert second != first and seconds > 0
    assert "-DSAGE_Q_SMOOTH=1" in (tmp_path / "args").read_text().split()


def _fake_nvcc(tmp_path, body: str) -> str:
    script = tmp_path / "nvcc"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_failing_nvcc_is_one_line(cache, tmp_path):
    nvcc = _fake_nvcc(
        tmp_path,
        'case "$1" in --version) echo "Cuda compilation tools, release 0.0";; '
        '*) echo "sage_sm90.cu(1): error: something broke" >&2; exit 1;; esac\n',
    )
    with pytest.raises(RuntimeError, match=r"^nvcc failed: .*something broke"):
        sage_sm90.build_cubin(nvcc)
    assert not list((cache / "sglang_sage_ext").glob("*.cubin"))


def test_no_nvcc_is_named(monkeypatch):
    monkeypatch.setattr(sage_sm90, "find_nvcc", lambda: None)
    with pytest.raises(RuntimeError, match="nvcc not found"):
        sage_sm90.build_cubin()


def test_find_nvcc_prefers_cuda_home(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    nvcc = _fake_nvcc(tmp_path / "bin", "exit 0\n")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    assert sage_sm90.find_nvcc() == nvcc


def test_params_block_matches_the_c_struct():
    # 9 pointers, 4 int64 strides, 1 float + 6 ints, 3 pointers: Params in sage_sm90_common.cuh
    offsets = {
        name: getattr(sage_sm90._Params, name).offset for name, _ in sage_sm90._Params._fields_
    }
    assert offsets["q"] == 0 and offsets["tiles"] == 64
    assert offsets["stride_qn"] == 72 and offsets["stride_oh"] == 96
    assert offsets["qk_scale"] == 104 and offsets["out_bf16"] == 124
    assert offsets["vmax"] == 128 and offsets["cq"] == 144
    assert ctypes.sizeof(sage_sm90._Params) == 152
    source = (sage_sm90.CSRC / "sage_sm90_common.cuh").read_text()
    struct = source[
        source.index("struct Params {") : source.index("};", source.index("struct Params {"))
    ]
    for name, _ in sage_sm90._Params._fields_:
        assert name in struct, name


def test_cpu_device_keeps_triton(monkeypatch):
    monkeypatch.delenv("SGLANG_SAGE_KERNEL", raising=False)
    assert sage_sm90.problem(torch.device("cpu"), 128) == "not a CUDA device"
    kernel, text = sage_ops.paged_kernel_choice(torch.device("cpu"), "fp16")
    assert (kernel, text) == ("triton", "Triton (not a CUDA device)")


@pytest.mark.parametrize(
    ("env", "pv", "reason"),
    [("triton", "fp16", "SGLANG_SAGE_KERNEL=triton"), ("triton", "fp8", "SGLANG_SAGE_KERNEL")],
)
def test_explicit_choices_keep_triton(monkeypatch, env, pv, reason):
    monkeypatch.setenv("SGLANG_SAGE_KERNEL", env)
    kernel, text = sage_ops.paged_kernel_choice(torch.device("cpu"), pv)
    assert kernel == "triton" and reason in text


def test_source_ships_in_the_package():
    assert sage_sm90.SOURCE.is_file()
    assert os.path.basename(sage_sm90.SOURCE.parent) == "csrc"


def test_layout_problems_are_named():
    q = torch.zeros(8, 4, 128, dtype=torch.bfloat16)
    i32, i64 = torch.zeros(2, dtype=torch.int32), torch.zeros(2, dtype=torch.int64)
    assert sage_sm90.layout_problem(q, q, i64, i32) is None  # SGLang 0.5.17 mixes the two
    assert "dtypes" in sage_sm90.layout_problem(q, q.half(), i32, i32)
    assert "indptr" in sage_sm90.layout_problem(q, q, i32.float(), i32)
    odd = torch.zeros(8, 4 * 128 + 1, dtype=torch.bfloat16)[:, 1:].view(8, 4, 128)
    assert sage_sm90.layout_problem(odd, q, i32, i32) == "q rows are not 16-byte aligned"
    assert sage_sm90.layout_problem(q, odd, i32, i32) == "o rows are not 16-byte aligned"


def test_a_phase_trace_is_for_fp16_pv_only():
    # the trace buffer takes vmax's place in the parameter block: both at once is refused
    t = torch.zeros(4)
    with pytest.raises(ValueError, match="phase trace"):
        sage_sm90.launch(t, t, t, t, t, t, t, t, t, 0.1, vmax=t, trace=t)


@pytest.mark.skipif(sage_sm90.find_nvcc() is None, reason="needs nvcc")
@pytest.mark.release_independent  # nvcc only (tests/_selection.py)
def test_the_phase_trace_build_compiles(cache):
    """bench/variants/trace_phases.cu (bench/sm90_trace.py) still builds against the kernel."""
    variant = sage_sm90.CSRC.parents[2] / "bench" / "variants" / "trace_phases.cu"
    if not variant.is_file():
        pytest.skip("no bench/ beside the package (installed wheel)")
    spec = dataclasses.replace(sage_sm90.WS_FP16, source=variant)
    path, seconds = sage_sm90.build_cubin(spec=spec)
    assert seconds > 0 and spec.entry + b"_smem_bytes" in path.read_bytes()


def test_driver_errors_carry_a_name_or_say_unknown():
    pattern = r"cuModuleLoadData failed with CUDA driver error 209 \(\w+\)"
    with pytest.raises(RuntimeError, match=pattern):
        sage_sm90._check(209, "cuModuleLoadData")


def test_the_model_head_dim_picks_the_startup_build():
    """Startup builds the kernel for the model's head_dim (ModelConfig.head_dim), 128 where a
    runner has no model config (the kernel choice then names the head_dim in the log)."""
    from types import SimpleNamespace

    from sglang_sage_ext.backend.sage_backend import _model_head_dim

    runner = SimpleNamespace(model_config=SimpleNamespace(head_dim=64))
    assert _model_head_dim(runner) == 64
    assert _model_head_dim(SimpleNamespace()) == 128
    assert _model_head_dim(SimpleNamespace(model_config=SimpleNamespace(head_dim=None))) == 128
