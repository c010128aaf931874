"""Runs in every Python process through `sglang_sage_ext.pth` (site-packages root).

SGLang starts its schedulers with the `spawn` start method, so a patch made in the launching
process never reaches the process that builds the attention backend. `site` executes `.pth`
files in every interpreter, spawned children included; this module puts a tiny finder on
`sys.meta_path` that waits for the first `import sglang` and only then imports wrapt and
registers the post-import hooks of `sglang_sage_ext.integration.hooks`.

Rules: import nothing but `sys` and `os` here (interpreter start must stay under 5 ms),
never raise, and do nothing when SGLANG_SAGE_EXT_DISABLE is set to a true value.
"""

import os
import sys

DISABLE_ENV = "SGLANG_SAGE_EXT_DISABLE"
DEBUG_ENV = "SGLANG_SAGE_EXT_DEBUG"
#: = env.TRUE_VALUES (env.py is not imported here: interpreter start; a test keeps them equal)
_TRUE = ("1", "true", "yes", "on")

#: What happened at interpreter start; `sglang-sage doctor` prints it.
state = {"bootstrap": "not run"}


def disabled() -> bool:
    """True when the user switched the extension off for this process tree."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in _TRUE


class _FirstSglangImport:
    """A meta-path finder that never finds anything: it only notices `import sglang`."""

    fired = False

    def find_spec(self, fullname, path=None, target=None):
        # Never edit sys.meta_path from here: the import system is iterating over it.
        if fullname == "sglang" and not self.fired:
            self.fired = True
            if _findable_elsewhere(self, fullname, path, target):
                _install_hooks("first import of sglang")
            else:  # SGLang is not installed: stay inert, let the import fail as usual
                state["bootstrap"] = "inert (sglang not installed)"
                self.fired = False
        return None

    def invalidate_caches(self):
        pass


def _findable_elsewhere(me, fullname, path, target) -> bool:
    for finder in list(sys.meta_path):
        find_spec = getattr(finder, "find_spec", None)
        if finder is me or find_spec is None:
            continue
        try:
            if find_spec(fullname, path, target) is not None:
                return True
        except Exception:
            continue
    return False


_finder = _FirstSglangImport()


def _install_hooks(trigger: str) -> None:
    try:
        from sglang_sage_ext.integration import hooks

        hooks.install()
        state["bootstrap"] = f"hooks installed ({trigger})"
    except Exception as exc:  # never break the user's interpreter
        state["bootstrap"] = f"failed: {type(exc).__name__}: {exc}"
        if os.environ.get(DEBUG_ENV, "").strip().lower() in _TRUE:
            sys.stderr.write(f"[sglang-sage-ext] bootstrap failed: {exc!r}\n")


def activate() -> None:
    """Arm the bootstrap in this process (idempotent)."""
    if disabled():
        state["bootstrap"] = f"disabled by {DISABLE_ENV}"
        return
    if "sglang" in sys.modules:
        _install_hooks("sglang already imported")
    elif _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
        state["bootstrap"] = "armed (waiting for import sglang)"


try:  # noqa: SIM105 - contextlib would cost import time at every interpreter start
    activate()
except Exception:  # pragma: no cover - the bootstrap must never raise
    pass
