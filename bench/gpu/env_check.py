#!/usr/bin/env python3
"""Print versions and try the imports SGLang's server path needs."""

import importlib
import importlib.metadata as md
import shutil
import time
import traceback

for n in [
    "torch",
    "triton",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "numpy",
    "pyarrow",
    "pandas",
    "fsspec",
    "typing-extensions",
    "numba",
    "nvidia-cuda-runtime",
    "cuda-bindings",
    "sglang",
    "sglang-kernel",
    "flashinfer-python",
    "xgrammar",
    "apache-tvm-ffi",
    "pydantic",
    "fastapi",
    "sageattention",
]:
    try:
        print(f"  {n:20s} {md.version(n)}")
    except Exception:
        print(f"  {n:20s} -")
print("cc/gcc/nvcc:", shutil.which("cc"), shutil.which("gcc"), shutil.which("nvcc"))
import torch  # noqa: E402 - after the version list, which must print even if torch breaks

print(
    "GPU:",
    torch.cuda.get_device_name(),
    torch.cuda.get_device_capability(),
    "free/total GiB",
    [round(x / 2**30, 1) for x in torch.cuda.mem_get_info()],
)
for m in [
    "sgl_kernel",
    "flashinfer",
    "sageattention",
    "sglang.srt.entrypoints.http_server",
    "sglang.srt.managers.scheduler",
    "sglang.srt.model_executor.model_runner",
    "sglang.srt.models.llama",
    "sglang.srt.layers.attention.triton_backend",
    "sglang.bench_one_batch",
    "sglang.bench_serving",
]:
    t = time.time()
    try:
        importlib.import_module(m)
        print(f"IMPORT OK   {m} ({time.time() - t:.1f}s)")
    except BaseException as e:
        print(f"IMPORT FAIL {m}: {type(e).__name__}: {e}")
        traceback.print_exc(limit=-3)
import sgl_kernel  # noqa: E402 - after the import checks above

print("sgl_kernel.common_ops from", getattr(sgl_kernel.common_ops, "__file__", "?"))
try:
    from sgl_kernel import flash_attn as fa

    print(
        "sgl_kernel.flash_attn imported; flash_ops present:",
        hasattr(fa, "flash_ops") or "see module",
    )
except Exception as e:
    print("sgl_kernel.flash_attn import:", repr(e)[:200])
# a real sgl_kernel op on the GPU: rmsnorm vs torch
x = torch.randn(4, 4096, device="cuda", dtype=torch.bfloat16)
w = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
y = sgl_kernel.rmsnorm(x, w, 1e-6)
ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()
print("sgl_kernel.rmsnorm rel err:", ((y.float() - ref).norm() / ref.norm()).item())
