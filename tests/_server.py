"""Start a real `python -m sglang.launch_server` for end-to-end tests, and talk to it.

The implementation lives in `sglang_sage_ext.cli.bench.servers` (shared with `sglang-sage bench`);
this module keeps the names the tests import, and the prompts the e2e tests share.
"""

from __future__ import annotations

from sglang_sage_ext.cli.bench.servers import (
    CPU_ARGS,
    CPU_ENV,
    Server,
    cpu_args,
    cuda_available,
    free_port,
    generate,
    post_json,
    running_server,
    sglang_version,
    start_server,
)

#: Greedy prompts of the e2e tests (conftest's `triton_answers` serves them once per session):
#: a short one, and 81 tokens, above SGLANG_SAGE_MIN_TOKENS (so only no_cuda applies on CPU).
E2E_PROMPTS = (
    [1, 624, 700, 737, 538, 731, 12, 40, 99, 300],
    [1, *range(40, 120)],
)
E2E_NEW_TOKENS = 8

__all__ = [
    "CPU_ARGS",
    "CPU_ENV",
    "E2E_NEW_TOKENS",
    "E2E_PROMPTS",
    "Server",
    "cpu_args",
    "cuda_available",
    "free_port",
    "generate",
    "post_json",
    "running_server",
    "sglang_version",
    "start_server",
]
