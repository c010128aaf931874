"""`sglang-sage demo`: sage_attn against the native backend, end to end, with no set-up.

Builds a tiny random Llama on the spot (or takes --model-path), launches a sage_attn server and
a native one on it (one at a time, identical flags, through `bench`'s runner), and runs a short
logits comparison and a short throughput comparison on each, then prints the tables and where
the sage_attn server really ran Sage (its per-process stats). Everything server-side is
`bench`'s code: launch, stop on Ctrl-C/SIGTERM/SIGHUP, stats, metrics, tables, exit codes.

On a GPU the baseline is the native backend sage_attn itself uses for the batches Sage does
not take, and the sage_attn server runs with SGLANG_SAGE_COST_MODEL=off (unless --cost-model
auto) so that every eligible prefill shows Sage. Without CUDA both servers run SGLang's CPU
path (`--device cpu`, Triton's interpreter, the CPU shims) with SGLANG_SAGE_CPU_INTERPRET=1,
so Sage's Triton kernel runs under the interpreter: a smoke test of the wiring, not a
measurement.
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sglang_sage_ext.cli.bench import cli_common as common
from sglang_sage_ext.cli.bench import (
    client,
    preflight,
    prompts,
    results,
    runner,
    servers,
    ui,
    verdict,
)
from sglang_sage_ext.cli.bench import logits as lg
from sglang_sage_ext.cli.bench import throughput as tp
from sglang_sage_ext.cli.bench.runner import BenchError, Endpoint

CPU_CAVEAT = "CPU run: a smoke test of the wiring, not a measurement"
TINY_CAVEAT = (
    "tiny model: a few requests on 2 layers measure server overheads, not attention; "
    "measure with `sglang-sage bench throughput --model-path <your model>` or bench_serving"
)
TOP_K = 5


@dataclass(frozen=True)
class Sizes:
    """How much work each server gets (prompt lengths in tokens)."""

    context_lengths: tuple[int, ...]
    prompts_per_length: int
    max_new_tokens: int
    input_len: int
    output_len: int
    concurrency: int
    num_prompts: int


#: CPU: Triton's interpreter is slow; prompts stay short (>= SGLANG_SAGE_MIN_TOKENS, 16).
CPU_SIZES = Sizes((24, 64), 1, 4, 32, 4, 2, 4)
#: GPU: one long prompt per server so that a real Sage batch shows even on a real model.
GPU_SIZES = Sizes((256, 1536), 2, 16, 1024, 32, 4, 16)


class DemoUsageError(click.ClickException):
    """Bad input: one line `Error: ...`, exit code 2 (bench's usage-error code)."""

    exit_code = 2


def _model_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    problem = None if value is None else servers.model_path_problem(value)
    if problem:
        raise DemoUsageError(f"--model-path: {problem}")
    return value


def _output_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    if value is not None:
        return value
    return Path(tempfile.mkdtemp(prefix="sglang-sage-demo-"))


def _ensure_cpu_shims() -> None:
    """This process and every server it spawns get the CPU shims (SGLang on CPU torch)."""
    from sglang_sage_ext.cpu import shims

    try:
        shims.install()
    except ImportError as exc:
        raise BenchError(f"SGLang's CPU path needs torch in this Python ({exc})") from None
    os.environ[shims.ENV_VAR] = "1"
    os.environ["SGLANG_SAGE_CPU_INTERPRET"] = "1"  # Sage's Triton kernel, interpreted
    pth = Path(sysconfig.get_paths()["purelib"]) / shims.PTH_NAME
    if pth.is_file() and pth.read_text() == shims.PTH_LINE:
        return
    try:
        written = shims.install_pth()
    except OSError as exc:
        raise BenchError(
            f"the servers need the CPU shims .pth in {pth.parent} ({exc.strerror or exc}); "
            f"run `python -m sglang_sage_ext.cpu.shims --pth` with write access there"
        ) from None
    ui.info(f"note: wrote {written} (acts only with {shims.ENV_VAR}=1)")


@contextlib.contextmanager
def _model(model_path: str | None) -> Iterator[str]:
    """The model to serve: --model-path, or a tiny random Llama in a temporary directory."""
    if model_path is not None:
        yield model_path
        return
    from sglang_sage_ext.cpu.tiny_model import make_tiny_llama

    with tempfile.TemporaryDirectory(prefix="sglang-sage-tiny-") as tmp:
        ui.info("building a tiny random Llama (2 layers, head_dim 64; no download)")
        yield str(make_tiny_llama(Path(tmp) / "tiny-llama"))


def _baseline(cpu: bool) -> tuple[str, str]:
    if cpu:
        return "triton", "SGLang's CPU path runs the Triton backend"
    from sglang_sage_ext.integration.native import best_decode_backend

    name, why = best_decode_backend()
    return name, f"the native backend sage_attn uses here ({why})"


def _workload(opts: runner.ServerOptions, sizes: Sizes, samples: dict[str, list]) -> Any:
    """The per-server work: logits prompts, then one throughput grid point."""
    point = tp.make_grid(
        [sizes.input_len], [sizes.output_len], [sizes.concurrency], sizes.num_prompts
    )[0]

    def workload(ep: Endpoint) -> dict[str, Any]:
        vocab = prompts.vocab_size(opts.model_path, client.model_info(ep.base_url))
        batch = lg.make_prompts(sizes.context_lengths, sizes.prompts_per_length, vocab, opts.seed)
        with ui.progress() as bar:
            advance = common.advance_bar(bar, f"demo {ep.backend}", len(batch) + point.num_prompts)
            out = []
            for _, ids in batch:
                out.append(lg.query(ep.base_url, ids, None, TOP_K, sizes.max_new_tokens))
                advance()
            samples[ep.role] = out
            ep.check_alive()
            result = tp.run_point(ep, point, vocab, opts.seed, advance)
        return {"points": {point.key: {**vars(point), **result}}}

    return workload


def _warmup(opts: runner.ServerOptions, sizes: Sizes) -> Any:
    def warm(ep: Endpoint) -> None:
        vocab = prompts.vocab_size(opts.model_path, client.model_info(ep.base_url))
        tp.warmup(ep, vocab, [sizes.input_len, *sizes.context_lengths], opts.seed)

    return warm


def where_sage_ran(stats: dict[str, Any] | None) -> str:
    """'sage_paged: 48 calls; cost_model: 120 calls (native)' from a stats delta."""
    if stats is None:
        return "not recorded"
    parts = [f"{k}: {n} calls" for k, n in sorted(stats["sage_kernels"].items())]
    kernels = sum(stats["sage_kernels"].values())
    if stats["sage_calls"] > kernels:
        parts.append(f"sage: {stats['sage_calls'] - kernels} calls")
    parts += [f"{k}: {n} calls (native)" for k, n in sorted(stats["fallback_calls"].items())]
    share = stats.get("sage_share")
    if share is not None:
        parts.append(f"{share:.0%} of extend calls on Sage")
    return "; ".join(parts) or "no extend call recorded"


def _report(doc: dict[str, Any], baseline: str) -> None:
    ui.table(
        f"logits: sage_attn vs {baseline} (reference)",
        lg.TABLE_HEADER,
        lg.comparison_rows(doc["logits"]),
    )
    ui.table(
        f"throughput: sage_attn vs {baseline}",
        ["grid point", "metric", "sage_attn", baseline, "change"],
        tp.comparison_rows(doc["throughput"], ui.pct),
    )
    where = where_sage_ran(doc["sage_stats"].get("sage"))
    click.echo(f"where Sage ran (sage_attn server, extend calls per layer): {where}")
    for caveat in doc["caveats"]:
        click.echo(caveat)


def run_demo(model_path: str | None, output_dir: Path, cost_model: str) -> None:
    """Validate, launch both servers in turn, compare, print, write demo.json; exit code."""
    cpu = not servers.cuda_available()
    if cpu:
        _ensure_cpu_shims()
    with warnings.catch_warnings():  # SGLang's import-time warnings are not the user's business
        warnings.simplefilter("ignore")
        preflight.require_sglang_for_launch()
    if cpu:
        click.echo(CPU_CAVEAT)
    baseline, why = _baseline(cpu)
    os.environ["SGLANG_SAGE_COST_MODEL"] = cost_model
    sizes = CPU_SIZES if cpu else GPU_SIZES
    routing = (
        "off: every prefill of >= 16 new tokens runs on Sage"
        if cost_model == "off"
        else "auto: the measured cost model routes short prompts to the native backend"
    )
    click.echo(f"baseline: {baseline} ({why})")
    click.echo(f"sage_attn server: SGLANG_SAGE_COST_MODEL={routing}")
    click.echo(f"output directory: {output_dir}")
    samples: dict[str, list] = {}
    with _model(model_path) as model:
        opts = runner.ServerOptions(output_dir=output_dir, model_path=model, baseline=baseline)
        warm = None if cpu else _warmup(opts, sizes)
        run = runner.run_both(opts, "demo", _workload(opts, sizes, samples), warmup=warm)
    sage, base = run["results"]["sage"]["points"], run["results"]["baseline"]["points"]
    doc = runner.header("demo", opts, {"cpu": cpu, "cost_model": cost_model, **vars(sizes)})
    doc.update(run)
    logits = lg.compare_samples(samples["sage"], samples["baseline"])
    doc["logits"] = dict(sorted(logits.items(), key=lambda kv: kv[0] == "all"))  # "all" last
    doc["throughput"] = tp.compare(sage, base)
    problem = verdict.no_sage_problem(doc["sage_stats"].get("sage"))
    smoke = verdict.smoke_reason(run["servers"], doc["sage_stats"].get("sage"))
    doc["caveats"] = [verdict.SMOKE_CAVEAT.format(why=smoke)] if smoke else []
    if model_path is None and not cpu:
        doc["caveats"].append(TINY_CAVEAT)
    doc["sage_ran"] = problem is None
    _report(doc, baseline)
    _finish(doc, output_dir, problem, cpu)


def _finish(doc: dict[str, Any], output_dir: Path, problem: str | None, cpu: bool) -> None:
    """Write demo.json after the tables (a failed write loses no numbers); the exit code."""
    lost: results.ResultWriteError | None = None
    try:
        click.echo(f"results: {results.write(output_dir, 'demo', doc)}")
    except results.ResultWriteError as exc:
        lost = exc
    if problem:
        click.echo(f"FAILED: {problem}")
    if cpu:
        click.echo(CPU_CAVEAT)
    if lost is not None and not problem:
        raise lost
    if problem:
        if lost is not None:
            lost.show()
        raise SystemExit(verdict.EXIT_NO_SAGE)


@click.command("demo")
@click.option(
    "--model-path",
    callback=_model_path,
    help="Serve this model (a local directory or a Hub id) instead of a tiny random Llama.",
)
@click.option(
    "--output",
    "-o",
    "output_dir",
    type=click.Path(file_okay=False, path_type=Path),
    callback=_output_dir,
    help="Keep demo.json, server logs and stats here (default: a new temporary directory).",
)
@click.option(
    "--cost-model",
    type=click.Choice(["off", "auto"]),
    default="off",
    show_default=True,
    help="SGLANG_SAGE_COST_MODEL of the sage_attn server (off: every eligible prefill on Sage).",
)
@common.guarded(output_hint="-o/--output")
def demo(model_path: str | None, output_dir: Path, cost_model: str) -> None:
    """sage_attn vs the native backend on a tiny model built here (or --model-path).

    Launches both servers one at a time with identical flags, compares prompt logprobs (KL,
    top-1 agreement, max |Δ logprob|) and a few requests' throughput, and prints where Sage
    ran. Without CUDA it runs SGLang's CPU path: a smoke test, not a measurement.

    \b
    Exit codes: 0 ok, 1 error, 2 usage error, 4 the sage_attn server never ran Sage,
    5 demo.json could not be written (the tables are printed anyway), 128+N stopped by
    signal N (launched servers are stopped first).
    """
    run_demo(model_path, output_dir, cost_model)
