"""Every SGLANG_SAGE_* variable: declared once (env.py), validated by doctor, tolerated at runtime.

Bad values are FAIL lines in doctor (with the allowed values) and, at runtime, one warning line
and the default; good values are ok; the runtime and doctor parse them the same way.
"""

from __future__ import annotations

import logging
import re
import types
from pathlib import Path

import pytest

from sglang_sage_ext import _bootstrap, env
from sglang_sage_ext.backend import fallback
from sglang_sage_ext.cli import doctor
from sglang_sage_ext.cli.doctor import BROKEN, DEGRADED, OK
from sglang_sage_ext.integration import native as decode_backend
from sglang_sage_ext.kernels import sage_ops as kernels

CHECKOUT = Path(__file__).resolve().parents[1]

# (variable, value, valid?, text every problem must contain)
TABLE = [
    ("SGLANG_SAGE_DECODE_BACKEND", "flashnfer", False, "auto|fa3|flashinfer|triton"),
    ("SGLANG_SAGE_DECODE_BACKEND", "FlashInfer", True, ""),
    ("SGLANG_SAGE_DECODE_BACKEND", "auto", True, ""),
    ("SGLANG_SAGE_FORCE_FALLBACK", "0", True, ""),
    ("SGLANG_SAGE_FORCE_FALLBACK", "maybe", False, "1|true|yes|on"),
    ("SGLANG_SAGE_MIN_TOKENS", "abc", False, "an integer >= 1"),
    ("SGLANG_SAGE_MIN_TOKENS", "0", False, "an integer >= 1"),
    ("SGLANG_SAGE_MIN_TOKENS", "64", True, ""),
    ("SGLANG_SAGE_EXTEND_PV", "fp4", False, "fp16|fp8|auto"),
    ("SGLANG_SAGE_EXTEND_PV", "fp8", True, ""),
    ("SGLANG_SAGE_Q_SMOOTH", "always", False, "auto|on|off"),
    ("SGLANG_SAGE_Q_SMOOTH", "0", True, ""),
    ("SGLANG_SAGE_Q_SMOOTH", "On", True, ""),
    ("SGLANG_SAGE_PAGED_EXTEND", "maybe", False, "all|prefix|off"),
    ("SGLANG_SAGE_PAGED_EXTEND", "0", True, ""),
    ("SGLANG_SAGE_EXT_DISABLE", "ture", False, "0|false|no|off"),
    ("SGLANG_SAGE_EXT_DEBUG", "1", True, ""),
    ("SGLANG_SAGE_COST_MODEL", "never", False, "auto|off"),
    ("SGLANG_SAGE_COST_MODEL", "off", True, ""),
    ("SGLANG_SAGE_CPU_INTERPRET", "on", True, ""),
    ("SGLANG_SAGE_CPU_SHIMS", "yes", False, "0|1"),
    ("SGLANG_SAGE_STATS_DIR", "/no/such/dir/for/stats", False, "an existing, writable directory"),
    ("SGLANG_SAGE_MIN_TOKEN", "32", False, "SGLANG_SAGE_MIN_TOKENS"),  # unknown name (a typo)
]


@pytest.mark.parametrize(("name", "raw", "valid", "allowed"), TABLE)
def test_validate_table(name, raw, valid, allowed):
    problems = env.validate({name: raw})
    if valid:
        assert problems == {}
    else:
        assert allowed in problems[name]


@pytest.mark.parametrize(("name", "raw", "valid", "allowed"), TABLE)
def test_doctor_line_table(monkeypatch, name, raw, valid, allowed):
    for var in env.set_names():
        monkeypatch.delenv(var)
    monkeypatch.setenv(name, raw)
    report = doctor.Report()
    doctor._environment(report)
    [check] = report.checks
    assert check.name == name
    if valid:
        assert check.level == OK
    else:
        assert check.level == BROKEN
        assert allowed in check.value + check.fix
    assert "(exit" in doctor.format_report(report)


@pytest.mark.parametrize(
    ("raw", "forced"), [("0", False), ("off", False), ("1", True), ("", False)]
)
def test_force_fallback_zero_is_not_forced(monkeypatch, raw, forced):
    for var in env.set_names():
        monkeypatch.delenv(var)
    monkeypatch.setenv(fallback.FORCE_FALLBACK_ENV, raw)
    assert fallback.forced_off() is forced
    report = doctor.Report()
    doctor._environment(report)
    if raw:
        [check] = report.checks
        assert check.level == (DEGRADED if forced else OK)
        assert ("= on" in check.value) is forced


def _runtime(monkeypatch):
    monkeypatch.setattr(
        decode_backend, "native_decode_problems", lambda: dict.fromkeys(decode_backend.PREFERENCE)
    )
    return {
        "SGLANG_SAGE_DECODE_BACKEND": lambda: decode_backend.best_decode_backend()[0],
        "SGLANG_SAGE_FORCE_FALLBACK": fallback.forced_off,
        "SGLANG_SAGE_MIN_TOKENS": fallback.min_tokens,
        "SGLANG_SAGE_EXTEND_PV": kernels.paged_pv_mode,
        "SGLANG_SAGE_Q_SMOOTH": kernels.paged_q_smooth,
        "SGLANG_SAGE_PAGED_EXTEND": fallback.paged_kernel_mode,
    }


# (variable, bad value, value the runtime uses, value the warning names)
RUNTIME = [
    ("SGLANG_SAGE_DECODE_BACKEND", "flashnfer", "fa3", "auto"),  # auto: the first usable one
    ("SGLANG_SAGE_FORCE_FALLBACK", "maybe", False, False),
    ("SGLANG_SAGE_MIN_TOKENS", "abc", 16, 16),
    ("SGLANG_SAGE_EXTEND_PV", "fp4", "fp16", "fp16"),
    ("SGLANG_SAGE_Q_SMOOTH", "always", "auto", "auto"),
    ("SGLANG_SAGE_PAGED_EXTEND", "maybe", "all", "all"),
]


@pytest.mark.parametrize(("name", "raw", "used", "logged"), RUNTIME)
def test_runtime_uses_the_default_and_warns_once(monkeypatch, caplog, name, raw, used, logged):
    getters = _runtime(monkeypatch)
    monkeypatch.setenv(name, raw)
    monkeypatch.setattr(env, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="sglang_sage_ext"):
        assert getters[name]() == used
        assert getters[name]() == used
    lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"{name}={raw!r}" in lines[0] and "allowed:" in lines[0]
    assert f"using {logged!r}" in lines[0]


def test_decode_typo_never_reaches_sglang(monkeypatch):
    monkeypatch.setenv(decode_backend.DECODE_ENV, "flashnfer")
    monkeypatch.setattr(
        decode_backend,
        "native_decode_problems",
        lambda: {"fa3": "no", "flashinfer": None, "triton": None},
    )
    args = types.SimpleNamespace(
        attention_backend="sage_attn",
        decode_attention_backend=None,
        prefill_attention_backend=None,
        speculative_algorithm=None,
        device="cuda",
    )
    line = decode_backend.choose(args)
    assert args.decode_attention_backend == "flashinfer"
    assert "flashnfer" not in line


@pytest.mark.parametrize("raw", ["1", "true", " Yes ", "on", "0", "off", "", "ture", "2"])
def test_bootstrap_disable_parses_like_env(monkeypatch, raw):
    monkeypatch.setenv(_bootstrap.DISABLE_ENV, raw)
    assert _bootstrap.disabled() is env.flag(_bootstrap.DISABLE_ENV)


def test_constants_match_the_declarations():
    assert _bootstrap._TRUE == env.TRUE_VALUES
    assert env.BY_NAME[fallback.MIN_TOKENS_ENV].default == fallback.DEFAULT_MIN_TOKENS
    assert env.BY_NAME[kernels.PAGED_PV_ENV].default == kernels.DEFAULT_PAGED_PV
    assert env.BY_NAME[kernels.Q_SMOOTH_ENV].default == kernels.DEFAULT_Q_SMOOTH
    assert fallback.PAGED_MODES == ("all", "prefix", "off")
    assert env.BY_NAME[decode_backend.DECODE_ENV].choices[1:] == decode_backend.PREFERENCE


def test_every_variable_the_package_reads_is_declared():
    """grep the package: any SGLANG_SAGE_* name in its source must be in env.VARIABLES, and the
    README's table must document every variable the package itself reads."""
    names = set()
    for path in (CHECKOUT / "sglang_sage_ext").rglob("*.py"):
        names.update(re.findall(r"SGLANG_SAGE_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    assert names - set(env.BY_NAME) == set()
    readme = (CHECKOUT / "README.md").read_text()
    package_vars = {v.name for v in env.VARIABLES if v.scope == "package"}
    assert {n for n in package_vars if f"`{n}" not in readme} == set()
