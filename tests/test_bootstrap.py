"""The `.pth` bootstrap: cheap at start, inert when switched off or without SGLang, and live in
`spawn` children that only import SGLang (as SGLang's schedulers do)."""

from __future__ import annotations

import json

from sglang_sage_ext.cli import doctor
from sglang_sage_ext.integration import hooks
from tests._subproc import run_python

HEAVY = ("wrapt", "torch", "sglang", "importlib_metadata", "importlib.metadata")


def test_interpreter_start_imports_nothing_heavy():
    out = run_python(
        "import sys, json; import sglang_sage_ext._bootstrap as b; "
        f"print(json.dumps([b.state, [m for m in {HEAVY!r} if m in sys.modules]]))",
        env={"SGLANG_SAGE_CPU_SHIMS": None},  # the CPU-CI shims import torch themselves
    )
    state, heavy = json.loads(out)
    assert state == {"bootstrap": "armed (waiting for import sglang)"}
    assert heavy == []


def test_first_sglang_import_installs_the_hooks():
    out = run_python(
        "import json, sglang.srt.server_args; import sglang_sage_ext._bootstrap as b; "
        "from sglang_sage_ext.integration import status; "
        "print(json.dumps([b.state['bootstrap'], status.snapshot()['cli']]))"
    )
    state, cli_status = json.loads(out)
    assert state == "hooks installed (first import of sglang)"
    assert cli_status.startswith("applied")


def test_switched_off_by_environment():
    code = (
        "import argparse, json; from sglang.srt.server_args import ServerArgs; "
        "p = argparse.ArgumentParser(); ServerArgs.add_cli_args(p); "
        "import sglang_sage_ext._bootstrap as b; "
        "a = [x for x in p._actions if x.dest == 'attention_backend'][0]; "
        "print(json.dumps([b.state['bootstrap'], 'sage_attn' in a.choices]))"
    )
    out = run_python(code, env={"SGLANG_SAGE_EXT_DISABLE": "1"})
    assert json.loads(out) == ["disabled by SGLANG_SAGE_EXT_DISABLE", False]


def test_hooks_install_once():
    import sglang.srt.server_args  # noqa: F401 - fires the bootstrap in this process

    assert hooks.install() is False


def test_spawn_child_that_only_imports_sglang_is_patched():
    child = doctor.probe_in_child()
    assert child["bootstrap"] == "hooks installed (first import of sglang)"
    assert child["errors"] == []
    assert child["in_choices"] in (True, None)  # None: 0.4.10 has inline argparse lists
    assert child["registered"] in (True, None)  # None: 0.4.10 has no registry
    patches = child["patches"]
    assert patches["cli"].startswith("applied")
    if child["registered"] is None:
        assert patches["model_runner"].startswith("applied")
    else:
        assert patches["registry"].startswith("applied")
