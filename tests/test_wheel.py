"""`python -m build` makes a wheel and an sdist; the wheel's `.pth` bootstraps a fresh venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.release_independent  # imports no SGLang (tests/_selection.py)


def _run(*cmd: str | Path, cwd: Path | None = None, env: dict | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


# bytes; raw logs, tarballs and big data stay in git (pyproject.toml). 318 KB on 2026-11-27
# with the Hopper CUDA kernel's source and its tests, 353 KB on 2026-11-28 (Q smoothing in that
# kernel, its tests, results READMEs), 426 KB later that day (the kernel's phase trace and
# bench/sm90_trace.py, two more results READMEs); a raw device log would add megabytes.
SDIST_LIMIT = 480_000


def test_wheel_and_sdist_contents(dist):
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    assert sdists[0].stat().st_size < SDIST_LIMIT, sdists[0].stat().st_size
    with tarfile.open(sdists[0]) as tar:
        members = tar.getnames()
    assert not [m for m in members if m.endswith((".log", ".tar.gz", ".jsonl")) or "/.carry/" in m]
    assert any(m.endswith("bench/results/README.md") for m in members)
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "sglang_sage_ext.pth" in names  # at the wheel root -> site-packages root
    assert "sglang_sage_ext/_bootstrap.py" in names
    csrc = Path(__file__).resolve().parents[1] / "sglang_sage_ext" / "kernels" / "csrc"
    sources = sorted(p.name for p in csrc.iterdir() if p.suffix in (".cu", ".cuh"))
    assert {"sage_sm90_ws.cu", "sage_sm90_common.cuh", "sage_sm90_wgmma.cuh"} <= set(sources)
    for src in sources:  # every kernel source and header: built on the user's machine
        assert f"sglang_sage_ext/kernels/csrc/{src}" in names, src
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheels[0]).read(entry_points).decode()
    assert (
        "[sglang.srt.plugins]" in text
        and "sage_attn = sglang_sage_ext.integration.plugin:register" in text
    )
    assert "sglang-sage = sglang_sage_ext.cli.main:main" in text


def test_fresh_venv_runs_the_bootstrap_from_the_pth(dist, tmp_path):
    venv = tmp_path / "venv"
    uv = shutil.which("uv")
    python = venv / "bin" / "python"
    wheel = next(dist.glob("*.whl"))
    deps = ["wrapt>=2", "click", "importlib-metadata"]  # not sageattention: it pulls torch
    if uv:
        _run(uv, "venv", "-q", "-p", sys.executable, venv)
        _run(uv, "pip", "install", "-q", "-p", python, "--no-deps", wheel)
        _run(uv, "pip", "install", "-q", "-p", python, *deps)
    else:
        _run(sys.executable, "-m", "venv", venv)
        _run(python, "-m", "pip", "install", "-q", "--no-deps", wheel)
        _run(python, "-m", "pip", "install", "-q", *deps)
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    )
    assert (site / "sglang_sage_ext.pth").is_file()
    probe = (
        "import json, sys; import sglang_sage_ext._bootstrap as b; s = dict(b.state); "
        "e = None\n"
        "try:\n import sglang\nexcept ModuleNotFoundError as exc:\n e = str(exc)\n"
        "print(json.dumps([s, 'wrapt' in sys.modules, e, b.state['bootstrap']]))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    state, wrapt_loaded, error, after = json.loads(_run(python, "-c", probe, env=env))
    assert state == {"bootstrap": "armed (waiting for import sglang)"}  # before the import
    assert not wrapt_loaded  # inert: not even wrapt was imported
    assert error == "No module named 'sglang'"  # no SGLang: a plain ImportError, nothing else
    assert after == "inert (sglang not installed)"
    off = json.loads(_run(python, "-c", probe, env={**env, "SGLANG_SAGE_EXT_DISABLE": "1"}))
    assert off[0] == {"bootstrap": "disabled by SGLANG_SAGE_EXT_DISABLE"}
    doctor = subprocess.run(
        [venv / "bin" / "sglang-sage", "doctor", "--no-spawn"], capture_output=True, text=True
    )
    assert doctor.returncode == 2
    assert "sglang" in doctor.stdout and "not installed" in doctor.stdout
