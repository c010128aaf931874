"""The Hopper (sm_90a) Sage attention kernels: build once with nvcc, cache, launch via the driver.

CUDA C++ with wgmma (INT8 Q·K^T; FP16 or FP8 P·V), which Triton 3.x cannot express with the
overlap it needs (bench/results/kernel_notes.md): `csrc/sage_sm90_ws.cu` (FP16 P·V, warp-
specialized: TMA producer, ping-pong consumers) and `csrc/sage_sm90.cu` (FP8 P·V, one warpgroup
per CTA); `spec_for` picks one per P·V mode. Each is compiled on first use
with the nvcc that SGLang's own JIT kernels already require, to a cubin cached under
`~/.cache/sglang_sage_ext/` (key: sources, nvcc version, flags), and loaded through the CUDA
driver API with ctypes: no host compiler, no torch extension ABI, and launches go to the
caller's stream, so CUDA-graph capture works. Where anything is missing (no nvcc, not sm90, a
build error), `problem()` says why in one line and callers keep the Triton kernel.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch

logger = logging.getLogger("sglang_sage_ext")

CSRC = Path(__file__).with_name("csrc")
SOURCE = CSRC / "sage_sm90.cu"
NVCC_FLAGS = ("-cubin", "-gencode", "arch=compute_90a,code=sm_90a", "-O3", "--use_fast_math")
_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8


@dataclasses.dataclass(frozen=True)
class Spec:
    """One Hopper Sage kernel: its source, entry point, CTA shape and packed-input layout.

    `blocked`: it reads the pre-pass's BLOCKED layout (tiles contiguous and pre-swizzled for
    TMA bulk copies, 128-byte K rows, key scales in quads with their bias terms); otherwise the
    plain packed layout. `q_smooth`: built with Q smoothing (it then reads the pre-pass's q_mean
    and c_j; one FMA per score more). `head_dim`: the D this build is for (one cubin per D),
    among `head_dims`. Its dynamic shared memory is read from the cubin (`<entry>_smem_bytes`),
    so the size is stated once, in the .cu.
    """

    source: Path
    entry: bytes
    threads: int
    block_m: int
    pv_fp8: bool
    blocked: bool
    label: str
    q_smooth: bool = False
    head_dims: tuple[int, ...] = (128,)
    head_dim: int = 128

    def flags(self) -> tuple[str, ...]:
        modes = (f"-DSAGE_PV_FP8={int(self.pv_fp8)}", f"-DSAGE_Q_SMOOTH={int(self.q_smooth)}")
        return (*NVCC_FLAGS, *modes, f"-DSAGE_HEAD_DIM={self.head_dim}")


#: FP16 P·V: warp-specialized (a TMA producer warp, two ping-ponging consumer warpgroups).
WS_FP16 = Spec(CSRC / "sage_sm90_ws.cu", b"sage_sm90_ws_fwd", 384, 128, False, True,
               "TMA producer warp + 2 ping-pong consumer warpgroups, 128 rows per CTA",
               head_dims=(64, 128))  # fmt: skip
#: FP8 P·V (and FP16 for comparisons): one warpgroup per 64-row CTA, cp.async, 2 CTAs per SM.
ONE_WG_FP8 = Spec(SOURCE, b"sage_sm90_fwd", 128, 64, True, False,
                  "one warpgroup per 64-row CTA, cp.async double buffering")  # fmt: skip
ONE_WG_FP16 = dataclasses.replace(ONE_WG_FP8, pv_fp8=False)


@functools.cache
def spec_for(pv_fp8: bool, q_smooth: bool = False, head_dim: int = 128) -> Spec:
    """The kernel that runs a P·V mode and head_dim, with or without Q smoothing (one object per
    mode: every layer call asks, and `_load` keys its cache by it). A head_dim the mode's kernel
    is not built for raises ValueError (`head_dim_problem` says so first)."""
    spec = ONE_WG_FP8 if pv_fp8 else WS_FP16
    if head_dim not in spec.head_dims:
        raise ValueError(head_dim_problem(head_dim, pv_fp8))
    if q_smooth or head_dim != spec.head_dim:
        return dataclasses.replace(spec, q_smooth=q_smooth, head_dim=head_dim)
    return spec


def head_dim_problem(head_dim: int, pv_fp8: bool) -> str | None:
    """Why no Hopper kernel runs this head_dim in this P·V mode (one line), or None."""
    dims = (ONE_WG_FP8 if pv_fp8 else WS_FP16).head_dims
    if head_dim in dims:
        return None
    built = " and ".join(str(d) for d in dims)
    return f"head_dim {head_dim} (the {'FP8' if pv_fp8 else 'FP16'} P·V kernel has {built})"


_lock = threading.Lock()
_state: dict[str, object] = {}


class _Params(ctypes.Structure):
    """Mirror of `Params` in csrc/sage_sm90.cu (same field order, C alignment)."""

    _fields_ = [
        ("q", ctypes.c_void_p),
        ("o", ctypes.c_void_p),
        ("kq", ctypes.c_void_p),
        ("ks", ctypes.c_void_p),
        ("vq", ctypes.c_void_p),
        ("qo_indptr", ctypes.c_void_p),
        ("kv_indptr", ctypes.c_void_p),
        ("blk_indptr", ctypes.c_void_p),
        ("tiles", ctypes.c_void_p),
        ("stride_qn", ctypes.c_longlong),
        ("stride_qh", ctypes.c_longlong),
        ("stride_on", ctypes.c_longlong),
        ("stride_oh", ctypes.c_longlong),
        ("qk_scale", ctypes.c_float),
        ("group", ctypes.c_int),
        ("n_pad", ctypes.c_int),
        ("qo_indptr64", ctypes.c_int),
        ("kv_indptr64", ctypes.c_int),
        ("out_bf16", ctypes.c_int),
        ("vmax", ctypes.c_void_p),
        ("qmean", ctypes.c_void_p),
        ("cq", ctypes.c_void_p),
    ]


def find_nvcc() -> str | None:
    """nvcc from CUDA_HOME / CUDA_PATH, PATH, or /usr/local/cuda (as SGLang's JIT looks)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    default = "/usr/local/cuda/bin/nvcc"
    return default if os.access(default, os.X_OK) else None


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "sglang_sage_ext"


def _nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "unknown"


def _sources(source: Path) -> bytes:
    """The kernel source and the headers beside it (all of them key the cache)."""
    headers = sorted(Path(source).parent.glob("*.cuh"))
    return b"".join(p.read_bytes() for p in (Path(source), *headers))


def build_cubin(nvcc: str | None = None, spec: Spec | None = None) -> tuple[Path, float]:
    """Compile a kernel (default: FP16 P·V's) or find it cached; returns (cubin path, build
    seconds; 0 if cached). Raises RuntimeError with nvcc's message when the build fails."""
    spec = spec or spec_for(False)
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise RuntimeError("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    flags = spec.flags()
    key = hashlib.sha256(_sources(spec.source) + f"{_nvcc_version(nvcc)} {flags}".encode())
    target = cache_dir() / f"{Path(spec.source).stem}-{key.hexdigest()[:16]}.cubin"
    if target.is_file():
        return target, 0.0
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        proc = subprocess.run(
            [nvcc, *flags, "-o", str(out), str(spec.source)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError("nvcc failed: " + " | ".join(tail))
        os.replace(out, target)  # atomic: concurrent builders (TP ranks) agree on one file
    return target, time.perf_counter() - t0


@functools.lru_cache(maxsize=1)
def _driver() -> ctypes.CDLL:
    """The CUDA driver library, opened once (OSError where there is none)."""
    lib = ctypes.CDLL("libcuda.so.1")
    names = ("cuModuleLoadData", "cuModuleGetFunction", "cuFuncSetAttribute", "cuLaunchKernel",
             "cuModuleGetGlobal_v2", "cuMemcpyDtoH_v2")  # fmt: skip
    for name in names:
        getattr(lib, name).restype = ctypes.c_int
    return lib


def _check(result: int, what: str) -> None:
    """Raise with the driver's name for a failed call (e.g. CUDA_ERROR_NO_BINARY_FOR_GPU)."""
    if result == 0:
        return
    name = ctypes.c_char_p()
    try:
        _driver().cuGetErrorName(result, ctypes.byref(name))
    except (OSError, AttributeError):
        name.value = None
    label = name.value.decode() if name.value else "unknown"
    raise RuntimeError(f"{what} failed with CUDA driver error {result} ({label})")


def _smem_bytes(lib: ctypes.CDLL, module: ctypes.c_void_p, spec: Spec) -> int:
    """The kernel's dynamic shared memory, as its source states it (`<entry>_smem_bytes`)."""
    ptr, size = ctypes.c_uint64(), ctypes.c_size_t()
    name = spec.entry + b"_smem_bytes"
    found = lib.cuModuleGetGlobal_v2(ctypes.byref(ptr), ctypes.byref(size), module, name)
    _check(found, "cuModuleGetGlobal")
    value = ctypes.c_int()
    _check(lib.cuMemcpyDtoH_v2(ctypes.byref(value), ptr, ctypes.c_size_t(4)), "cuMemcpyDtoH")
    return value.value


def _load(device: torch.device, spec: Spec) -> tuple[ctypes.CDLL, ctypes.c_void_p, int]:
    """(driver, kernel function, shared-memory bytes) for `device`'s context, loaded once per
    device and spec."""
    key = (device.index, spec)
    loaded = _state.get(key)  # every layer call comes here: no lock once loaded
    if loaded is not None:
        return loaded  # type: ignore[return-value]
    with _lock:
        if key in _state:
            return _state[key]  # type: ignore[return-value]
        path, seconds = build_cubin(spec=spec)
        _state[("build", spec)] = f"built in {seconds:.1f} s" if seconds else f"cached {path}"
        if seconds:
            logger.info("sage_attn: built the Hopper Sage kernel in %.1f s (%s)", seconds, path)
        lib = _driver()
        with torch.cuda.device(device):
            torch.cuda.current_stream(device)  # makes the primary context current here
            module = ctypes.c_void_p()
            image = path.read_bytes()
            _check(lib.cuModuleLoadData(ctypes.byref(module), image), "cuModuleLoadData")
            fn = ctypes.c_void_p()
            found = lib.cuModuleGetFunction(ctypes.byref(fn), module, spec.entry)
            _check(found, "cuModuleGetFunction")
            smem = _smem_bytes(lib, module, spec)
            _check(
                lib.cuFuncSetAttribute(fn, _CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem),
                "cuFuncSetAttribute",
            )
        _state[key] = (lib, fn, smem)
        return lib, fn, smem


def describe(pv_fp8: bool = False, q_smooth: bool = False, head_dim: int = 128) -> str:
    """The kernel of a P·V mode in a few words, with how its cubin was obtained (after
    `problem()`)."""
    spec = spec_for(pv_fp8, q_smooth, head_dim)
    how = _state.get(("build", spec), "not built")
    return f"sm_90a wgmma, INT8 Q·K, {spec.label}, head_dim {head_dim}; {how}"


def problem(
    device: torch.device, head_dim: int, pv_fp8: bool = False, q_smooth: bool = False
) -> str | None:
    """Why the Hopper kernel cannot run here (one line), or None when it can (builds it)."""
    if device.type != "cuda":
        return "not a CUDA device"
    if torch.cuda.get_device_capability(device) != (9, 0):
        return "not an sm90 GPU"
    wrong_dim = head_dim_problem(head_dim, pv_fp8)
    if wrong_dim:
        return wrong_dim
    try:
        _load(device, spec_for(pv_fp8, q_smooth, head_dim))
    except Exception as exc:  # any build or load failure means: keep the Triton kernel
        return f"{type(exc).__name__}: {exc}"
    return None


def layout_problem(
    q: torch.Tensor, o: torch.Tensor, qo_indptr: torch.Tensor, kv_indptr: torch.Tensor
) -> str | None:
    """Why the kernels (16-byte loads of Q rows, 16-byte stores of O rows) cannot use these
    tensors, or None."""
    if q.dtype not in (torch.bfloat16, torch.float16) or o.dtype != q.dtype:
        return f"q/o dtypes {q.dtype}/{o.dtype} (bf16 or fp16, equal)"
    if {qo_indptr.dtype, kv_indptr.dtype} - {torch.int32, torch.int64}:
        return f"indptr dtypes {qo_indptr.dtype}/{kv_indptr.dtype} (int32 or int64)"
    size = q.element_size()
    if q.data_ptr() % 16 or (q.stride(0) * size) % 16 or (q.stride(1) * size) % 16:
        return "q rows are not 16-byte aligned"
    if o.data_ptr() % 16 or (o.stride(0) * size) % 16 or (o.stride(1) * size) % 16:
        return "o rows are not 16-byte aligned"  # the warp-specialized kernel stores 16 bytes
    return None


def launch(
    q: torch.Tensor,
    o: torch.Tensor,
    kq: torch.Tensor,
    ks: torch.Tensor,
    vq: torch.Tensor,
    qo_indptr: torch.Tensor,
    kv_indptr: torch.Tensor,
    blk_indptr: torch.Tensor,
    tiles: torch.Tensor,
    qk_scale: float,
    spec: Spec | None = None,
    vmax: torch.Tensor | None = None,
    q_terms: tuple[torch.Tensor, torch.Tensor] | None = None,
    trace: torch.Tensor | None = None,
) -> None:
    """One launch over a (query heads, `tiles`) grid (the plan's `spec.block_m` tile map,
    heaviest first; at most 65535 tiles): the kernel maps block indices so that one kv head's
    CTAs run together, heaviest tile first (`cta_tile_and_head` in csrc/sage_sm90_common.cuh).

    `vmax` ([B, Hkv, D] |V| amax) selects FP8 P·V: `vq` then holds e4m3 V^T with the pre-pass's
    PERMUTE_V key order; without it `vq` is FP16 V^T. `q_terms` (the pre-pass's q_mean
    [B, Hq, D] and c_j [Hq, n_pad], fp32) selects Q smoothing. `spec` (default: the kernel of
    those modes) must match the layout the pre-pass wrote (`spec.blocked`) and the modes.
    `trace` (bench/sm90_trace.py): an int64 buffer that a build with SAGE_TRACE fills with its
    phase marks (it takes the place of `vmax`, which FP16 P·V does not read).
    """
    pv_fp8 = vmax is not None
    if trace is not None and pv_fp8:
        raise ValueError("a phase trace takes the place of vmax: FP16 P·V only")
    spec = spec or spec_for(pv_fp8, q_terms is not None, q.shape[2])
    if (spec.pv_fp8, spec.q_smooth, spec.head_dim) != (pv_fp8, q_terms is not None, q.shape[2]):
        raise ValueError(f"kernel {spec.entry.decode()} (fp8 {spec.pv_fp8}, Q smoothing "
                         f"{spec.q_smooth}, head_dim {spec.head_dim}) does not match its "
                         "inputs")  # fmt: skip
    qmean, cq = q_terms if q_terms is not None else (None, None)
    lib, fn, smem = _load(q.device, spec)
    hkv, n_pad, _ = kq.shape
    params = _Params(
        q.data_ptr(), o.data_ptr(), kq.data_ptr(), ks.data_ptr(), vq.data_ptr(),
        qo_indptr.data_ptr(), kv_indptr.data_ptr(), blk_indptr.data_ptr(), tiles.data_ptr(),
        q.stride(0), q.stride(1), o.stride(0), o.stride(1), qk_scale, q.shape[1] // hkv, n_pad,
        int(qo_indptr.dtype == torch.int64), int(kv_indptr.dtype == torch.int64),
        int(q.dtype == torch.bfloat16),
        vmax.data_ptr() if pv_fp8 else (trace.data_ptr() if trace is not None else None),
        qmean.data_ptr() if qmean is not None else None, cq.data_ptr() if cq is not None else None,
    )  # fmt: skip
    args = (ctypes.c_void_p * 1)(ctypes.addressof(params))
    stream = torch.cuda.current_stream(q.device).cuda_stream
    _check(
        lib.cuLaunchKernel(
            fn, q.shape[1], tiles.shape[0], 1, spec.threads, 1, 1, smem,
            ctypes.c_void_p(stream), args, None,
        ),
        "cuLaunchKernel",
    )  # fmt: skip
