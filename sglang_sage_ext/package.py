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


def parse_version(text: str) -> tuple[int, ...]:
    """`"0.4.10.post2"` -> `(0, 4, 10)`; stops at the first non-numeric part."""
    parts: list[int] = []
    for piece in text.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        import importlib_metadata as metadata
    except ImportError:  # pragma: no cover - the dependency is declared
        import importlib.metadata as metadata  # type: ignore[no-redef]
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
