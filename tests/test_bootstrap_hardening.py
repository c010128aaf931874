"""The bootstrap patches only the real SGLang, survives re-execution of a patched module (or says
the patch is gone), and writes stats files in a shared directory without following symlinks."""

from __future__ import annotations

import json
import os
import stat
import types
from pathlib import Path

import pytest

from sglang_sage_ext.backend import stats
from sglang_sage_ext.integration import compat, hooks
from tests._subproc import run_python, write_tree

# (case, files of a user's own package named sglang, module to import, patch point)
UNRELATED = [
    (
        "server_args_without_ServerArgs",
        {
            "sglang/__init__.py": "",
            "sglang/srt/__init__.py": "",
            "sglang/srt/server_args.py": "ATTENTION_BACKEND_CHOICES = ['mine']\n",
        },
        "sglang.srt.server_args",
        "cli",
    ),
    (
        "server_args_with_other_ServerArgs",
        {
            "sglang/__init__.py": "",
            "sglang/srt/__init__.py": "",
            "sglang/srt/server_args.py": "class ServerArgs:\n    x = 1\n",
        },
        "sglang.srt.server_args",
        "decode_default",
    ),
    (
        "registry_without_register_function",
        {
            "sglang/__init__.py": "",
            "sglang/srt/__init__.py": "",
            "sglang/srt/layers/__init__.py": "",
            "sglang/srt/layers/attention/__init__.py": "",
            "sglang/srt/layers/attention/attention_registry.py": "ATTENTION_BACKENDS = {}\n",
        },
        "sglang.srt.layers.attention.attention_registry",
        "registry",
    ),
]


@pytest.mark.parametrize(
    ("files", "module", "point"), [c[1:] for c in UNRELATED], ids=[c[0] for c in UNRELATED]
)
def test_unrelated_sglang_package_gets_no_patch_and_no_output(tmp_path, files, module, point):
    import subprocess
    import sys

    root = write_tree(tmp_path / "mine", files)
    code = (
        f"import json, {module} as m; from sglang_sage_ext.integration import status; "
        "print(json.dumps([status.snapshot(), getattr(m, 'ATTENTION_BACKEND_CHOICES', None), "
        "sorted(getattr(m, 'ATTENTION_BACKENDS', {}))]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGLANG_SAGE_")}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(root)},
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    snapshot, choices, backends = json.loads(proc.stdout)
    assert snapshot[point].startswith("not needed: not SGLang's module"), snapshot
    assert choices in (None, ["mine"])
    assert backends == []


class _Dist:
    def __init__(self, root: Path) -> None:
        self.root, self.version = root, "9.9.9"

    def locate_file(self, name: str) -> Path:
        return self.root / name


@pytest.mark.parametrize(
    ("dist", "inside", "has_attrs", "real"),
    [
        (False, False, True, False),  # no sglang distribution at all
        (True, False, True, True),  # a source checkout on PYTHONPATH: looks like SGLang
        (True, False, False, False),  # a user's own package: leave it alone, silently
        (True, True, False, True),  # SGLang's own file without the attribute: fail loudly
    ],
)
def test_real_sglang_decision(monkeypatch, tmp_path, dist, inside, has_attrs, real):
    monkeypatch.setattr(hooks, "_sglang_distribution", lambda: _Dist(tmp_path) if dist else None)
    folder = tmp_path / "sglang" if inside else tmp_path / "elsewhere" / "sglang"
    module = types.ModuleType("sglang.srt.server_args")
    module.__file__ = str(folder / "srt" / "server_args.py")
    if has_attrs:
        module.ServerArgs = type("ServerArgs", (), {"add_cli_args": staticmethod(print)})
    reason = hooks.not_sglang_reason(module, ("ServerArgs.add_cli_args",))
    assert (reason is None) is real


RELOADS = {
    "reload": "importlib.reload(m)",
    "del_and_import": "del sys.modules[name]; m = importlib.import_module(name)",
}


def _reload_code(name: str, how: str, drop_watcher: bool) -> str:
    return (
        "import importlib, json, sys\n"
        f"name = {name!r}\n"
        "m = importlib.import_module(name)\n"
        "from sglang_sage_ext.cli import doctor\n"
        "from sglang_sage_ext.integration import hooks, status\n"
        + ("sys.meta_path.remove(hooks._WATCHER)\n" if drop_watcher else "")
        + f"{RELOADS[how]}\n"
        "m = sys.modules[name]\n"
        "applied = [h.point for h in hooks.HOOKS if h.module == name "
        "and hooks._resolve(h.verify)(m)]\n"
        "print(json.dumps([status.snapshot(), applied]))\n"
    )


def _patched_module() -> tuple[str, list[str]]:
    if compat.features().has_attention_registry:
        return "sglang.srt.layers.attention.attention_registry", ["registry"]
    return "sglang.srt.server_args", ["cli", "decode_default"]


@pytest.mark.parametrize("how", sorted(RELOADS))
@pytest.mark.parametrize("name", ["sglang.srt.server_args", "registry_or_model_runner"])
def test_reexecuted_module_is_patched_again(name, how):
    name, points = (
        ("sglang.srt.server_args", ["cli", "decode_default"])
        if name == "sglang.srt.server_args"
        else _patched_module()
    )
    snapshot, applied = json.loads(run_python(_reload_code(name, how, drop_watcher=False)))
    assert applied == points
    for point in points:
        assert snapshot[point].startswith("applied"), snapshot[point]
        assert "re-applied" in snapshot[point]


def test_lost_patch_is_reported_not_claimed():
    """Without the re-execution watcher the patch is gone, and the status says so."""
    code = _reload_code("sglang.srt.server_args", "reload", drop_watcher=True)
    snapshot, applied = json.loads(run_python(code))
    assert applied == []
    for point in ("cli", "decode_default"):
        assert snapshot[point].startswith("lost:"), snapshot[point]


# ---- stats files in a shared directory ----


def _stats(tmp_path, monkeypatch) -> stats.ExtendStats:
    monkeypatch.setenv(stats.STATS_DIR_ENV, str(tmp_path))
    counters = stats.ExtendStats()
    counters.sage_calls = 3
    return counters


def test_symlink_at_the_final_name_is_replaced_not_followed(tmp_path, monkeypatch):
    victim = tmp_path.parent / f"{tmp_path.name}-victim.txt"
    victim.write_text("precious")
    final = tmp_path / f"sage_stats.{os.getpid()}.json"
    final.symlink_to(victim)
    _stats(tmp_path, monkeypatch).flush()
    assert victim.read_text() == "precious"
    assert not final.is_symlink()
    assert json.loads(final.read_text())["sage_calls"] == 3
    assert stat.S_IMODE(final.stat().st_mode) == 0o600


def test_symlink_at_the_temp_name_is_not_followed(tmp_path, monkeypatch, caplog):
    victim = tmp_path.parent / f"{tmp_path.name}-victim.txt"
    victim.write_text("precious")
    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)  # a predictable temp name
    final = tmp_path / f"sage_stats.{os.getpid()}.json"
    (tmp_path / f".{final.name}.{'00' * 6}.tmp").symlink_to(victim)
    counters = _stats(tmp_path, monkeypatch)
    counters.flush()  # must not raise: statistics never break serving
    counters.flush()
    assert victim.read_text() == "precious"
    assert not final.exists()
    assert len([r for r in caplog.records if "cannot write stats" in r.getMessage()]) == 1


def test_invalid_stats_dir_is_warned_once_and_ignored(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(stats.env, "_warned", set())
    counters = _stats(tmp_path / "missing", monkeypatch)
    counters.flush()
    counters.flush()
    assert not (tmp_path / "missing").exists()
    assert len([r for r in caplog.records if stats.STATS_DIR_ENV in r.getMessage()]) == 1


def test_reading_ignores_symlinks_fifos_and_junk(tmp_path):
    good = {"pid": 1, "sage_calls": 2, "sage_tokens": 20, "sage_kernels": {"sage_paged": 2}}
    (tmp_path / "sage_stats.1.json").write_text(json.dumps(good))
    outside = tmp_path.parent / f"{tmp_path.name}-outside.json"
    outside.write_text(json.dumps({**good, "pid": 2, "sage_calls": 1000}))
    (tmp_path / "sage_stats.2.json").symlink_to(outside)
    os.mkfifo(tmp_path / "sage_stats.3.json")  # would block a plain open()
    (tmp_path / "sage_stats.4.json").write_text("[1, 2]")
    (tmp_path / "sage_stats.5.json").write_text('{"sage_calls": "many"}')
    (tmp_path / "sage_stats.6.json").write_text("not json")
    total = stats.read_stats_dir(tmp_path)
    assert total["pids"] == [1]
    assert total["sage_calls"] == 2
    assert total["sage_kernels"] == {"sage_paged": 2}
