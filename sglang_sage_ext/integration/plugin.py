"""Entry point of SGLang's native plugin group `sglang.srt.plugins` (SGLang >= 0.5.11).

SGLang calls `register()` in the launcher and in every scheduler process. It installs the same
post-import hooks as the `.pth` bootstrap, so it is a no-op where the bootstrap already ran and
a safety net where it could not (`python -S`, installers that skip root `.pth` files).
"""

from __future__ import annotations

from sglang_sage_ext import env
from sglang_sage_ext.integration import status

#: = _bootstrap.DISABLE_ENV (not imported from there: integration must not import the bootstrap)
DISABLE_ENV = "SGLANG_SAGE_EXT_DISABLE"


def register() -> None:
    """Install the hooks (idempotent, never raises)."""
    if env.flag(DISABLE_ENV):
        status.record("plugin", f"not needed: disabled by {DISABLE_ENV}")
        return
    try:
        from sglang_sage_ext.integration import hooks

        fresh = hooks.install()
        status.record("plugin", "applied: hooks installed" if fresh else "already applied")
    except Exception as exc:
        status.record("plugin", f"failed: {type(exc).__name__}: {exc}")
