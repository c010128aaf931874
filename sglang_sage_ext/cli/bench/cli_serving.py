"""`bench throughput` and `bench mmlu`: serving speed and 5-shot accuracy, both backends."""

from __future__ import annotations

from typing import Any

import click

from sglang_sage_ext.cli.bench import cli_common as common
from sglang_sage_ext.cli.bench import runner, thresholds, ui
from sglang_sage_ext.cli.bench.runner import BenchError, Endpoint


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--input-lens", default="1024,8192", show_default=True, callback=common.int_list)
@click.option("--output-lens", default="64", show_default=True, callback=common.int_list)
@click.option("--concurrency", default="1,16", show_default=True, callback=common.int_list)
@click.option(
    "--num-prompts", type=click.IntRange(min=1), help="Per grid point (default 4 x conc, >= 8)."
)
@common.server_options
@common.output_options
@common.guarded()
def throughput(**kw: Any) -> None:
    """Requests/s, tok/s, TTFT, TPOT, ITL and peak GPU memory over a grid.

    Same definitions as SGLang's bench_serving: TPOT = (latency - TTFT) / (output_len - 1),
    ITL = gaps between streamed chunks; random token prompts, ignore_eos, fixed lengths.
    """
    from sglang_sage_ext.cli.bench import prompts
    from sglang_sage_ext.cli.bench import throughput as tp

    limits = thresholds.parse_fail_if(kw["fail_if"], tp.GATES)
    opts = common.server_opts(kw)
    grid = tp.make_grid(kw["input_lens"], kw["output_lens"], kw["concurrency"], kw["num_prompts"])
    vocab_cache: dict[str, int] = {}

    def vocab(ep: Endpoint) -> int:
        if "v" not in vocab_cache:
            from sglang_sage_ext.cli.bench import client

            vocab_cache["v"] = prompts.vocab_size(opts.model_path, client.model_info(ep.base_url))
        return vocab_cache["v"]

    def warm(ep: Endpoint) -> None:
        common.check_fits(ep, tp.longest_request(kw["input_lens"], kw["output_lens"]))
        tp.warmup(ep, vocab(ep), kw["input_lens"], opts.seed)

    def workload(ep: Endpoint) -> dict[str, Any]:
        out: dict[str, Any] = {"points": {}}
        sampler = tp.MemorySampler(ep.pgid)
        with ui.progress() as bar, sampler.running():
            for point in grid:
                advance = common.advance_bar(bar, f"{ep.backend} {point.key}", point.num_prompts)
                out["points"][point.key] = {
                    **vars(point),
                    **tp.run_point(ep, point, vocab(ep), opts.seed, advance),
                }
                ep.check_alive()
        out["memory"] = sampler.as_dict()
        states = (ep.info.get("internal_states") or [{}])[0]
        out["memory"]["server_reported"] = states.get("memory_usage")
        return out

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
    gates = tp.gates(sage["points"], base["points"])
    common.finish(doc, "throughput", kw, gates, limits, "no grid point completed on both servers")


def _mmlu_questions(kw: dict[str, Any]) -> tuple[list, list]:
    """(subjects, questions) of --data-dir, checked before any server: BenchError for a bad
    dataset, notes for what is asked differently than the options say."""
    from sglang_sage_ext.cli.bench import mmlu as mm

    try:
        subjects = mm.load(kw["data_dir"], kw["subjects"])
        notes = mm.check_fewshot(subjects, kw["ntrain"])
    except mm.DatasetError as exc:
        raise BenchError(f"--data-dir {kw['data_dir']}: {exc}") from None
    questions = mm.select_questions(subjects, kw["num_questions"])
    if not questions:
        raise BenchError(f"--data-dir {kw['data_dir']}: no test questions in the selected subjects")
    if kw["num_questions"] is not None and len(questions) < kw["num_questions"]:
        notes.append(
            f"--num-questions {kw['num_questions']}: the selected subjects have "
            f"{len(questions)} test questions; all of them are asked"
        )
    for note in notes:
        ui.info(f"[yellow]note:[/] {note}")
    return subjects, questions


@click.command()
@click.option(
    "--data-dir",
    default="builtin:mmlu_mini",
    show_default=True,
    help="MMLU CSV layout dir (dev/, test/), builtin:mmlu_mini, or hf:cais/mmlu (online).",
)
@click.option(
    "--subjects", callback=common.csv_list, help="Comma-separated subjects (default: all)."
)
@click.option("--num-questions", type=click.IntRange(min=1), help="Total, round-robin by subject.")
@click.option(
    "--ntrain",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Few-shot examples per prompt, from the dev CSVs (0: 0-shot; a subject without "
    "dev examples is refused otherwise).",
)
@click.option("--parallel", type=click.IntRange(min=1), default=32, show_default=True)
@common.server_options
@common.output_options
@common.guarded()
def mmlu(**kw: Any) -> None:
    """5-shot MMLU accuracy as SGLang's benchmark/mmlu (greedy, one token, first letter)."""
    from sglang_sage_ext.cli.bench import mmlu as mm

    limits = thresholds.parse_fail_if(kw["fail_if"], mm.GATES)
    opts = common.server_opts(kw)
    subjects, questions = _mmlu_questions(kw)
    prompts = mm.build_prompts(subjects, questions, kw["ntrain"])
    preds: dict[str, list[str]] = {}

    def workload(ep: Endpoint) -> dict[str, Any]:
        with ui.progress() as bar:
            advance = common.advance_bar(bar, f"mmlu {ep.backend}", len(prompts))
            texts = mm.run(ep.base_url, prompts, kw["parallel"], advance)
        preds[ep.role] = [mm.parse_prediction(t) for t in texts]
        return mm.score(questions, preds[ep.role])

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
    answered = f"{sage['total']} sage / {base['total']} baseline questions answered"
    gate = {"mmlu_drop": None if delta is None else -delta}
    common.finish(doc, "mmlu", kw, gate, limits, f"mmlu accuracy: {answered}")
