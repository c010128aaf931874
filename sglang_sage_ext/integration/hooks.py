"""Registers one wrapt post-import hook per patch point (called by the bootstrap and the plugin).

Each hook fires when SGLang imports the module it names (at once if already imported),
applies its patch, and records a status; an exception in a patch is recorded, logged once,
and never propagates into SGLang's import.

Two guards keep this honest:

* Only SGLang's own modules are patched. A module of that name that is not part of the
  installed `sglang` distribution and lacks the attributes the patch expects (a user's own
  package called `sglang`) is left alone, silently, with status ``not needed: not SGLang's
  module (...)``: printing warnings into someone else's program would be a bug of ours.
* wrapt fires a post-import hook once per name, so re-executing a patched module
  (`importlib.reload`, or `del sys.modules[...]` and a new import) would silently drop the
  patch. A meta-path finder notices the second execution and applies the patches again; the
  statuses also re-check the live objects (`status.snapshot`), so they never claim a patch
  that is gone.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import wrapt

from sglang_sage_ext.integration import status

logger = logging.getLogger("sglang_sage_ext")

_PATCHES = "sglang_sage_ext.integration.patches"


@dataclass(frozen=True)
class Hook:
    """One patch point: the module SGLang imports, the patch, and how to spot the real module."""

    point: str
    module: str
    apply: str  # "module:function" returning a status string
    verify: str  # "module:function" answering whether the live module still carries the patch
    requires: tuple[str, ...]  # attributes SGLang's own module has (dotted paths)


_SERVER_ARGS = "sglang.srt.server_args"
HOOKS: tuple[Hook, ...] = (
    Hook(
        "cli",
        _SERVER_ARGS,
        f"{_PATCHES}.cli:apply",
        f"{_PATCHES}.cli:is_applied",
        ("ServerArgs.add_cli_args",),
    ),
    Hook(
        "arg_choices",
        "sglang.srt.arg_groups.choices",
        f"{_PATCHES}.cli:apply_choices",
        f"{_PATCHES}.cli:is_choices_applied",
        ("ATTENTION_BACKEND_CHOICES",),
    ),
    Hook(
        "decode_default",
        _SERVER_ARGS,
        f"{_PATCHES}.decode_default:apply",
        f"{_PATCHES}.decode_default:is_applied",
        ("ServerArgs.add_cli_args",),
    ),
    Hook(
        "registry",
        "sglang.srt.layers.attention.attention_registry",
        f"{_PATCHES}.registry:apply",
        f"{_PATCHES}.registry:is_applied",
        ("ATTENTION_BACKENDS", "register_attention_backend"),
    ),
    Hook(
        "model_runner",
        "sglang.srt.model_executor.model_runner",
        f"{_PATCHES}.model_runner:apply",
        f"{_PATCHES}.model_runner:is_applied",
        ("ModelRunner",),
    ),
)

_installed = False
#: Modules whose hooks fired in this process: a later execution of one of them is a re-execution.
_executed: set[str] = set()


def _resolve(target: str) -> Callable[[ModuleType], Any]:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@functools.lru_cache(maxsize=1)
def _sglang_distribution() -> Any:
    """The installed `sglang` distribution, or None."""
    try:
        import importlib_metadata as metadata
    except ImportError:  # pragma: no cover - the dependency is declared
        import importlib.metadata as metadata  # type: ignore[no-redef]
    try:
        return metadata.distribution("sglang")
    except metadata.PackageNotFoundError:
        return None


def _lookup(module: ModuleType, dotted: str) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
    return obj


def _inside_distribution(module: ModuleType, dist: Any) -> bool:
    try:
        root = Path(dist.locate_file("sglang")).resolve()
        return Path(module.__file__ or "").resolve().is_relative_to(root)
    except Exception:  # no file, odd distribution: cannot tell
        return False


def not_sglang_reason(module: ModuleType, requires: tuple[str, ...]) -> str | None:
    """Why `module` is not SGLang's own module, or None when it is.

    It is SGLang's when the `sglang` distribution is installed and the module either has the
    attributes the patch needs (source checkouts and editable installs included) or is a file of
    that distribution (then a missing attribute is a real incompatibility: the patch fails loudly).
    """
    dist = _sglang_distribution()
    if dist is None:
        return f"{module.__name__} was imported, but no 'sglang' distribution is installed"
    missing = [name for name in requires if _lookup(module, name) is None]
    if not missing or _inside_distribution(module, dist):
        return None
    where = getattr(module, "__file__", None) or "no file"
    return (
        f"{module.__name__} from {where} has no {', '.join(missing)} and is not part of the "
        f"installed sglang {dist.version}"
    )


def _verifier(hook: Hook) -> Callable[[], bool | None]:
    def verify() -> bool | None:
        module = sys.modules.get(hook.module)
        return None if module is None else bool(_resolve(hook.verify)(module))

    return verify


def _guarded(hook: Hook, again: bool = False) -> Callable[[ModuleType], None]:
    def run(module: ModuleType) -> None:
        _executed.add(hook.module)
        try:
            reason = not_sglang_reason(module, hook.requires)
            if reason is not None:
                status.record(hook.point, f"not needed: not SGLang's module ({reason})")
                return
            text = _resolve(hook.apply)(module)
            if again and text.startswith("applied"):
                text += " (re-applied: the module was executed again, e.g. importlib.reload)"
            status.record(hook.point, text, _verifier(hook))
        except Exception as exc:
            status.record(hook.point, f"failed: {type(exc).__name__}: {exc}")
            logger.warning(
                "sglang-sage-ext: patch %r on %s failed (%s); `sage_attn` may be unavailable. "
                "Run `sglang-sage doctor` for details.",
                hook.point,
                module.__name__,
                exc,
            )

    return run


class _RepatchingLoader(wrapt.ObjectProxy):  # type: ignore[misc]
    """A module's own loader that re-applies our patches after executing the module again."""

    def __init__(self, loader: Any, name: str) -> None:
        super().__init__(loader)
        self._self_name = name

    def exec_module(self, module: ModuleType) -> None:
        self.__wrapped__.exec_module(module)
        for hook in HOOKS:
            if hook.module == self._self_name:
                _guarded(hook, again=True)(module)


class _ReexecutionWatcher:
    """Meta-path finder that finds nothing itself: it only wraps the loader of a patched module
    that is about to be executed again (reload, or a fresh import after `del sys.modules[...]`)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in _executed:
            return None
        for finder in list(sys.meta_path):
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            try:
                spec = find_spec(fullname, path, target)
            except Exception:  # let the import system report it as it would without us
                return None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RepatchingLoader(spec.loader, fullname)
                return spec
        return None

    def invalidate_caches(self) -> None:
        pass


_WATCHER = _ReexecutionWatcher()


def install() -> bool:
    """Register every hook once per process; returns False when they already were."""
    global _installed
    if _installed:
        return False
    _installed = True
    if _WATCHER not in sys.meta_path:
        sys.meta_path.insert(0, _WATCHER)
    for hook in HOOKS:
        wrapt.register_post_import_hook(_guarded(hook), hook.module)
    return True
