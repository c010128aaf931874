"""The SGLang releases this extension supports, declared once (as OpenTelemetry's `_instruments`).

`pyproject.toml`'s `instruments` extra repeats the same range; a test keeps the two equal.
"""

from __future__ import annotations

SGLANG_REQUIREMENT = "sglang >= 0.4.10, < 0.5.24"
_instruments = (SGLANG_REQUIREMENT,)

#: The oldest and the first unsupported release, as version tuples (used without `packaging`).
SUPPORTED_MIN = (0, 4, 10)
SUPPORTED_BELOW = (0, 5, 24)

#: sageattention releases whose `sageattn_varlen` the backend calls.
SAGEATTENTION_MIN = (1, 0, 6)
