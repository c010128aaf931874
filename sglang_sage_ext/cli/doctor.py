"""`sglang-sage doctor`: can `sage_attn` work in this environment, and if not, what to do.

Checks versions, the GPU, the bootstrap in this interpreter and in a `spawn` child (the way
SGLang starts its schedulers), every patch point's status, and every SGLANG_SAGE_* variable.
Exit codes: 0 everything works; 1 `sage_attn` is accepted but every extend batch will fall back
to the native path (no CUDA, old GPU, no sageattention, SGLANG_SAGE_FORCE_FALLBACK); 2
`sage_attn` cannot be used, or not as configured (SGLang missing or failing to import, a patch
failed or was lost, the bootstrap disabled or not running, an SGLANG_SAGE_* variable with an
unknown name or an invalid value). Each check is isolated: whatever one raises becomes a FAIL
line, so doctor itself never raises and `--json` always prints JSON.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sglang_sage_ext import __version__, _bootstrap, env
from sglang_sage_ext.backend import fallback
from sglang_sage_ext.cli import import_check
from sglang_sage_ext.integration import compat, status
from sglang_sage_ext.package import SGLANG_REQUIREMENT

OK, DEGRADED, BROKEN = 0, 1, 2


@dataclass
class Check:
    """One line of the report."""

    name: str
    value: str
    level: int = OK
    fix: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, value: str, level: int = OK, fix: str = "") -> None:
        self.checks.append(Check(name, value, level, fix))

    @property
    def exit_code(self) -> int:
        return max((c.level for c in self.checks), default=OK)

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "checks": [c.__dict__ for c in self.checks],
        }


def _registration_modules() -> list[str]:
    modules = ["sglang.srt.server_args"]
    if compat.features().has_attention_registry:
        modules.append("sglang.srt.layers.attention.attention_registry")
    else:
        modules.append("sglang.srt.model_executor.model_runner")
    return modules


def probe_registration() -> dict[str, Any]:
    """Import the modules SGLang's scheduler imports and see whether sage_attn is in place.

    Runs in the doctor process and, unchanged, in a `spawn` child (see `probe_in_child`).
    """
    result: dict[str, Any] = {"bootstrap_before_import": dict(_bootstrap.state), "errors": []}
    for name in _registration_modules():
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            result["errors"].append(f"import {name}: {import_check.one_line(exc)}")
    result["bootstrap"] = _bootstrap.state["bootstrap"]
    result["patches"] = status.snapshot()
    server_args = sys.modules.get("sglang.srt.server_args")
    choices = getattr(server_args, "ATTENTION_BACKEND_CHOICES", None)
    result["in_choices"] = compat.BACKEND_NAME in choices if isinstance(choices, list) else None
    registry = sys.modules.get("sglang.srt.layers.attention.attention_registry")
    backends = getattr(registry, "ATTENTION_BACKENDS", None)
    result["registered"] = compat.BACKEND_NAME in backends if backends is not None else None
    return result


def probe_in_child(timeout: float = 180.0) -> dict[str, Any]:
    """`probe_registration` in a fresh interpreter started with the `spawn` method."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply_async(probe_registration).get(timeout)


def _gpu(report: Report) -> None:
    try:
        import torch
    except Exception as exc:
        report.add("torch", f"not importable: {exc}", BROKEN, "install SGLang with its torch")
        return
    report.add("torch", torch.__version__)
    try:
        import triton

        report.add("triton", triton.__version__)
    except Exception as exc:
        report.add("triton", f"not importable: {exc}", BROKEN, "pip install triton")
    if not torch.cuda.is_available():
        report.add(
            "GPU",
            "no CUDA device visible",
            DEGRADED,
            "run on an NVIDIA GPU (sm80+); on CPU every batch runs on the native (Triton) path",
        )
        return
    name = torch.cuda.get_device_name()
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (8, 0):
        report.add(
            "GPU",
            f"{name} (sm{major}{minor})",
            DEGRADED,
            "SageAttention needs compute capability 8.0+ (A100, L40, H100, RTX 30xx/40xx)",
        )
    else:
        report.add("GPU", f"{name} (sm{major}{minor})")


def _sageattention(report: Report) -> None:
    from sglang_sage_ext.kernels.sage_ops import sageattention_problem

    version = compat.installed_version("sageattention")
    problem = sageattention_problem()
    if problem:
        report.add("sageattention", version or "missing", DEGRADED, problem)
    else:
        report.add("sageattention", str(version))


def _extend_route(report: Report) -> None:
    from sglang_sage_ext.backend import fallback
    from sglang_sage_ext.kernels import sage_ops as kernels

    problem = kernels.paged_kernel_problem()
    mode = fallback.paged_kernel_mode()
    pv, q_smooth = kernels.paged_pv_mode(), kernels.paged_q_smooth()
    kernel = kernels.kernel_choice_here(pv, q_smooth)[0]
    text = kernels.extend_route_summary(mode, problem, pv, q_smooth, kernel)
    if problem and mode != "off":
        report.add("extend under sage_attn", text, DEGRADED, problem)
    else:
        report.add("extend under sage_attn", text)


def _routing(report: Report) -> None:
    """Which native backend takes the exact batches, and which cost table routes them."""
    from sglang_sage_ext.backend import cost_model
    from sglang_sage_ext.integration.native import best_decode_backend

    name, _ = best_decode_backend()
    capability = None
    torch_cuda = False
    try:
        import torch

        torch_cuda = torch.cuda.is_available()
        if torch_cuda:
            capability = torch.cuda.get_device_capability()
    except Exception:
        capability = None
    if not torch_cuda and not fallback.cpu_interpret_enabled():
        report.add("routing under sage_attn", f"every extend batch on {name} (no CUDA GPU)")
        return
    if not fallback.cost_model_enabled():
        text = f"cost model off: every eligible extend batch on Sage; the rest on {name}"
        report.add("routing under sage_attn", text)
        return
    table = cost_model.load_table(capability, name)
    report.add("routing under sage_attn", f"exact path {name}; table {table.describe()}")


def _kernel(report: Report) -> None:
    from sglang_sage_ext.kernels import sage_ops

    report.add("Sage extend kernel", sage_ops.kernel_line())


def _decode(report: Report) -> None:
    from sglang_sage_ext.integration.native import best_decode_backend

    name, why = best_decode_backend()
    shown = "sage_attn's own Triton decode" if name == "triton" else name
    report.add("decode under sage_attn", f"{shown} ({why})")


def _patch_lines(report: Report, where: str, probe: dict[str, Any], native_plugins: bool) -> None:
    for point, text in probe["patches"].items():
        level, fix = OK, ""
        if text == "not triggered":
            if point == "plugin":
                text = (
                    "not triggered (SGLang loads entry-point plugins only in its launcher and "
                    "schedulers)"
                    if native_plugins
                    else "not needed: this SGLang release has no entry-point plugins"
                )
            elif point in ("arg_choices", "decode_default", "model_runner", "registry"):
                text = "not triggered (module not imported or absent in this release)"
        elif text.startswith("lost"):
            level, fix = BROKEN, "do not reload SGLang modules in a process that serves sage_attn"
        elif not status.is_ok(text):
            level, fix = BROKEN, "report this with `sglang-sage doctor --json` output"
        report.add(f"patch {point} [{where}]", text, level, fix)
    for error in probe["errors"]:
        report.add(
            f"import [{where}]", error, BROKEN, "fix the SGLang installation (see the error)"
        )
    usable = probe["in_choices"] is not False and (
        probe["registered"] is not False and not probe["errors"]
    )
    report.add(
        f"sage_attn registered [{where}]",
        "yes" if usable else "no",
        OK if usable else BROKEN,
        "" if usable else "reinstall sglang-sage-ext; check SGLANG_SAGE_EXT_DISABLE",
    )


def _isolated(report: Report, name: str, check: Callable[..., Any], *args: Any) -> Any:
    """Run one check; whatever it raises becomes a FAIL line, so doctor itself never raises."""
    try:
        return check(report, *args)
    except (Exception, SystemExit) as exc:
        report.add(
            name,
            f"check failed: {import_check.one_line(exc)}",
            BROKEN,
            "report this with `sglang-sage doctor --json` output",
        )
        return None


def _sglang(report: Report) -> compat.Features | None:
    """Version, import and release features of SGLang; None when nothing later can work."""
    if _bootstrap.disabled():
        report.add(
            "bootstrap",
            f"disabled by {_bootstrap.DISABLE_ENV}",
            BROKEN,
            f"unset {_bootstrap.DISABLE_ENV} to use sage_attn",
        )
        return None
    version = compat.installed_version("sglang")
    if version is None:
        report.add("sglang", "not installed", BROKEN, f"pip install '{SGLANG_REQUIREMENT}'")
        return None
    failure = import_check.import_sglang()
    if failure is not None:
        value, fix = import_check.explain(*failure, version)
        report.add("sglang", value, BROKEN, fix)
        return None
    features = compat.features()
    if features.in_supported_range:
        report.add("sglang", f"{version} (supported: {SGLANG_REQUIREMENT})")
    else:
        report.add(
            "sglang",
            f"{version} is outside the tested range {SGLANG_REQUIREMENT}",
            DEGRADED,
            "sage_attn will still try; install a supported SGLang if it misbehaves",
        )
    report.add(
        "sglang features",
        f"registry={features.has_attention_registry} plugins={features.has_native_plugins} "
        f"kernel={features.extend_kernel_module} kv_write={features.kv_write_api!r} "
        f"graph_hooks={features.graph_hooks}",
    )
    return features


def _this_process(report: Report, native_plugins: bool) -> None:
    probe = probe_registration()
    report.add("bootstrap [this process]", probe["bootstrap"])
    _patch_lines(report, "this process", probe, native_plugins)


def _spawn_child(report: Report, native_plugins: bool) -> None:
    try:
        child = probe_in_child()
    except Exception as exc:
        report.add("spawn child", f"failed: {import_check.one_line(exc)}", BROKEN, "see the error")
        return
    report.add("bootstrap [spawn child]", child["bootstrap"])
    if not child["bootstrap"].startswith("hooks installed"):
        report.checks[-1].level = BROKEN
        report.checks[-1].fix = (
            "the .pth bootstrap did not run in a spawned interpreter: reinstall "
            "sglang-sage-ext with pip (not `python -S`, not an editable install)"
        )
    _patch_lines(report, "spawn child", child, native_plugins)


def _environment(report: Report) -> None:
    """One line per SGLANG_SAGE_* variable that is set; invalid values and unknown names FAIL."""
    problems = env.validate()
    for name in env.set_names():
        raw = os.environ[name]
        var = env.BY_NAME.get(name)
        if var is None:
            close = difflib.get_close_matches(name, list(env.BY_NAME), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            fix = f"{hint}known: {', '.join(env.BY_NAME)}"
            report.add(name, f"{raw!r}: unknown variable (a typo?)", BROKEN, fix)
        elif name in problems:
            report.add(
                name, problems[name], BROKEN, f"set one of the allowed values or unset {name}"
            )
        elif var.scope != "package":
            report.add(name, f"{raw!r}: {var.meaning}; {var.scope}")
        elif name == fallback.FORCE_FALLBACK_ENV and fallback.forced_off():
            report.add(
                name,
                f"{raw!r} = on: every extend batch runs on the exact native path",
                DEGRADED,
                f"unset {name} to use the Sage path",
            )
        else:
            used = var.parse(raw)[0]
            shown = ("on" if used else "off") if var.kind == env.BOOL else used
            report.add(name, f"{raw!r} = {shown}: {var.meaning}")


def run(*, spawn_child: bool = True) -> Report:
    """Collect every check (imports SGLang; may take a few seconds). Never raises."""
    report = Report()
    report.add("sglang-sage-ext", __version__)
    report.add("python", sys.version.split()[0])
    features = _isolated(report, "sglang", _sglang)
    if features is not None:
        _isolated(report, "torch", _gpu)
        _isolated(report, "sageattention", _sageattention)
        _isolated(report, "extend under sage_attn", _extend_route)
        _isolated(report, "decode under sage_attn", _decode)
        _isolated(report, "routing under sage_attn", _routing)
        _isolated(report, "Sage extend kernel", _kernel)
        _isolated(report, "patches [this process]", _this_process, features.has_native_plugins)
        if spawn_child:
            _isolated(report, "spawn child", _spawn_child, features.has_native_plugins)
    _isolated(report, "environment", _environment)
    return report


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (SGLang's import, spawned children) to stderr.

    `--json` promises a parseable stdout; a library that prints while doctor imports it
    would break that.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no real file descriptors (embedded): Python-level redirect only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def format_report(report: Report) -> str:
    """Human-readable lines, one check a line, fixes indented below."""
    marks = {OK: "ok  ", DEGRADED: "WARN", BROKEN: "FAIL"}
    width = max(len(c.name) for c in report.checks)
    lines = []
    for check in report.checks:
        lines.append(f"[{marks[check.level]}] {check.name:<{width}}  {check.value}")
        if check.fix:
            lines.append(f"       {'':<{width}}  fix: {check.fix}")
    verdict = {
        OK: "sage_attn is ready: launch with --attention-backend sage_attn",
        DEGRADED: "sage_attn is accepted, but extend batches will run on the exact native path",
        BROKEN: "sage_attn cannot be used here, or not as configured; see the FAIL lines",
    }[report.exit_code]
    lines.append(f"=> {verdict} (exit {report.exit_code})")
    return "\n".join(lines)
