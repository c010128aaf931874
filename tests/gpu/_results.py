"""Where the GPU tests write their measured numbers (JSON + markdown) and server logs."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

RESULTS_ENV = "SGLANG_SAGE_RESULTS_DIR"


def results_dir() -> Path:
    """$SGLANG_SAGE_RESULTS_DIR, else a fixed folder under the system temp dir."""
    path = Path(
        os.environ.get(RESULTS_ENV) or Path(tempfile.gettempdir()) / "sglang_sage_gpu_results"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become strings so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(name: str, data: Any) -> Path:
    path = results_dir() / name
    path.write_text(json.dumps(_clean(data), indent=1, sort_keys=False))
    return path


def write_text(name: str, text: str) -> Path:
    path = results_dir() / name
    path.write_text(text)
    return path


def fmt(value: Any) -> str:
    """Short cell text for markdown tables."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0.0:
            return "0"
        if abs(value) >= 1e-2 and abs(value) < 1e4:
            return f"{value:.4f}"
        return f"{value:.2e}"
    return str(value)
