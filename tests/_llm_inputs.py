"""bench/llm_like_inputs.py, loaded by path: one copy of the LLM-like input families for the
CPU tests, the GPU tests and the bench scripts (bench/ is not a package; bench scripts import it
as a sibling). Nothing here imports SGLang.

    from tests._llm_inputs import llm
    batch = llm.make_batch("q_bias", llm.CPU_SHAPES[0], seed=1)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "llm_like_inputs"
_PATH = Path(__file__).resolve().parents[1] / "bench" / f"{_NAME}.py"


def _load():
    module = sys.modules.get(_NAME)
    if module is not None and Path(getattr(module, "__file__", "")).resolve() == _PATH:
        return module
    spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


llm = _load()
