"""Every difference between SGLang releases that the extension cares about, decided once.

Versions come from importlib.metadata; module layout from `importlib.util.find_spec`.
The rest of the package reads these named flags instead of comparing versions itself.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any

from sglang_sage_ext.backend.fallback import HeadConfig
from sglang_sage_ext.package import (
    SUPPORTED_BELOW,
    SUPPORTED_MIN,
    installed_version,
    parse_version,
)

__all__ = ["HeadConfig", "installed_version", "parse_version"]

BACKEND_NAME = "sage_attn"

_OLD_EXTEND_KERNEL = "sglang.srt.layers.attention.triton_ops.extend_attention"
_NEW_EXTEND_KERNEL = "sglang.kernels.ops.attention.extend_attention"  # 0.5.17+


def module_exists(name: str) -> bool:
    """Whether `name` can be imported, without importing it (parents are imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Features:
    """The SGLang release in this interpreter, as named feature flags."""

    version_string: str | None
    version: tuple[int, ...]
    #: Inside [package.SUPPORTED_MIN, package.SUPPORTED_BELOW).
    in_supported_range: bool
    #: 0.5.5+: `attention_registry.register_attention_backend`; before: model_runner if/elif chain.
    has_attention_registry: bool
    #: 0.5.11+: `sglang.srt.plugins` entry points, loaded by launch_server, Engine and schedulers.
    has_native_plugins: bool
    #: 0.5.5+: `server_args.ATTENTION_BACKEND_CHOICES`; 0.4.10: three inline argparse lists.
    has_backend_choices_list: bool
    #: Module of SGLang's Triton extend kernel (moved to sglang.kernels in 0.5.17).
    extend_kernel_module: str
    #: How TritonAttnBackend writes K/V (inherited; reported by doctor).
    kv_write_api: str
    #: Which CUDA-graph hooks TritonAttnBackend implements (inherited; reported by doctor).
    graph_hooks: str
    #: `ForwardBatch.token_to_kv_pool` / `.attn_backend` exist (removed in 0.5.14).
    forward_batch_has_pools: bool


def _kv_write_api(version: tuple[int, ...]) -> str:
    if version >= (0, 5, 23):
        return "KVWriteLoc.for_batch + _set_kv_buffer"
    if version >= (0, 5, 17):
        return "self._set_kv_buffer(KVWriteLoc)"
    if version >= (0, 5, 14):
        return "self.token_to_kv_pool.set_kv_buffer(KVWriteLoc)"
    return "forward_batch.token_to_kv_pool.set_kv_buffer"


@functools.lru_cache(maxsize=1)
def features() -> Features:
    """Decide every flag once per process (call only after SGLang is importable)."""
    text = installed_version("sglang")
    version = parse_version(text) if text else ()
    new_kernel = module_exists(_NEW_EXTEND_KERNEL)
    return Features(
        version_string=text,
        version=version,
        in_supported_range=bool(version) and SUPPORTED_MIN <= version < SUPPORTED_BELOW,
        has_attention_registry=module_exists("sglang.srt.layers.attention.attention_registry"),
        has_native_plugins=module_exists("sglang.srt.plugins"),
        has_backend_choices_list=version >= (0, 5),
        extend_kernel_module=_NEW_EXTEND_KERNEL if new_kernel else _OLD_EXTEND_KERNEL,
        kv_write_api=_kv_write_api(version),
        graph_hooks="out_graph/in_graph" if version >= (0, 5, 14) else "capture/replay",
        forward_batch_has_pools=version < (0, 5, 14),
    )


def server_args_resolution_method(server_args_cls: type) -> str:
    """Where ServerArgs resolves backends: `resolve_once` (0.5.23: a msgspec Struct resolved
    lazily by the launcher, whose `__post_init__` is a no-op), else `__post_init__`."""
    return "resolve_once" if hasattr(server_args_cls, "resolve_once") else "__post_init__"


def raw_extend_kernel() -> Any:
    """SGLang's undecorated Triton `extend_attention_fwd` (for its signature)."""
    module = importlib.import_module(features().extend_kernel_module)
    return module.extend_attention_fwd


def head_config(layer: Any) -> HeadConfig:
    """Head counts and dims of a RadixAttention layer of any release.

    RadixAttention has always named them `tp_q_head_num`, `tp_k_head_num` and `tp_v_head_num`
    (the earlier in-tree attempt crashed on `tp_kv_head_num`, a LightLLM name); older forks
    and other layer classes may carry `tp_kv_head_num` or no `qk_head_dim`, so both are
    tolerated here, and nothing else in the package reads these attributes.
    """
    q_heads = layer.tp_q_head_num
    kv_heads = getattr(layer, "tp_kv_head_num", None)
    k_heads = getattr(layer, "tp_k_head_num", kv_heads)
    v_heads = getattr(layer, "tp_v_head_num", k_heads)
    if k_heads is None or v_heads is None:
        raise AttributeError(
            f"{type(layer).__name__} has no tp_k_head_num/tp_v_head_num: not an SGLang "
            "RadixAttention layer this extension knows"
        )
    qk_head_dim = getattr(layer, "qk_head_dim", None) or layer.head_dim
    v_head_dim = getattr(layer, "v_head_dim", None) or layer.head_dim
    return HeadConfig(int(q_heads), int(k_heads), int(v_heads), int(qk_head_dim), int(v_head_dim))
