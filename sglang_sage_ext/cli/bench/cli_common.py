"""What every `sglang-sage bench` subcommand shares: options, the guard, and the finish.

The guard (`guarded`) is why no subcommand ever ends in a traceback: `-o` is checked before
any work, stop signals (SIGINT, SIGTERM, SIGHUP) stop the launched servers and exit with
128 + signal, a failed server reply is one line with exit code 1, and anything unexpected is
one line too, with the traceback saved next to the results for a bug report.

Exit codes: 0 done (every --fail-if gate passed); 1 error (server did not start or died,
failed or malformed reply, bad dataset, ...); 2 usage error (bad option, --server-args or -o);
3 a --fail-if gate was exceeded or has no value; 4 the sage_attn server never ran Sage (without
--allow-no-sage); 5 the run finished but <command>.json could not be written (the summary is
printed anyway; 3 and 4 keep their code); 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM,
129 SIGHUP).
"""

from __future__ import annotations

import functools
import math
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sglang_sage_ext.cli.bench import (
    capacity,
    client,
    lifecycle,
    preflight,
    results,
    runner,
    thresholds,
    ui,
    verdict,
)
from sglang_sage_ext.cli.bench.runner import BenchError, Endpoint, ServerOptions

EXIT_INTERRUPTED = 130  # Ctrl-C; other stop signals exit with 128 + their number


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """click's FloatRange lets NaN through (every comparison with it is False)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """Click callback: '1024, 8192' -> [1024, 8192] (positive integers only)."""
    if value is None:
        return None
    try:
        items = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers") from None
    if not items or any(v <= 0 for v in items):
        raise click.BadParameter(f"{value!r}: expected positive integers")
    return items


def csv_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    """Click callback: 'a, b' -> ['a', 'b']."""
    return [v for v in (value or "").replace(" ", "").split(",") if v]


def _apply(func: Callable, options: list[Callable]) -> Callable:
    for option in reversed(options):
        func = option(func)
    return func


def output_options(func: Callable) -> Callable:
    """Options every measuring subcommand has."""
    return _apply(
        func,
        [
            click.option(
                "--output-dir",
                "-o",
                type=click.Path(file_okay=False, path_type=Path),
                default=Path("sage_bench"),
                show_default=True,
                help="Where results (<command>.json), server logs and stats go (checked first).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the result JSON."),
            click.option("--seed", type=int, default=0, show_default=True, help="Prompt RNG seed."),
            click.option(
                "--fail-if",
                "fail_if",
                multiple=True,
                metavar="GATE=LIMIT",
                help="Exit with code 3 when GATE exceeds LIMIT or has no value (repeatable); "
                "gates are listed in `sglang-sage bench --help`.",
            ),
        ],
    )


def server_options(func: Callable) -> Callable:
    """How to get the two servers: launch them (--model-path) or attach (--*-url)."""
    return _apply(
        func,
        [
            click.option("--model-path", help="Model to launch both servers with (one at a time)."),
            click.option("--sage-url", help="Attach to a running sage_attn server instead."),
            click.option("--baseline-url", help="Attach to a running baseline server instead."),
            click.option(
                "--baseline",
                default="triton",
                show_default=True,
                help="Baseline attention backend (any of the installed SGLang's choices).",
            ),
            click.option(
                "--server-args",
                multiple=True,
                help="Extra launch_server arguments (shell-quoted, repeatable; parsed by SGLang's "
                "parser; --host, --port, --model-path, --attention-backend, "
                "--trust-remote-code and abbreviations of them are refused); arguments after "
                "`--` are passed through too.",
            ),
            click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True),
            click.option(
                "--radix-cache/--no-radix-cache",
                default=False,
                show_default=True,
                help="Launch with the radix cache (off: honest TTFTs, since a radix hit skips "
                "the prefill it would measure).",
            ),
            click.option("--sage-port", type=click.IntRange(1, 65535), help="Port to launch on."),
            click.option(
                "--baseline-port", type=click.IntRange(1, 65535), help="Port to launch on."
            ),
            click.option(
                "--timeout",
                "timeout_s",
                type=click.FloatRange(min=0, min_open=True, max=1e6),
                callback=_finite,
                default=900.0,
                show_default=True,
                help="Seconds a launched server may take to become healthy.",
            ),
            click.option(
                "--sage-stats-dir",
                type=click.Path(exists=True, file_okay=False),
                help="SGLANG_SAGE_STATS_DIR of an attached sage_attn server, to read its counts.",
            ),
            click.option(
                "--allow-no-sage",
                is_flag=True,
                help="Accept a run whose sage_attn server never ran Sage (CPU smoke tests); "
                "without it such a run exits with code 4.",
            ),
            click.argument("extra_server_args", nargs=-1, type=click.UNPROCESSED),
        ],
    )


def server_opts(kw: dict[str, Any]) -> ServerOptions:
    """ServerOptions from the parsed click options."""
    return ServerOptions(
        output_dir=kw["output_dir"],
        model_path=kw["model_path"],
        sage_url=kw["sage_url"],
        baseline_url=kw["baseline_url"],
        baseline=kw["baseline"],
        server_args=runner.parse_server_args(kw["server_args"], kw["extra_server_args"]),
        tp=kw["tp"],
        seed=kw["seed"],
        timeout_s=kw["timeout_s"],
        sage_port=kw["sage_port"],
        baseline_port=kw["baseline_port"],
        sage_stats_dir=kw["sage_stats_dir"],
        disable_radix_cache=not kw["radix_cache"],
    )


def _internal_error(exc: BaseException, output_dir: Path | None) -> BenchError:
    where = "run with python -X dev for details"
    if output_dir is not None:
        path = Path(output_dir) / "bench_traceback.txt"
        try:
            path.write_text("".join(traceback.format_exception(exc)))
            where = f"traceback in {path}"
        except OSError:
            pass
    return BenchError(
        f"internal error ({type(exc).__name__}: {client.one_line(str(exc), 200)}); {where}; "
        "please report it"
    )


def guarded(
    create_output: bool = True, output_hint: str = "-o/--output-dir"
) -> Callable[[Callable], Callable]:
    """Wrap a subcommand: -o check first, stop signals, one-line errors (see module doc)."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(**kw: Any) -> Any:
            with lifecycle.stop_signals_raise():
                try:
                    preflight.check_output_dir(
                        kw["output_dir"], create=create_output, hint=output_hint
                    )
                    # every command is named after the <command>.json it writes
                    preflight.check_result_file(
                        Path(kw["output_dir"]) / f"{func.__name__}.json", hint=output_hint
                    )
                    return func(**kw)
                except KeyboardInterrupt as exc:
                    signum = getattr(exc, "signum", 2)
                    lifecycle.signal_all()
                    ui.info(
                        f"[red]interrupted[/] ({lifecycle.signal_name(signum)}): every server "
                        "this run launched has been stopped"
                    )
                    raise SystemExit(lifecycle.exit_code(signum)) from None
                except client.ClientError as exc:
                    raise BenchError(f"server reply: {exc}") from None
                except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
                    raise
                except Exception as exc:
                    raise _internal_error(exc, kw.get("output_dir")) from None

        return wrapper

    return decorate


def _sage_verdict(doc: dict[str, Any], allow_no_sage: bool) -> str | None:
    """Record and announce whether Sage ran and whether this is only a smoke test."""
    stats = (doc.get("sage_stats") or {}).get("sage")
    problem = verdict.no_sage_problem(stats)
    smoke = verdict.smoke_reason(doc.get("servers") or {}, stats)
    doc["caveats"] = [verdict.SMOKE_CAVEAT.format(why=smoke)] if smoke else []
    doc["sage_ran"] = None if stats is None else problem is None
    if problem:
        doc["caveats"].insert(0, problem)
        label = "warning (--allow-no-sage)" if allow_no_sage else "FAILED"
        ui.info(f"[bold red]{label}: {problem}[/]")
    if smoke:
        ui.info(verdict.SMOKE_CAVEAT.format(why=smoke))
    return None if allow_no_sage else problem


def finish(
    doc: dict[str, Any],
    kind: str,
    kw: dict[str, Any],
    gate_values: dict[str, Any],
    limits: dict[str, float],
    missing: str = "",
) -> None:
    """Verdict, gates, write <kind>.json, print it or the tables, set the exit code."""
    no_sage = _sage_verdict(doc, kw.get("allow_no_sage", False))
    rows = thresholds.check(gate_values, limits, missing)
    if no_sage:
        for row in rows:
            row.update(failed=True, reason=f"{row['gate']}: sage_attn never ran Sage")
    doc["gates"] = gate_values
    doc["thresholds"] = rows
    if kw["as_json"]:
        click.echo(results.dumps(doc))
    else:
        print_stats(doc)
        if rows:
            ui.table(
                "--fail-if gates",
                ["gate", "value", "limit", "result"],
                [
                    [r["gate"], r["value"], r["limit"], "FAIL" if r["failed"] else "ok"]
                    for r in rows
                ],
            )
    lost: results.ResultWriteError | None = None
    try:  # after the summary: a failed write must not take the numbers with it
        path = results.write(kw["output_dir"], kind, doc)
        if not kw["as_json"]:
            ui.info(f"results: {path}")
    except results.ResultWriteError as exc:
        lost = exc
    _exit(no_sage, [r["reason"] for r in rows if r["failed"]], lost)


def _exit(no_sage: str | None, failed: list[str], lost: Exception | None) -> None:
    """The exit code: 4 (no Sage) and 3 (a gate failed) keep theirs over 5 (not saved)."""
    code = None
    if no_sage:
        code = verdict.EXIT_NO_SAGE
    elif failed:
        ui.info(f"[red]--fail-if failed[/]: {'; '.join(failed)}")
        code = thresholds.EXIT_THRESHOLD
    if lost is not None:
        if code is None:
            raise lost
        lost.show()
    if code is not None:
        raise SystemExit(code)


def print_stats(doc: dict[str, Any]) -> None:
    """The Sage/fallback counts table (when the run recorded any)."""
    stats = doc.get("sage_stats") or {}
    rows = []
    for role, s in stats.items():
        if s is None:
            rows.append([role, "-", "-", "not recorded (attached without --sage-stats-dir)"])
            continue
        fallback = ", ".join(f"{k}={v}" for k, v in s["fallback_calls"].items()) or "none"
        rows.append([role, s["sage_calls"], ui.pct(s["sage_share"]).lstrip("+"), fallback])
    if rows:
        ui.table(
            "extend calls (per layer) during the workload",
            ["server", "sage calls", "on Sage", "fallback calls"],
            rows,
        )


def advance_bar(bar: Any, description: str, total: int) -> Callable[[], None]:
    """A progress task and the callable that advances it by one."""
    task = bar.add_task(description, total=total)
    return functools.partial(bar.advance, task)


def check_fits(ep: Endpoint, need: capacity.Need) -> None:
    """Refuse (exit 2) a workload whose longest request the server would refuse or cut."""
    capacity.check(need, ep.info, ep.backend, ep.base_url)
