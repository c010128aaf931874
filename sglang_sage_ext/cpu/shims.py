"""Make released SGLang wheels importable and runnable on a CPU-only torch (>=2.13, +cpu).

For CPU CI only. Call `install()` before anything imports sglang (tests/conftest.py does, when
torch has no CUDA). Processes that SGLang spawns get the same shims through a `.pth` file that
`install_pth()` writes into the test venv's site-packages; it acts only when the environment
variable SGLANG_SAGE_CPU_SHIMS=1 is set. Nothing here makes GPU kernels run: the stubs raise
NotImplementedError when called.

The four shims:
1. `torch._C._cpu._is_amx_tile_supported` (dropped in torch 2.13, called by sglang 0.4.x).
2. Schemas for `torchvision::nms`/`qnms`, so the CUDA-only PyPI torchvision imports on CPU.
3. A stub `sgl_kernel` package when the real one cannot load (0.5.5-0.5.10 import it).
4. Stubs for exactly `vllm` and `vllm._custom_ops` on sglang < 0.5 when vllm is missing.

Run as a script to write the `.pth` file: `python -m sglang_sage_ext.cpu.shims --pth`.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import sysconfig
import types
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ENV_VAR = "SGLANG_SAGE_CPU_SHIMS"
PTH_NAME = "00_sglang_sage_cpu_shims.pth"
PTH_LINE = (
    f"import os; os.environ.get({ENV_VAR!r}) == '1' and "
    "__import__('sglang_sage_ext.cpu.shims', fromlist=['install']).install()\n"
)
_STUB_VERSION = "0.0.0+cpu-ci-stub"


class _StubAttr:
    """Any attribute of a stub module: callable (raises), subclassable, attribute-chainable."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{self._name} is a CPU-CI stub")

    def __getattr__(self, item: str) -> _StubAttr:
        if item.startswith("__"):
            raise AttributeError(item)
        return _StubAttr(f"{self._name}.{item}")

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (object,)


class _StubModule(types.ModuleType):
    """A module whose every public attribute is a `_StubAttr`."""

    def __getattr__(self, item: str) -> Any:
        if item == "__version__":
            return _STUB_VERSION
        if item.startswith("__"):
            raise AttributeError(item)
        return _StubAttr(f"{self.__name__}.{item}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stubs every module under `trees` and exactly the module names in `exact`."""

    cpu_ci_stub = True

    def __init__(self, trees: Iterable[str] = (), exact: Iterable[str] = ()) -> None:
        self.trees, self.exact = set(trees), set(exact)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self.exact or fullname.split(".")[0] in self.trees:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def _importable(name: str) -> bool:
    """Import `name`; on failure forget any half-imported modules and return False."""
    try:
        __import__(name)
        return True
    except Exception:  # missing, or a CUDA build failing to load its .so on CPU
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        return False


def _sglang_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(p) for p in version("sglang").split(".")[:3] if p.isdigit())


def installed() -> bool:
    """True when `install()` already ran in this interpreter."""
    return any(getattr(f, "cpu_ci_stub", False) for f in sys.meta_path) or bool(
        getattr(sys, "_sglang_sage_cpu_shims", False)
    )


def install() -> None:
    """Apply the four shims (idempotent). Needs torch; does not import sglang."""
    if installed():
        return
    sys._sglang_sage_cpu_shims = True  # type: ignore[attr-defined]
    import torch

    # 1. torch 2.13 dropped torch._C._cpu._is_amx_tile_supported; sglang 0.4.x calls it.
    if not hasattr(torch._C._cpu, "_is_amx_tile_supported"):
        torch._C._cpu._is_amx_tile_supported = torch.cpu._is_amx_tile_supported

    # 2. PyPI torchvision is a CUDA build: its _C.so cannot load on CPU torch and torchvision
    #    then dies in register_fake("torchvision::nms"). Declaring the schemas is enough for
    #    its pure-Python parts (transforms, io) to import.
    for op in ("nms", "qnms"):
        with contextlib.suppress(RuntimeError):  # already defined: the real ops loaded
            torch.library.define(
                f"torchvision::{op}",
                "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            )

    trees: list[str] = []
    exact: list[str] = []
    # 3. sgl-kernel / sglang-kernel wheels are CUDA-only; sglang 0.5.5-0.5.10 import them.
    if not _importable("sgl_kernel"):
        trees.append("sgl_kernel")
    # 4. sglang 0.4.x fp8.py does `from vllm._custom_ops import scaled_fp8_quant` on CPUs
    #    without AMX. Only these two names are stubbed, so `try: import vllm.x` still fails.
    try:
        old = _sglang_version() < (0, 5)
    except Exception:
        old = False
    if old and not _importable("vllm"):
        exact += ["vllm", "vllm._custom_ops"]
    if trees or exact:
        sys.meta_path.insert(0, _StubFinder(trees, exact))


def install_pth(site_packages: str | os.PathLike[str] | None = None) -> Path:
    """Write the env-gated `.pth` that runs `install()` in every interpreter of this venv.

    It does nothing unless SGLANG_SAGE_CPU_SHIMS=1. Default target: this interpreter's purelib.
    """
    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / PTH_NAME
    if not target.exists() or target.read_text() != PTH_LINE:
        target.write_text(PTH_LINE)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `--pth [SITE_PACKAGES]` writes the `.pth` file and prints its path."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "--pth":
        print(f"usage: python -m {__spec__.name if __spec__ else 'cpu_shims'} --pth [DIR]")
        return 2
    print(install_pth(args[1] if len(args) > 1 else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
