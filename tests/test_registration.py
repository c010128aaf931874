"""The release's own construction path reaches `create_sage_backend`."""

from __future__ import annotations

import types

import pytest

from sglang_sage_ext.integration import compat
from sglang_sage_ext.integration.compat import BACKEND_NAME
from sglang_sage_ext.integration.factory import SageAttnConfigError, create_sage_backend


def _runner(**attrs):
    from sglang.srt.model_executor.model_runner import ModelRunner

    runner = object.__new__(ModelRunner)  # no GPU, no model: only what the factory reads
    runner.model_config = types.SimpleNamespace(is_encoder_decoder=False)
    runner.use_mla_backend = False
    for name, value in attrs.items():
        setattr(runner, name, value)
    return runner


def _construct(runner, name=BACKEND_NAME):
    """Call SGLang's own string -> backend construction for this release."""
    try:
        from sglang.srt.model_executor.model_runner_components import attention_backend_setup
    except ImportError:  # before 0.5.17: a ModelRunner method
        return runner._get_attention_backend_from_str(name)
    return attention_backend_setup._build_full_attention_backend_from_str(
        model_runner=runner, backend_str=name, init_new_workspace=False
    )


def test_registry_holds_our_factory():
    if not compat.features().has_attention_registry:
        pytest.skip("no attention_registry in this release (0.4.10 uses the model_runner patch)")
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS

    assert ATTENTION_BACKENDS[BACKEND_NAME] is create_sage_backend


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"use_mla_backend": True}, "does not support MLA models"),
        (
            {"model_config": types.SimpleNamespace(is_encoder_decoder=True)},
            "does not support encoder-decoder",
        ),
    ],
)
def test_construction_path_reaches_our_factory(attrs, message):
    """An unsupported model gets our message with the fix, not a deep SGLang traceback."""
    with pytest.raises(SageAttnConfigError, match=message) as info:
        _construct(_runner(**attrs))
    assert "Fix: launch with --attention-backend" in str(info.value)


def test_construction_builds_the_sage_backend_class():
    """A supported model gets SageTritonAttnBackend.__init__ (which then needs a real runner)."""
    from sglang_sage_ext.backend.sage_backend import SageTritonAttnBackend

    calls = []
    original = SageTritonAttnBackend.__init__

    def spy(self, runner, *args, **kwargs):
        calls.append(type(self))
        raise RuntimeError("stop after construction was reached")

    SageTritonAttnBackend.__init__ = spy
    try:
        with pytest.raises(RuntimeError, match="stop after construction"):
            _construct(_runner())
    finally:
        SageTritonAttnBackend.__init__ = original
    assert calls == [SageTritonAttnBackend]


def test_backend_is_a_triton_backend():
    from sglang.srt.layers.attention.triton_backend import TritonAttnBackend

    from sglang_sage_ext.backend.sage_backend import SageTritonAttnBackend

    assert issubclass(SageTritonAttnBackend, TritonAttnBackend)


def test_other_backends_are_untouched():
    # 0.4.10's if/elif chain also reads server_args.attention_backend before it gives up
    runner = _runner(server_args=types.SimpleNamespace(attention_backend="no_such_backend"))
    with pytest.raises(ValueError, match="Invalid attention backend"):
        _construct(runner, name="no_such_backend")
