"""Terminal output: rich progress bars (stderr) and result tables (stdout).

rich is imported lazily so that `sglang-sage doctor` never needs it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def progress() -> Iterator[Any]:
    """A rich Progress on stderr (spinner, bar, counts, elapsed and remaining time)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=False,
    ) as bar:
        yield bar


def info(message: str) -> None:
    """A status line on stderr."""
    _console(stderr=True).print(message)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers with `digits` significant digits; None/NaN as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def pct(value: float | None) -> str:
    """A relative change as a signed percentage."""
    return "-" if value is None or math.isnan(value) else f"{value * 100:+.2f}%"


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table on stdout."""
    from rich.table import Table

    tab = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        tab.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        tab.add_row(*(c if isinstance(c, str) else fmt(c) for c in row))
    _console().print(tab)
