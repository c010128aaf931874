"""Start a real `python -m sglang.launch_server` for end-to-end tests, and talk to it.

The implementation lives in `sglang_sage_ext.cli.bench.servers` (shared with `sglang-sage bench`);
this module keeps the names the tests import.
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

__all__ = [
    "CPU_ARGS",
    "CPU_ENV",
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
