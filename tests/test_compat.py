"""Release detection, feature flags and head attributes against the installed SGLang."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tomllib

from sglang_sage_ext import package
from sglang_sage_ext.integration import compat

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.4.10.post2", (0, 4, 10)), ("0.5.17", (0, 5, 17)), ("0.5.23rc1", (0, 5, 23)), ("2", (2,))],
)
def test_parse_version(text, expected):
    assert compat.parse_version(text) == expected


def test_supported_range_is_declared_once():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["instruments"]
    assert [s.replace(" ", "") for s in extra] == [s.replace(" ", "") for s in package._instruments]


def test_features_match_the_installed_release():
    features = compat.features()
    version = features.version
    assert features.in_supported_range
    assert features.has_attention_registry == (version >= (0, 5))
    assert features.has_native_plugins == (version >= (0, 5, 11))
    assert features.has_backend_choices_list == (version >= (0, 5))
    kernel = compat.raw_extend_kernel()
    assert kernel.__name__ == "extend_attention_fwd"
    assert features.extend_kernel_module.startswith(
        "sglang.kernels." if version >= (0, 5, 17) else "sglang.srt.layers.attention.triton_ops"
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, compat.HeadConfig(8, 2, 2, 64, 64)),
        ({"v_head_dim": 128}, compat.HeadConfig(8, 2, 2, 64, 128)),
    ],
)
def test_head_config_on_real_radix_attention(kwargs, expected):
    from sglang.srt.layers.radix_attention import RadixAttention

    layer = RadixAttention(8, 64, 1 / math.sqrt(64), 2, 0, **kwargs)
    assert compat.head_config(layer) == expected
    assert not hasattr(layer, "tp_kv_head_num")  # the name the earlier attempt crashed on


def test_head_config_tolerates_the_lightllm_name():
    class LegacyLayer:
        tp_q_head_num, tp_kv_head_num, head_dim = 16, 4, 128

    assert compat.head_config(LegacyLayer()) == compat.HeadConfig(16, 4, 4, 128, 128)


def test_head_config_rejects_unknown_layers():
    class NotAttention:
        tp_q_head_num, head_dim = 16, 128

    with pytest.raises(AttributeError, match="tp_k_head_num"):
        compat.head_config(NotAttention())
