"""End to end on CPU: a real launch_server with `--attention-backend sage_attn` answers with the
same tokens as `--attention-backend triton`, and its fallback counts say why Sage was not used.

SGLang's Triton kernels run under TRITON_INTERPRET=1 (tests/_server.py has the CPU recipe).
The sage_attn server is built through the release's own construction path in the spawned
scheduler process, so this also proves the `.pth` bootstrap reached that process.
"""

from __future__ import annotations

import time

import pytest

from sglang_sage_ext.stats import STATS_DIR_ENV, read_stats_dir
from tests._server import cuda_available, generate, running_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(cuda_available(), reason="CPU recipe; the GPU suite covers CUDA"),
]

PROMPTS = (
    [1, 624, 700, 737, 538, 731, 12, 40, 99, 300],
    [1, *range(40, 120)],  # 81 tokens: above SGLANG_SAGE_MIN_TOKENS, so only no_cuda applies
)
NEW_TOKENS = 8


def _answers(model_dir, backend: str, env: dict[str, str] | None = None) -> list[list[int]]:
    with running_server(model_dir, attention_backend=backend, env=env) as srv:
        return [generate(srv.port, ids, max_new_tokens=NEW_TOKENS) for ids in PROMPTS]


def _wait_for_stats(directory, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = read_stats_dir(directory)
        if stats["pids"] or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def test_sage_attn_matches_triton_and_reports_fallbacks(tiny_model_dir, tmp_path):
    stats_dir = tmp_path / "stats"
    stats_dir.mkdir()
    triton = _answers(tiny_model_dir, "triton", env={STATS_DIR_ENV: str(stats_dir)})
    assert read_stats_dir(stats_dir)["pids"] == [], "triton must not run our backend"

    sage = _answers(tiny_model_dir, "sage_attn", env={STATS_DIR_ENV: str(stats_dir)})
    assert sage == triton
    assert all(len(ids) == NEW_TOKENS for ids in sage)

    stats = _wait_for_stats(stats_dir)
    assert stats["pids"], "the scheduler process never built SageTritonAttnBackend"
    assert stats["sage_calls"] == 0
    # every extend call fell back, each for the process-wide reason: no CUDA here
    assert set(stats["fallback_calls"]) == {"no_cuda"}
    assert stats["fallback_calls"]["no_cuda"] >= len(PROMPTS)
