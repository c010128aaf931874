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

from tests import _selection as selection

_TEST_SET = pytest.StashKey[str]()

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
    for name, text in selection.MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:
        config.stash[_TEST_SET] = selection.selected_set(dict(os.environ))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[_TEST_SET] == "ci":  # the tox matrix's share (tests/_selection.py)
        release = selection.installed_release()
        for item in items:
            reason = selection.skip_reason(item.keywords, release)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
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


@pytest.fixture(scope="session")
def triton_answers(tiny_model_dir, tmp_path_factory: pytest.TempPathFactory):
    """One `--attention-backend triton` server for the e2e tests that compare with it: greedy
    answers to E2E_PROMPTS, the first prompt asked twice, and its stats directory as read after
    the server stopped (our backend must leave nothing there)."""
    from types import SimpleNamespace

    from sglang_sage_ext.backend.stats import STATS_DIR_ENV, read_stats_dir
    from tests._server import E2E_NEW_TOKENS, E2E_PROMPTS, generate, running_server

    stats_dir = tmp_path_factory.mktemp("triton-stats")
    env = {STATS_DIR_ENV: str(stats_dir)}
    with running_server(tiny_model_dir, attention_backend="triton", env=env) as srv:
        answers = [generate(srv.port, ids, max_new_tokens=E2E_NEW_TOKENS) for ids in E2E_PROMPTS]
        again = generate(srv.port, E2E_PROMPTS[0], max_new_tokens=E2E_NEW_TOKENS)
    return SimpleNamespace(answers=answers, again=again, stats=read_stats_dir(stats_dir))
