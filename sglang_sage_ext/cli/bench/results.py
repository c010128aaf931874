"""Result files: strict JSON out, both strict and legacy JSON in.

Python's json writes NaN and Infinity bare, which strict parsers (jq, JavaScript, Go, Rust)
reject, so every file `bench` writes goes through `dumps`: a non-finite number becomes `null`
and the top-level `non_finite` object records where it was and what it was, as a JSON pointer
(RFC 6901) -> "NaN" | "Infinity" | "-Infinity", e.g. {"/comparison/ppl_increase_pct": "NaN"}.
`loads` reads such a file back with the numbers restored, and reads the bare NaN of files
written before this change as well.

A write that fails after the workload must not lose the run: `write` raises `ResultWriteError`
(exit code 5), and the caller prints the summary before it gives up.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

#: Top-level key listing the non-finite numbers that were written as null.
NON_FINITE_KEY = "non_finite"
#: Exit code of a run that finished but whose result file could not be written.
EXIT_WRITE_FAILED = 5


class ResultWriteError(click.ClickException):
    """The results could not be saved (disk full, -o gone or read-only): exit code 5."""

    exit_code = EXIT_WRITE_FAILED


def _pointer_part(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _finite_copy(value: Any, pointer: str, found: dict[str, str]) -> Any:
    """`value` as plain JSON types, non-finite floats as None (recorded in `found`)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        found[pointer or "/"] = "NaN" if math.isnan(value) else json.dumps(value)
        return None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {
            str(k): _finite_copy(v, f"{pointer}/{_pointer_part(str(k))}", found)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_finite_copy(v, f"{pointer}/{i}", found) for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dict__"):
        return _finite_copy(vars(value), pointer, found)
    return str(value)


def dumps(doc: dict[str, Any]) -> str:
    """Strict JSON of `doc` (no NaN/Infinity tokens; see the module doc), indented."""
    found: dict[str, str] = {}
    clean = _finite_copy({k: v for k, v in doc.items() if k != NON_FINITE_KEY}, "", found)
    if found:
        clean[NON_FINITE_KEY] = found
    return json.dumps(clean, indent=2, allow_nan=False)


def _restore(doc: Any, found: Any) -> None:
    """Put the numbers listed in `found` back where `dumps` wrote null."""
    if not isinstance(found, dict):
        return
    for pointer, text in found.items():
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(pointer).split("/")[1:]]
        parent = doc
        try:
            for part in parts[:-1]:
                parent = parent[int(part) if isinstance(parent, list) else part]
            last = parts[-1]
            key = int(last) if isinstance(parent, list) else last
            if parent[key] is None:
                parent[key] = float(text)
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # an edited file: leave that value as null


def loads(text: str) -> Any:
    """A result file's content: strict files with their non-finite numbers restored, and
    files written before strict JSON (bare NaN) as they are."""
    doc = json.loads(text)
    if isinstance(doc, dict):
        _restore(doc, doc.pop(NON_FINITE_KEY, None))
    return doc


def write(output_dir: Path, kind: str, doc: dict[str, Any]) -> Path:
    """Write `<output_dir>/<kind>.json` (what `bench report` reads); ResultWriteError if not."""
    path = Path(output_dir) / f"{kind}.json"
    try:
        text = dumps(doc) + "\n"
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise ResultWriteError(
            f"the run finished but {path} could not be written ({exc.strerror or exc}); "
            "the summary above is all that is left of it: free space or fix -o, then re-run"
        ) from None
    return path
