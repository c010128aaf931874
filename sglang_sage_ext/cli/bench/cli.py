"""`sglang-sage bench`: the same workload on sage_attn and on a baseline backend, side by side.

Exit codes: 0 done (and every --fail-if gate passed); 1 error (server did not start or died,
bad dataset, ...: one message, no traceback); 2 usage error; 3 a --fail-if gate was exceeded;
130 interrupted (servers are stopped first).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from sglang_sage_ext.cli.bench import runner, thresholds, ui
from sglang_sage_ext.cli.bench.runner import BenchError, Endpoint, ServerOptions

EXIT_INTERRUPTED = 130


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        items = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers") from None
    if not items or any(v <= 0 for v in items):
        raise click.BadParameter(f"{value!r}: expected positive integers")
    return items


def _csv_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    return [v for v in (value or "").replace(" ", "").split(",") if v]


def output_options(func: Callable) -> Callable:
    """Options every subcommand has."""
    options = [
        click.option(
            "--output-dir",
            "-o",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("sage_bench"),
            show_default=True,
            help="Where results (<command>.json), server logs and stats go.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the result JSON on stdout."),
        click.option("--seed", type=int, default=0, show_default=True, help="Prompt RNG seed."),
        click.option(
            "--fail-if",
            "fail_if",
            multiple=True,
            metavar="GATE=LIMIT",
            help="Exit with code 3 when GATE exceeds LIMIT (repeatable); gates are listed in "
            "`sglang-sage bench --help`.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def server_options(func: Callable) -> Callable:
    """How to get the two servers: launch them (--model-path) or attach (--*-url)."""
    options = [
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
            help="Extra launch_server arguments (shell-quoted, repeatable); arguments after "
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
        click.option("--baseline-port", type=click.IntRange(1, 65535), help="Port to launch on."),
        click.option(
            "--timeout",
            "timeout_s",
            type=float,
            default=900.0,
            show_default=True,
            help="Seconds a launched server may take to become healthy.",
        ),
        click.option(
            "--sage-stats-dir",
            type=click.Path(file_okay=False),
            help="SGLANG_SAGE_STATS_DIR of an attached sage_attn server, to read its counts.",
        ),
        click.argument("extra_server_args", nargs=-1, type=click.UNPROCESSED),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _server_opts(kw: dict[str, Any]) -> ServerOptions:
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


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        ui.info("[red]interrupted[/]: every server this run launched has been stopped")
        raise SystemExit(EXIT_INTERRUPTED) from None


def _finish(
    doc: dict[str, Any], kind: str, kw: dict[str, Any], gate_values: dict, limits: dict
) -> None:
    """Record gates, write <kind>.json, print it or the stats/gate tables, set the exit code."""
    rows = thresholds.check(gate_values, limits)
    doc["gates"] = gate_values
    doc["thresholds"] = rows
    path = runner.write_result(kw["output_dir"], kind, doc)
    if kw["as_json"]:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        _print_stats(doc)
        if rows:
            ui.table(
                "--fail-if gates",
                ["gate", "value", "limit", "result"],
                [
                    [r["gate"], r["value"], r["limit"], "FAIL" if r["failed"] else "ok"]
                    for r in rows
                ],
            )
        ui.info(f"results: {path}")
    if any(r["failed"] for r in rows):
        failed = ", ".join(f"{r['gate']}={ui.fmt(r['value'])} > {r['limit']}" for r in rows)
        ui.info(f"[red]threshold exceeded[/]: {failed}")
        raise SystemExit(thresholds.EXIT_THRESHOLD)


def _print_stats(doc: dict[str, Any]) -> None:
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


def _advance_bar(bar: Any, description: str, total: int) -> Callable[[], None]:
    task = bar.add_task(description, total=total)
    return functools.partial(bar.advance, task)


# ---------------------------------------------------------------- the group


GROUP_HELP = """Compare sage_attn with a baseline backend on real SGLang servers.

Each command either launches both servers from --model-path (127.0.0.1, one after the other,
stopped on exit, Ctrl-C or failure; logs in OUTPUT_DIR/logs) or attaches to running ones
(--sage-url, --baseline-url), and writes OUTPUT_DIR/<command>.json; `report` turns those into
report.md, report.json and plots.

\b
Exit codes: 0 ok, 1 error, 2 usage error, 3 a --fail-if gate exceeded, 130 interrupted.
Gates (--fail-if GATE=LIMIT, larger is worse):
""" + "\n".join(f"  {name}: {text}" for name, text in thresholds.GATES.items())


@click.group("bench", help=GROUP_HELP, context_settings={"help_option_names": ["-h", "--help"]})
def bench_group() -> None:
    pass


# ---------------------------------------------------------------- throughput


@bench_group.command(context_settings={"ignore_unknown_options": False})
@click.option("--input-lens", default="1024,8192", show_default=True, callback=_int_list)
@click.option("--output-lens", default="64", show_default=True, callback=_int_list)
@click.option("--concurrency", default="1,16", show_default=True, callback=_int_list)
@click.option(
    "--num-prompts", type=click.IntRange(min=1), help="Per grid point (default 4 x conc, >= 8)."
)
@server_options
@output_options
def throughput(**kw: Any) -> None:
    """Requests/s, tok/s, TTFT, TPOT, ITL and peak GPU memory over a grid.

    Same definitions as SGLang's bench_serving: TPOT = (latency - TTFT) / (output_len - 1),
    ITL = gaps between streamed chunks; random token prompts, ignore_eos, fixed lengths.
    """
    from sglang_sage_ext.cli.bench import prompts
    from sglang_sage_ext.cli.bench import throughput as tp

    limits = thresholds.parse_fail_if(kw["fail_if"], tp.GATES)
    opts = _server_opts(kw)
    grid = tp.make_grid(kw["input_lens"], kw["output_lens"], kw["concurrency"], kw["num_prompts"])
    vocab_cache: dict[str, int] = {}

    def vocab(ep: Endpoint) -> int:
        if "v" not in vocab_cache:
            from sglang_sage_ext.cli.bench import client

            vocab_cache["v"] = prompts.vocab_size(opts.model_path, client.model_info(ep.base_url))
        return vocab_cache["v"]

    def warm(ep: Endpoint) -> None:
        tp.warmup(ep, vocab(ep), kw["input_lens"], opts.seed)

    def workload(ep: Endpoint) -> dict[str, Any]:
        out: dict[str, Any] = {"points": {}}
        sampler = tp.MemorySampler(ep.pgid)
        with ui.progress() as bar, sampler.running():
            for point in grid:
                advance = _advance_bar(bar, f"{ep.backend} {point.key}", point.num_prompts)
                out["points"][point.key] = {
                    **vars(point),
                    **tp.run_point(ep, point, vocab(ep), opts.seed, advance),
                }
                ep.check_alive()
        out["memory"] = sampler.as_dict()
        states = (ep.info.get("internal_states") or [{}])[0]
        out["memory"]["server_reported"] = states.get("memory_usage")
        return out

    with _interrupts():
        run = runner.run_both(opts, "throughput", workload, warmup=warm)
    sage, base = run["results"]["sage"], run["results"]["baseline"]
    comparison = tp.compare(sage["points"], base["points"])
    doc = runner.header("throughput", opts, {"grid": [vars(p) for p in grid], "vocab": vocab_cache})
    doc.update(run)
    doc["comparison"] = comparison
    if not kw["as_json"]:
        rows = tp.comparison_rows(comparison, ui.pct)
        for role, r in (("sage", sage), ("baseline", base)):
            mem = r["memory"]
            rows.append(["memory", f"{role} peak MiB", mem["peak_server_mib"], "", ""])
        ui.table(
            f"throughput: sage_attn vs {opts.baseline}",
            ["grid point", "metric", "sage_attn", opts.baseline, "change"],
            rows,
        )
    _finish(doc, "throughput", kw, tp.gates(sage["points"], base["points"]), limits)


# ---------------------------------------------------------------- mmlu


@bench_group.command()
@click.option(
    "--data-dir",
    default="builtin:mmlu_mini",
    show_default=True,
    help="MMLU CSV layout dir (dev/, test/), builtin:mmlu_mini, or hf:cais/mmlu (online).",
)
@click.option("--subjects", callback=_csv_list, help="Comma-separated subjects (default: all).")
@click.option("--num-questions", type=click.IntRange(min=1), help="Total, round-robin by subject.")
@click.option("--ntrain", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--parallel", type=click.IntRange(min=1), default=32, show_default=True)
@server_options
@output_options
def mmlu(**kw: Any) -> None:
    """5-shot MMLU accuracy as SGLang's benchmark/mmlu (greedy, one token, first letter)."""
    from sglang_sage_ext.cli.bench import mmlu as mm

    limits = thresholds.parse_fail_if(kw["fail_if"], mm.GATES)
    opts = _server_opts(kw)
    try:
        subjects = mm.load(kw["data_dir"], kw["subjects"])
    except mm.DatasetError as exc:
        raise BenchError(f"--data-dir {kw['data_dir']}: {exc}") from None
    questions = mm.select_questions(subjects, kw["num_questions"])
    prompts = mm.build_prompts(subjects, questions, kw["ntrain"])
    preds: dict[str, list[str]] = {}

    def workload(ep: Endpoint) -> dict[str, Any]:
        with ui.progress() as bar:
            advance = _advance_bar(bar, f"mmlu {ep.backend}", len(prompts))
            texts = mm.run(ep.base_url, prompts, kw["parallel"], advance)
        preds[ep.role] = [mm.parse_prediction(t) for t in texts]
        return mm.score(questions, preds[ep.role])

    with _interrupts():
        run = runner.run_both(opts, "mmlu", workload)
    sage, base = run["results"]["sage"], run["results"]["baseline"]
    comparison = mm.compare(sage, base, preds["sage"], preds["baseline"])
    doc = runner.header(
        "mmlu",
        opts,
        {
            "data": kw["data_dir"],
            "subjects": [s.name for s in subjects],
            "questions": len(questions),
            "ntrain": kw["ntrain"],
            "fewshot_token_counter": mm.token_counter()[0],
        },
    )
    doc.update(run)
    doc["comparison"] = comparison
    doc["predictions"] = {
        "answers": [q.answer for q in questions],
        "subjects": [q.subject for q in questions],
        **preds,
    }
    if not kw["as_json"]:
        rows = [
            [name, c["sage"], c["baseline"], c["delta"]]
            for name, c in comparison["subjects"].items()
        ]
        rows.append(["overall", sage["accuracy"], base["accuracy"], comparison["accuracy_delta"]])
        rows.append(["answer agreement", comparison["answer_agreement"], "", ""])
        ui.table(
            f"MMLU ({len(questions)} questions): sage_attn vs {opts.baseline}",
            ["subject", "sage_attn", opts.baseline, "delta"],
            rows,
        )
    delta = comparison["accuracy_delta"]
    _finish(doc, "mmlu", kw, {"mmlu_drop": None if delta is None else -delta}, limits)


# ---------------------------------------------------------------- logits


@bench_group.command()
@click.option("--context-lengths", default="128,2048,16384", show_default=True, callback=_int_list)
@click.option("--prompts-per-length", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--top-k", type=click.IntRange(1, 20), default=5, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--score-last",
    type=click.IntRange(min=0),
    default=1024,
    show_default=True,
    help="Compare the last N prompt positions of each prompt (0: all; full-vocabulary "
    "logits of every position cost memory on the server).",
)
@server_options
@output_options
def logits(**kw: Any) -> None:
    """Top-k logprobs per position: KL, top-1 agreement, |Δ logprob|, greedy divergence."""
    from sglang_sage_ext.cli.bench import client, prompts
    from sglang_sage_ext.cli.bench import logits as lg

    limits = thresholds.parse_fail_if(kw["fail_if"], lg.GATES)
    opts = _server_opts(kw)
    samples: dict[str, list[lg.Sample]] = {}
    prompt_sets: dict[str, list] = {}
    score_last = kw["score_last"] or None

    def workload(ep: Endpoint) -> dict[str, Any]:
        if "p" not in prompt_sets:
            vocab = prompts.vocab_size(opts.model_path, client.model_info(ep.base_url))
            prompt_sets["p"] = lg.make_prompts(
                kw["context_lengths"], kw["prompts_per_length"], vocab, opts.seed
            )
        batch = prompt_sets["p"]
        out = []
        with ui.progress() as bar:
            advance = _advance_bar(bar, f"logits {ep.backend}", len(batch))
            for _, ids in batch:
                out.append(
                    lg.query(ep.base_url, ids, score_last, kw["top_k"], kw["max_new_tokens"])
                )
                advance()
        samples[ep.role] = out
        return {"requests": len(out), "positions": sum(len(s.tops) for s in out)}

    with _interrupts():
        run = runner.run_both(opts, "logits", workload)
    comparison = lg.compare_samples(samples["sage"], samples["baseline"])
    doc = runner.header(
        "logits",
        opts,
        {
            "context_lengths": kw["context_lengths"],
            "prompts_per_length": kw["prompts_per_length"],
            "top_k": kw["top_k"],
            "max_new_tokens": kw["max_new_tokens"],
            "score_last": score_last,
            "reference": "baseline (KL(p_baseline || p_sage) over the baseline's top-k ids)",
        },
    )
    doc.update(run)
    doc["comparison"] = comparison
    if not kw["as_json"]:
        ui.table(
            f"logits: sage_attn vs {opts.baseline} (reference)",
            lg.TABLE_HEADER,
            lg.comparison_rows(comparison),
        )
    _finish(doc, "logits", kw, lg.gates(comparison), limits)


# ---------------------------------------------------------------- perplexity


@bench_group.command()
@click.option("--text-file", type=click.Path(dir_okay=False), help="Plain text to score.")
@click.option("--hf-dataset", help="NAME[:CONFIG[:SPLIT]], e.g. wikitext:wikitext-2-raw-v1:test.")
@click.option("--tokenizer", help="Tokenizer dir (default: the model's).")
@click.option("--context-length", type=click.IntRange(min=2), default=2048, show_default=True)
@click.option("--stride", type=click.IntRange(min=1), help="Default: context length / 2.")
@click.option("--max-tokens", type=click.IntRange(min=2), default=65536, show_default=True)
@server_options
@output_options
def perplexity(**kw: Any) -> None:
    """Token-level perplexity over sliding windows, both backends, delta in %."""
    from sglang_sage_ext.cli.bench import client, metrics
    from sglang_sage_ext.cli.bench import perplexity as pp

    limits = thresholds.parse_fail_if(kw["fail_if"], pp.GATES)
    opts = _server_opts(kw)
    if not kw["text_file"] and not kw["hf_dataset"]:
        raise click.UsageError("give --text-file FILE or --hf-dataset NAME[:CONFIG[:SPLIT]]")
    stride = kw["stride"] or max(1, kw["context_length"] // 2)
    if stride > kw["context_length"]:
        raise click.BadParameter("must be <= --context-length", param_hint="--stride")
    try:
        text, source = pp.load_text(kw["text_file"], kw["hf_dataset"])
    except pp.TextError as exc:
        raise BenchError(str(exc)) from None
    state: dict[str, Any] = {}
    lps: dict[str, list[float]] = {}

    def workload(ep: Endpoint) -> dict[str, Any]:
        if "ids" not in state:
            tokenizer = kw["tokenizer"] or opts.model_path
            if not tokenizer:
                info = client.model_info(ep.base_url)
                tokenizer = info.get("tokenizer_path") or info.get("model_path")
            try:
                ids, bos = pp.tokenize(text, str(tokenizer))
            except pp.TextError as exc:
                raise BenchError(str(exc)) from None
            ids = ids[: kw["max_tokens"]]
            if len(ids) < 2:
                raise BenchError(f"{source}: fewer than 2 tokens to score")
            state.update(ids=ids, bos=bos, tokenizer=str(tokenizer))
            state["windows"] = metrics.sliding_windows(len(ids), kw["context_length"], stride)
        windows = state["windows"]
        with ui.progress() as bar:
            advance = _advance_bar(bar, f"perplexity {ep.backend}", len(windows))
            lps[ep.role] = pp.score_windows(
                ep.base_url, state["ids"], windows, state["bos"], advance
            )
        return pp.summarize(lps[ep.role])

    with _interrupts():
        run = runner.run_both(opts, "perplexity", workload)
    comparison = pp.compare(lps["sage"], lps["baseline"])
    doc = runner.header(
        "perplexity",
        opts,
        {
            "source": source,
            "tokenizer": state.get("tokenizer"),
            "tokens": len(state.get("ids", [])),
            "context_length": kw["context_length"],
            "stride": stride,
            "windows": len(state.get("windows", [])),
            "bos_prepended": state.get("bos") is not None,
        },
    )
    doc.update(run)
    doc["comparison"] = comparison
    if not kw["as_json"]:
        s, b = run["results"]["sage"], run["results"]["baseline"]
        rel = metrics.relative_change(s["perplexity"], b["perplexity"])
        ui.table(
            f"perplexity ({s['tokens']} tokens, window {kw['context_length']}, stride {stride})",
            ["metric", "sage_attn", opts.baseline, "change"],
            [
                ["perplexity", s["perplexity"], b["perplexity"], ui.pct(rel)],
                ["mean NLL", s["nll_mean"], b["nll_mean"], ""],
                ["mean |Δ logprob|", comparison["mean_abs_logprob_diff"], "", ""],
                ["max |Δ logprob|", comparison["max_abs_logprob_diff"], "", ""],
            ],
        )
    gate = {"ppl_increase_pct": comparison["ppl_increase_pct"]}
    _finish(doc, "perplexity", kw, gate, limits)


# ---------------------------------------------------------------- drift


@bench_group.command()
@click.option("--model-path", required=True, help="Hugging Face Llama-style model dir.")
@click.option("--context-lengths", default="1024,4096", show_default=True, callback=_int_list)
@click.option("--prompts-per-length", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--dtype", type=click.Choice(["bfloat16", "float16"]), default="bfloat16")
@click.option("--no-plot", is_flag=True, help="Skip drift_layers.png.")
@output_options
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
        from sglang_sage_ext.cli.bench import report

        try:
            report.require_matplotlib()
        except report.ReportError as exc:
            raise BenchError(str(exc)) from None
    with _interrupts(), ui.progress() as bar:
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
        from sglang_sage_ext.cli.bench import report

        doc["plot"] = report.plot_drift(doc, kw["output_dir"])
    if not kw["as_json"]:
        layer_rows, final_rows = dr.table_rows(result)
        ui.table(
            "attention output, Sage vs exact on identical inputs (worst over prompts)",
            dr.LAYER_HEADER,
            layer_rows,
        )
        ui.table("Sage in every layer vs exact", dr.FINAL_HEADER, final_rows)
    _finish(doc, "drift", kw, dr.gates(result), limits)


# ---------------------------------------------------------------- report


@bench_group.command()
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("sage_bench"),
    show_default=True,
    help="The directory the other commands wrote their JSON into.",
)
@click.option("--no-plots", is_flag=True, help="Markdown and JSON only.")
def report(output_dir: Path, no_plots: bool) -> None:
    """report.md + report.json (+ PNG plots) from the result JSONs in OUTPUT_DIR."""
    from sglang_sage_ext.cli.bench import report as rp

    try:
        written = rp.build(output_dir, plots=not no_plots)
    except rp.ReportError as exc:
        raise BenchError(str(exc)) from None
    for path in written:
        click.echo(str(path))
