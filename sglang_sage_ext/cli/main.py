"""The `sglang-sage` command line."""

from __future__ import annotations

import contextlib
import json
import logging

import click

from sglang_sage_ext import __version__
from sglang_sage_ext.cli.bench.cli import bench_group
from sglang_sage_ext.cli.demo import demo


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sglang-sage")
def main() -> None:
    """SageAttention's 8-bit attention for SGLang: diagnostics and benchmarks."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-spawn", is_flag=True, help="Skip the check in a freshly spawned interpreter.")
def doctor(as_json: bool, no_spawn: bool) -> None:
    """Check that `--attention-backend sage_attn` works here, and say how to fix what does not.

    Exit code 0: ready; 1: accepted, but Sage cannot run (no CUDA, old GPU, no
    sageattention, SGLANG_SAGE_FORCE_FALLBACK), so every batch runs on the native backend;
    2: sage_attn is unusable or not usable as configured (SGLang does not import, a patch
    failed, an SGLANG_SAGE_* variable is unknown or invalid); 130: interrupted (Ctrl-C).
    """
    from sglang_sage_ext.cli import doctor as doctor_module

    # the report says everything the package would log; no duplicate lines on stderr
    logging.getLogger("sglang_sage_ext").addHandler(logging.NullHandler())
    quiet = doctor_module.stdout_to_stderr() if as_json else contextlib.nullcontext()
    try:
        with quiet:
            report = doctor_module.run(spawn_child=not no_spawn)
    except KeyboardInterrupt:  # not exit 1, which means "Sage cannot run here"
        click.echo("doctor: interrupted", err=True)
        raise SystemExit(130) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(doctor_module.format_report(report))
    raise SystemExit(report.exit_code)


main.add_command(demo)
main.add_command(bench_group)
