"""End to end: a real `sglang.launch_server` (triton backend) answers greedy /generate.

On CPU this runs SGLang's Triton attention kernels under TRITON_INTERPRET=1 (see _server.py).
"""

from __future__ import annotations

import pytest

from tests._server import generate, running_server

pytestmark = pytest.mark.e2e

PROMPT_IDS = [1, 624, 700, 737, 538, 731, 12, 40, 99, 300]


def test_triton_server_generates(tiny_model_dir):
    with running_server(tiny_model_dir, attention_backend="triton") as srv:
        first = generate(srv.port, PROMPT_IDS, max_new_tokens=8)
        again = generate(srv.port, PROMPT_IDS, max_new_tokens=8)
    assert len(first) == 8
    assert all(isinstance(t, int) and 0 <= t < 1024 for t in first)
    assert again == first, "greedy decoding must be deterministic"
