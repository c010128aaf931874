"""Test-session setup shared by CPU CI and GPU machines.

Without CUDA, the CPU shims (sglang_sage_ext.cpu.shims) are installed here, before any
test module imports sglang, and SGLANG_SAGE_CPU_SHIMS=1 is exported so that the processes SGLang
spawns load them too (through the env-gated `.pth` that tox writes; written here as a fallback).
With CUDA nothing is patched and the same tests run against the real stack.
"""

from __future__ import annotations

import contextlib
import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


HAS_CUDA = _cuda_available()

if not HAS_CUDA:
    from sglang_sage_ext.cpu import shims as cpu_shims

    cpu_shims.install()
    os.environ[cpu_shims.ENV_VAR] = "1"
    if sys.prefix != sys.base_prefix:  # only ever write into a virtual environment
        with contextlib.suppress(OSError):
            cpu_shims.install_pth()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA GPU (skipped when torch.cuda.is_available() is False)"
    )
    config.addinivalue_line("markers", "e2e: starts a real SGLang server (CPU: TRITON_INTERPRET=1)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random Llama (2 layers, 4 q / 2 kv heads, head_dim 64) with a local tokenizer."""
    from sglang_sage_ext.cpu.tiny_model import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
