"""Import SGLang for `sglang-sage doctor`, and say in one line why it fails and what fixes it.

A broken SGLang install rarely raises ImportError: a torchvision built for another torch raises
RuntimeError("operator torchvision::nms does not exist"), a missing numpy surfaces as a KeyError
from `find_spec`, a file for another Python as SyntaxError. `doctor` exists for exactly these
machines, so it catches everything the import raises and turns it into a FAIL line with the
exception, the versions of the packages involved and the likely fix.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from sglang_sage_ext.integration.compat import installed_version, parse_version

#: What doctor imports, in order: the package, then what every launch imports first.
SGLANG_MODULES = ("sglang", "sglang.srt.server_args")
#: Packages whose version mismatches break `import sglang` most often.
RELATED = ("torch", "torchvision", "transformers")
#: Import names whose pip package is named differently.
_PIP_NAMES = {"PIL": "pillow", "yaml": "pyyaml", "cv2": "opencv-python-headless", "zmq": "pyzmq"}
_MAX_MESSAGE = 300


def import_sglang() -> tuple[str, BaseException] | None:
    """Import SGLANG_MODULES; (module, exception) of the first that raises, else None."""
    for name in SGLANG_MODULES:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:  # anything: doctor must report, never raise
            return name, exc
    return None


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line, shortened."""
    text = " ".join(str(exc).split()) or repr(exc)
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def involved(exc: BaseException) -> list[str]:
    """Which of RELATED the failure mentions or passes through (message or traceback files)."""
    found = []
    for name in RELATED:
        marker = f"{os.sep}{name}{os.sep}"
        for item in _chain(exc):
            files = [frame.filename for frame in traceback.extract_tb(item.__traceback__)]
            if (
                f"{name}::" in str(item)
                or f"'{name}" in str(item)
                or any(marker in f for f in files)
            ):
                found.append(name)
                break
    return found


def _versions(names: list[str]) -> str:
    return ", ".join(f"{name} {installed_version(name) or 'not installed'}" for name in names)


def torchvision_fix() -> str:
    """The torchvision pip command that matches the installed torch (torch 2.M <-> 0.(M+15))."""
    torch_version = installed_version("torch")
    if torch_version is None:
        return "install torch first, then the torchvision that matches it"
    parts = parse_version(torch_version)
    series = f"0.{parts[1] + 15}" if len(parts) >= 2 and parts[0] == 2 else ""
    pin = f"torchvision=={series}.*" if series else "torchvision"
    local = torch_version.partition("+")[2]
    index = f" --index-url https://download.pytorch.org/whl/{local}" if local else ""
    installed = installed_version("torchvision") or ""
    # the right series but another build (e.g. a CUDA wheel next to a CPU torch): reinstall it
    force = "--force-reinstall " if series and installed.startswith(series + ".") else ""
    shims = (
        "; or, to run SGLang's CPU path as the project's tests do, SGLANG_SAGE_CPU_SHIMS=1"
        if local == "cpu"
        else ""
    )
    return (
        f"reinstall the torchvision that matches your torch {torch_version}, e.g. "
        f"pip install {force}'{pin}'{index}{shims}"
    )


def _shadowing(version: str) -> str:
    """A hint when `import sglang` resolves outside the installed distribution, else ''."""
    try:
        spec = importlib.util.find_spec("sglang")
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        try:
            import importlib_metadata as metadata
        except ImportError:  # pragma: no cover - the dependency is declared
            import importlib.metadata as metadata  # type: ignore[no-redef]
        root = Path(metadata.distribution("sglang").locate_file("sglang")).resolve()
    except Exception:
        return ""
    if origin is None or origin.is_relative_to(root) or not root.is_dir():
        return ""
    return (
        f"`import sglang` loads {origin}, not the installed sglang {version} ({root}): remove it "
        "from PYTHONPATH / the current directory; otherwise "
    )


def _specific_fix(exc: BaseException, version: str, related: list[str]) -> str:
    reinstall = f"pip install --force-reinstall 'sglang=={version}'"
    if "torchvision" in related:
        return torchvision_fix()
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        return f"install the missing module: pip install {_PIP_NAMES.get(top, top)}"
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else "a module SGLang imports"
        python = ".".join(map(str, sys.version_info[:2]))
        return (
            f"{where} does not parse under Python {python}: fix or remove that file if it is not "
            f"SGLang's, else {reinstall} (SGLang needs Python 3.10-3.12 here)"
        )
    if isinstance(exc, KeyError):
        return (
            "SGLang or a dependency is half-installed (a KeyError while importing usually "
            f"follows a missing package such as numpy): {reinstall} without --no-deps"
        )
    if related:
        return f"install versions of {', '.join(related)} that this SGLang supports, or {reinstall}"
    return f"fix the SGLang installation (see the error): {reinstall}"


def explain(module: str, exc: BaseException, version: str) -> tuple[str, str]:
    """(value, fix) of the FAIL line for `import <module>` raising `exc` (sglang `version`)."""
    related = involved(exc)
    value = f"{version} is installed, but `import {module}` fails: {one_line(exc)}"
    if related:
        value += f" (installed: {_versions(list(RELATED))})"
    return value, _shadowing(version) + _specific_fix(exc, version, related)
