"""The PNG plots of `bench report` and `bench drift`; matplotlib is optional
(`pip install 'sglang-sage-ext[plots]'`) and imported only to draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS_HINT = "pip install 'sglang-sage-ext[plots]'"


class ReportError(RuntimeError):
    """Nothing to report, an unreadable result file, or plots without matplotlib."""


def require_matplotlib() -> Any:
    """matplotlib.pyplot with the Agg backend, or ReportError naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError(
            f"plots need matplotlib: {PLOTS_HINT} (or pass --no-plots / --no-plot)"
        ) from None
    return plt


def _points(doc: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return list(doc["results"][role]["points"].values())


def _plot_throughput_lines(
    plt: Any,
    runs: dict,
    path: Path,
    *,
    x: str,
    y: Any,
    series: tuple[str, str],
    series_label: str,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
) -> bool:
    """One line per (backend, series key pair) over the throughput grid points."""
    doc = runs.get("throughput")
    if not doc:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for role in ("sage", "baseline"):
        label = "sage_attn" if role == "sage" else doc["config"].get("baseline", role)
        groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for p in _points(doc, role):
            groups.setdefault((p[series[0]], p[series[1]]), []).append((p[x], y(p)))
        for key, pts in sorted(groups.items()):
            pts.sort()
            ax.plot(
                *zip(*pts, strict=True),
                marker="o",
                label=f"{label} " + series_label.format(*key),
                linestyle="-" if role == "sage" else "--",
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_ttft(plt: Any, runs: dict, path: Path) -> bool:
    return _plot_throughput_lines(
        plt,
        runs,
        path,
        x="input_len",
        y=lambda p: p["ttft_ms"]["median"],
        series=("concurrency", "output_len"),
        series_label="c={} out={}",
        xlabel="prompt length (tokens)",
        ylabel="median TTFT (ms)",
        title="TTFT vs prompt length",
        log_x=True,
    )


def plot_tps(plt: Any, runs: dict, path: Path) -> bool:
    return _plot_throughput_lines(
        plt,
        runs,
        path,
        x="concurrency",
        y=lambda p: p["output_throughput"],
        series=("input_len", "output_len"),
        series_label="in={} out={}",
        xlabel="concurrency",
        ylabel="output tokens/s",
        title="Output throughput vs concurrency",
    )


def plot_kl(plt: Any, runs: dict, path: Path) -> bool:
    doc = runs.get("logits")
    if not doc:
        return False
    pts = sorted(
        (int(k), c["kl_mean"], c["kl_max"])
        for k, c in doc["comparison"].items()
        if k != "all" and c.get("kl_mean") is not None
    )
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p[0] for p in pts]
    ax.plot(xs, [p[1] for p in pts], marker="o", label="KL mean")
    ax.plot(xs, [p[2] for p in pts], marker="s", linestyle="--", label="KL max")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("KL(baseline || sage_attn), top-k")
    ax.set_title("Next-token KL vs context length")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_drift(doc: dict[str, Any], output_dir: Path) -> str | None:
    """drift_layers.png: per-layer rel-L2 and 1 - cosine of Sage vs exact attention."""
    layers = doc.get("layers") or []
    if not layers:
        return None
    plt = require_matplotlib()
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    path = Path(output_dir) / "drift_layers.png"
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["layer"] for r in layers]
    ax.plot(xs, [r["rel_l2"] for r in layers], marker="o", label="rel-L2")
    ax.plot(xs, [max(1 - r["cosine"], 1e-12) for r in layers], marker="s", label="1 - cosine")
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_title("Sage vs exact attention output per layer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
