"""`bench drift` (in process, no server) and `bench report` (from the result JSONs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sglang_sage_ext.cli.bench import cli_common as common
from sglang_sage_ext.cli.bench import runner, thresholds, ui
from sglang_sage_ext.cli.bench.runner import BenchError


@click.command()
@click.option("--model-path", required=True, help="Hugging Face Llama-style model dir.")
@click.option("--context-lengths", default="1024,4096", show_default=True, callback=common.int_list)
@click.option("--prompts-per-length", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--dtype", type=click.Choice(["bfloat16", "float16"]), default="bfloat16")
@click.option("--no-plot", is_flag=True, help="Skip drift_layers.png.")
@common.output_options
@common.guarded()
def drift(**kw: Any) -> None:
    """Per-layer precision drift of Sage vs exact attention, in process (CUDA only).

    Pass 1 runs the model with exact attention and, at every attention layer, also runs
    Sage on the identical q/k/v (rel-L2, max abs, cosine per layer). Pass 2 runs Sage in
    every layer and compares final hidden states and logits with pass 1.
    """
    from sglang_sage_ext.cli.bench import drift as dr

    limits = thresholds.parse_fail_if(kw["fail_if"], dr.GATES)
    problem = dr.environment_problem(kw["model_path"])
    if problem:
        raise BenchError(problem)
    if not kw["no_plot"]:
        from sglang_sage_ext.cli.bench import report_plots

        try:
            report_plots.require_matplotlib()
        except report_plots.ReportError as exc:
            raise BenchError(str(exc)) from None
    with ui.progress() as bar:
        result = dr.run(
            kw["model_path"],
            kw["context_lengths"],
            kw["prompts_per_length"],
            kw["seed"],
            dtype=kw["dtype"],
            progress=bar,
        )
    doc = runner.header(
        "drift",
        None,
        {
            "model_path": kw["model_path"],
            "context_lengths": kw["context_lengths"],
            "prompts_per_length": kw["prompts_per_length"],
            "dtype": kw["dtype"],
            "seed": kw["seed"],
        },
    )
    doc.update(result)
    if not kw["no_plot"]:
        doc["plot"] = _plot_or_warn(doc, kw["output_dir"])
    if not kw["as_json"]:
        layer_rows, final_rows = dr.table_rows(result)
        ui.table(
            "attention output, Sage vs exact on identical inputs (worst over prompts)",
            dr.LAYER_HEADER,
            layer_rows,
        )
        ui.table("Sage in every layer vs exact", dr.FINAL_HEADER, final_rows)
    common.finish(doc, "drift", kw, dr.gates(result), limits, "no layer was measured")


def _plot_or_warn(doc: dict[str, Any], output_dir: Path) -> str | None:
    """drift_layers.png, or None and a warning: a failed plot must not lose the numbers."""
    from sglang_sage_ext.cli.bench import report_plots

    try:
        return report_plots.plot_drift(doc, output_dir)
    except OSError as exc:
        ui.info(
            f"[yellow]warning:[/] cannot write drift_layers.png in {output_dir} "
            f"({exc.strerror or exc}); the results follow"
        )
        return None


@click.command()
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sage_bench"),
    show_default=True,
    help="The directory the other commands wrote their JSON into.",
)
@click.option("--no-plots", is_flag=True, help="Markdown and JSON only.")
@common.guarded(create_output=False)
def report(output_dir: Path, no_plots: bool) -> None:
    """report.md + report.json (+ PNG plots) from the result JSONs in OUTPUT_DIR."""
    from sglang_sage_ext.cli.bench import report as rp

    try:
        written = rp.build(output_dir, plots=not no_plots)
    except rp.ReportError as exc:
        raise BenchError(str(exc)) from None
    for path in written:
        click.echo(str(path))
