"""End to end: a real `sglang.launch_server` (triton backend) answers greedy /generate.

On CPU this runs SGLang's Triton attention kernels under TRITON_INTERPRET=1 (see _server.py).
The server is conftest's `triton_answers`, shared with test_e2e_cpu.py (one launch a session).
"""

from __future__ import annotations

import pytest

from tests._server import E2E_NEW_TOKENS

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_full]


def test_triton_server_generates(triton_answers):
    first = triton_answers.answers[0]
    assert len(first) == E2E_NEW_TOKENS
    assert all(isinstance(t, int) and 0 <= t < 1024 for t in first)
    assert triton_answers.again == first, "greedy decoding must be deterministic"
