"""Which backend serves decode under `--attention-backend sage_attn` (issue: decode speed)."""

from __future__ import annotations

import types

import pytest

from sglang_sage_ext.integration import native as decode_backend
from sglang_sage_ext.integration import status


def _args(**overrides):
    values = dict(
        attention_backend="sage_attn",
        prefill_attention_backend=None,
        decode_attention_backend=None,
        speculative_algorithm=None,
        device="cuda",
    )
    values.update(overrides)
    return types.SimpleNamespace(**values)


@pytest.fixture
def best(monkeypatch):
    """Pretend the machine offers `name` as best decode backend (the env override)."""

    def use(name: str) -> None:
        monkeypatch.setenv(decode_backend.DECODE_ENV, name)

    return use


def test_sage_attn_gets_the_best_native_decode_backend(best):
    best("flashinfer")
    args = _args()
    line = decode_backend.choose(args)
    assert (args.prefill_attention_backend, args.decode_attention_backend) == (
        "sage_attn",
        "flashinfer",
    )
    assert line.startswith("decode on flashinfer") and "--decode-attention-backend" in line


@pytest.mark.parametrize(
    "overrides",
    [
        {"decode_attention_backend": "triton"},
        {"decode_attention_backend": "sage_attn"},
        {"prefill_attention_backend": "fa3"},
    ],
)
def test_the_users_split_flags_win(best, overrides):
    best("flashinfer")
    args = _args(**overrides)
    before = dict(vars(args))
    assert decode_backend.choose(args).startswith("kept the user's split backends")
    assert vars(args) == before


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"speculative_algorithm": "EAGLE"}, "speculative decoding"),
        ({"device": "cpu"}, "device cpu"),
    ],
)
def test_single_backend_cases_keep_triton_decode(best, overrides, expected):
    best("flashinfer")
    args = _args(**overrides)
    assert expected in decode_backend.choose(args)
    assert args.decode_attention_backend is None


def test_other_backends_are_not_touched(best):
    best("flashinfer")
    args = _args(attention_backend="flashinfer")
    assert decode_backend.choose(args) is None
    assert args.decode_attention_backend is None


def test_triton_override_keeps_one_backend(best):
    best("triton")
    args = _args()
    assert decode_backend.choose(args).startswith("decode on sage_attn (Triton)")
    assert args.decode_attention_backend is None


def test_without_cuda_triton_is_best(monkeypatch):
    monkeypatch.delenv(decode_backend.DECODE_ENV, raising=False)
    monkeypatch.setattr(decode_backend, "_capability", lambda: None)
    problems = decode_backend.native_decode_problems()
    assert problems == {"fa3": "no CUDA GPU", "flashinfer": "no CUDA GPU", "triton": None}
    name, why = decode_backend.best_decode_backend()
    assert name == "triton" and "fa3: no CUDA GPU" in why


def test_real_server_args_go_through_the_patch(tiny_model_dir):
    """SGLang's own ServerArgs construction calls our __post_init__ wrapper."""
    from sglang.srt.server_args import ServerArgs

    args = ServerArgs(model_path=str(tiny_model_dir), attention_backend="sage_attn", device="cpu")
    if hasattr(args, "resolve_once"):  # 0.5.23 resolves lazily, as its launchers do
        args.resolve_once()
    assert args.attention_backend == "sage_attn"
    assert args.decode_attention_backend in (None, "sage_attn")
    assert status.snapshot()["decode_default"].startswith("applied")
    assert status._STATUS["decode_choice"] == "decode on sage_attn (Triton): device cpu"
