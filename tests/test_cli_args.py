"""`sage_attn` is accepted by all three attention-backend flags of the installed SGLang."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from sglang_sage_ext.integration.compat import BACKEND_NAME
from sglang_sage_ext.integration.patches import cli

FLAGS = ("--attention-backend", "--prefill-attention-backend", "--decode-attention-backend")


def _parser():
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    return parser


@pytest.mark.parametrize("flag", FLAGS)
def test_each_flag_parses(flag):
    args = _parser().parse_args(["--model-path", "m", flag, BACKEND_NAME])
    assert getattr(args, flag.lstrip("-").replace("-", "_")) == BACKEND_NAME


def test_all_three_flags_together():
    argv = ["--model-path", "m"]
    for flag in FLAGS:
        argv += [flag, BACKEND_NAME]
    args = _parser().parse_args(argv)
    assert (args.attention_backend, args.prefill_attention_backend) == (BACKEND_NAME,) * 2
    assert args.decode_attention_backend == BACKEND_NAME


def test_unknown_names_are_still_rejected(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--model-path", "m", "--attention-backend", "sage_atn"])
    assert "invalid choice" in capsys.readouterr().err


def test_patch_is_idempotent():
    import sglang.srt.server_args as module

    assert cli.apply(module) == "already applied"
    parser = _parser()
    assert cli.extend_parser(parser) == 0
    for action in parser._actions:
        if action.dest in cli.BACKEND_FLAGS:
            assert list(action.choices).count(BACKEND_NAME) == 1
    choices = getattr(module, "ATTENTION_BACKEND_CHOICES", None)
    if choices is not None:
        assert choices.count(BACKEND_NAME) == 1


def test_launch_server_help_lists_sage_attn_for_all_three_flags():
    """The real CLI in a fresh interpreter: only the .pth bootstrap can have patched it."""
    proc = subprocess.run(
        [sys.executable, "-m", "sglang.launch_server", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    help_text = " ".join(proc.stdout.split())
    for flag in FLAGS:
        start = help_text.index(flag + " {")
        choices = help_text[start : help_text.index("}", start)]
        assert BACKEND_NAME in choices, (flag, choices)
