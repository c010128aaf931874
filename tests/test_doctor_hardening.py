"""`sglang-sage doctor` on broken installs: one FAIL line, exit 2, no traceback, valid JSON.

Each case puts a fake `sglang` package in front of the real one (PYTHONPATH) whose import
raises what broken installs raise, and runs the real console script in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sglang_sage_ext import env
from sglang_sage_ext.cli import doctor
from sglang_sage_ext.cli.doctor import BROKEN, DEGRADED, OK
from tests._subproc import write_tree

SCRIPT = Path(sys.executable).parent / "sglang-sage"

# (case, files of the fake package, text the FAIL line must hold, text the fix must hold)
BROKEN_IMPORTS = [
    (
        "torchvision_mismatch",
        {"sglang/__init__.py": 'raise RuntimeError("operator torchvision::nms does not exist")\n'},
        "RuntimeError: operator torchvision::nms does not exist",
        "reinstall the torchvision that matches your torch",
    ),
    (
        "keyerror_from_find_spec",
        {"sglang/__init__.py": "raise KeyError('sglang')\n"},
        "KeyError: 'sglang'",
        "half-installed",
    ),
    (
        "syntax_error",
        {"sglang/__init__.py": "def broken(:\n    pass\n"},
        "SyntaxError",
        "does not parse under Python",
    ),
    (
        "missing_dependency",
        {"sglang/__init__.py": "import numpy_is_not_installed_here\n"},
        "ModuleNotFoundError: No module named 'numpy_is_not_installed_here'",
        "pip install numpy_is_not_installed_here",
    ),
    (
        "system_exit",
        {"sglang/__init__.py": "raise SystemExit(3)\n"},
        "SystemExit: 3",
        "fix the SGLang installation",
    ),
    (
        "server_args_breaks",
        {
            "sglang/__init__.py": "",
            "sglang/srt/__init__.py": "",
            "sglang/srt/server_args.py": 'raise RuntimeError("operator torchvision::nms does '
            'not exist")\n',
        },
        "`import sglang.srt.server_args` fails: RuntimeError",
        "torchvision==",
    ),
]


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without SGLANG_SAGE_* (but the CPU-CI shims switch), plus `extra`."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(env.PREFIX)}
    if os.environ.get("SGLANG_SAGE_CPU_SHIMS"):
        keep["SGLANG_SAGE_CPU_SHIMS"] = os.environ["SGLANG_SAGE_CPU_SHIMS"]
    keep.update(extra)
    return keep


def _doctor(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "doctor", "--no-spawn", *args],
        capture_output=True,
        text=True,
        env=_clean_env(**extra),
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("files", "failure", "fix"),
    [case[1:] for case in BROKEN_IMPORTS],
    ids=[case[0] for case in BROKEN_IMPORTS],
)
def test_broken_sglang_import_is_one_fail_line(tmp_path, files, failure, fix):
    fake = write_tree(tmp_path / "fake", files)
    text = _doctor(tmp_path, PYTHONPATH=str(fake))
    output = text.stdout + text.stderr
    assert text.returncode == 2, output
    assert "Traceback" not in output
    fails = [line for line in text.stdout.splitlines() if line.startswith("[FAIL]")]
    assert len(fails) == 1, text.stdout
    assert failure in fails[0]
    assert fix in text.stdout
    # the fake shadows the installed SGLang: doctor says so
    assert "not the installed sglang" in text.stdout

    as_json = _doctor(tmp_path, "--json", PYTHONPATH=str(fake))
    assert as_json.returncode == 2
    assert "Traceback" not in as_json.stdout + as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["exit_code"] == 2
    broken = [c for c in report["checks"] if c["level"] == BROKEN]
    assert len(broken) == 1 and failure in broken[0]["value"] and fix in broken[0]["fix"]


def test_torchvision_failure_shows_the_versions_involved(tmp_path):
    fake = write_tree(tmp_path / "fake", BROKEN_IMPORTS[0][1])
    report = json.loads(_doctor(tmp_path, "--json", PYTHONPATH=str(fake)).stdout)
    value = next(c["value"] for c in report["checks"] if c["level"] == BROKEN)
    assert "installed: torch " in value and "torchvision " in value and "transformers " in value


def test_json_with_invalid_variables_is_valid_and_exit_2(tmp_path):
    run = _doctor(
        tmp_path,
        "--json",
        SGLANG_SAGE_DECODE_BACKEND="flashnfer",
        SGLANG_SAGE_MIN_TOKENS="abc",
        SGLANG_SAGE_FORCE_FALLBACK="0",
    )
    assert "Traceback" not in run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["exit_code"] == 2 == run.returncode
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["SGLANG_SAGE_DECODE_BACKEND"]["level"] == BROKEN
    assert "auto|fa3|flashinfer|triton" in by_name["SGLANG_SAGE_DECODE_BACKEND"]["value"]
    assert by_name["SGLANG_SAGE_MIN_TOKENS"]["level"] == BROKEN
    assert by_name["SGLANG_SAGE_FORCE_FALLBACK"]["level"] == OK


def _raise(report):
    raise RuntimeError("boom inside a check")


def test_a_crashing_check_becomes_a_fail_line():
    report = doctor.Report()
    doctor._isolated(report, "gpu", _raise)
    doctor._isolated(report, "exit", lambda report: sys.exit(4))
    assert [(c.name, c.level) for c in report.checks] == [("gpu", BROKEN), ("exit", BROKEN)]
    assert "RuntimeError: boom inside a check" in report.checks[0].value
    assert report.exit_code == 2
    assert "(exit 2)" in doctor.format_report(report)


@pytest.mark.parametrize(
    ("status_text", "level"),
    [
        ("applied: ServerArgs.add_cli_args wrapped", OK),
        ("not needed: not SGLang's module (x)", OK),
        ("failed: AttributeError: y", BROKEN),
        ("lost: the module was executed again after the patch (was: applied)", BROKEN),
    ],
)
def test_patch_status_levels(status_text, level):
    report = doctor.Report()
    probe = {
        "patches": {"cli": status_text},
        "errors": [],
        "in_choices": None,
        "registered": None,
    }
    doctor._patch_lines(report, "this process", probe, native_plugins=True)
    assert report.checks[0].level == level
    assert DEGRADED not in [c.level for c in report.checks]


def test_every_check_runs_on_the_real_sglang_of_this_env():
    """No check of a healthy install may crash (a crashing check reads "check failed: ...");
    on CPU the routing line says Sage never runs here instead of showing a table."""
    report = doctor.run(spawn_child=False)
    checks = {c["name"]: c for c in report.as_dict()["checks"]}
    crashed = [c for c in checks.values() if str(c.get("value", "")).startswith("check failed")]
    assert not crashed, crashed
    for name in ("extend under sage_attn", "decode under sage_attn", "routing under sage_attn"):
        assert name in checks, sorted(checks)
    import torch

    if not torch.cuda.is_available() and not os.environ.get("SGLANG_SAGE_CPU_INTERPRET"):
        assert "no CUDA GPU" in checks["routing under sage_attn"]["value"]


def test_torchvision_fix_names_the_cpu_shims_on_a_cpu_torch():
    """On CPU torch the mismatched torchvision is also what SGLANG_SAGE_CPU_SHIMS=1 works around
    (the project's own CPU runs): the fix says so; on a CUDA torch it does not."""
    from sglang_sage_ext.cli.import_check import torchvision_fix
    from sglang_sage_ext.integration.compat import installed_version

    fix = torchvision_fix()
    cpu_torch = (installed_version("torch") or "").endswith("+cpu")
    assert ("SGLANG_SAGE_CPU_SHIMS=1" in fix) is cpu_torch, fix
