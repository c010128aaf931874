"""`bench logits` and `bench perplexity`: how close sage_attn's distributions stay."""

from __future__ import annotations

from typing import Any

import click

from sglang_sage_ext.cli.bench import capacity, runner, thresholds, ui
from sglang_sage_ext.cli.bench import cli_common as common
from sglang_sage_ext.cli.bench.runner import BenchError, Endpoint


@click.command()
@click.option(
    "--context-lengths", default="128,2048,16384", show_default=True, callback=common.int_list
)
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
@common.server_options
@common.output_options
@common.guarded()
def logits(**kw: Any) -> None:
    """Top-k logprobs per position: KL, top-1 agreement, |Δ logprob|, greedy divergence."""
    from sglang_sage_ext.cli.bench import client, prompts
    from sglang_sage_ext.cli.bench import logits as lg

    limits = thresholds.parse_fail_if(kw["fail_if"], lg.GATES)
    opts = common.server_opts(kw)
    samples: dict[str, list[lg.Sample]] = {}
    prompt_sets: dict[str, list] = {}
    score_last = kw["score_last"] or None

    def workload(ep: Endpoint) -> dict[str, Any]:
        common.check_fits(ep, lg.longest_request(kw["context_lengths"], kw["max_new_tokens"]))
        if "p" not in prompt_sets:
            vocab = prompts.vocab_size(opts.model_path, client.model_info(ep.base_url))
            prompt_sets["p"] = lg.make_prompts(
                kw["context_lengths"], kw["prompts_per_length"], vocab, opts.seed
            )
        batch = prompt_sets["p"]
        out = []
        with ui.progress() as bar:
            advance = common.advance_bar(bar, f"logits {ep.backend}", len(batch))
            for _, ids in batch:
                out.append(
                    lg.query(ep.base_url, ids, score_last, kw["top_k"], kw["max_new_tokens"])
                )
                advance()
        samples[ep.role] = out
        return {"requests": len(out), "positions": sum(len(s.tops) for s in out)}

    run = runner.run_both(opts, "logits", workload)
    try:
        comparison = lg.compare_samples(samples["sage"], samples["baseline"])
    except client.ClientError as exc:
        raise BenchError(str(exc)) from None
    if not comparison.get("all", {}).get("positions") and not limits:
        # with --fail-if the gates fail on the missing values (exit 3); without, never exit 0
        raise BenchError("no position had top logprobs on both servers: nothing was compared")
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
    common.finish(
        doc, "logits", kw, lg.gates(comparison), limits, "no position had logprobs on both servers"
    )


def _served_tokenizer(base_url: str) -> str:
    """The tokenizer (or model) path an attached server reports."""
    from sglang_sage_ext.cli.bench import client

    info = client.model_info(base_url)
    path = info.get("tokenizer_path") or info.get("model_path")
    if not path:
        raise BenchError(
            f"the server at {base_url} does not report its tokenizer; pass --tokenizer PATH"
        )
    return str(path)


def _tokenized(text: str, source: str, tokenizer: str, kw: dict[str, Any]) -> dict[str, Any]:
    """The first --max-tokens ids of `text` and their windows (BenchError when < 2 tokens)."""
    from sglang_sage_ext.cli.bench import metrics
    from sglang_sage_ext.cli.bench import perplexity as pp

    try:
        ids, bos = pp.tokenize(text, tokenizer)
    except pp.TextError as exc:
        raise BenchError(str(exc)) from None
    ids = ids[: kw["max_tokens"]]
    if len(ids) < 2:
        raise BenchError(f"{source}: fewer than 2 tokens to score")
    windows = metrics.sliding_windows(len(ids), kw["context_length"], kw["stride"])
    head = 0 if bos is None else 1
    need = capacity.Need(
        max(end - begin for begin, end, _ in windows) + head, 1, "--context-length", extra=head
    )
    return {"ids": ids, "bos": bos, "tokenizer": tokenizer, "windows": windows, "need": need}


def _load_text(kw: dict[str, Any]) -> tuple[str, str]:
    """(text, source) from --text-file or --hf-dataset; exactly one of them is required."""
    from sglang_sage_ext.cli.bench import perplexity as pp

    if not kw["text_file"] and not kw["hf_dataset"]:
        raise click.UsageError("give --text-file FILE or --hf-dataset NAME[:CONFIG[:SPLIT]]")
    if kw["text_file"] and kw["hf_dataset"]:
        raise click.UsageError("give --text-file or --hf-dataset, not both")
    try:
        return pp.load_text(kw["text_file"], kw["hf_dataset"])
    except pp.TextError as exc:
        raise BenchError(str(exc)) from None


def _early_tokenizer(kw: dict[str, Any]) -> str | None:
    """The tokenizer to load before any server starts: --tokenizer, or a launch model path
    that exists (a missing one is the launch check's to report)."""
    from sglang_sage_ext.cli.bench import servers

    if kw["tokenizer"]:
        return str(kw["tokenizer"])
    model = kw["model_path"]
    if model and servers.model_path_problem(str(model)) is None:
        return str(model)
    return None


def _perplexity_table(
    results: dict[str, Any], comparison: dict[str, Any], baseline: str, title: str
) -> None:
    from sglang_sage_ext.cli.bench import metrics

    s, b = results["sage"], results["baseline"]
    rel = metrics.relative_change(s["perplexity"], b["perplexity"])
    ui.table(
        f"perplexity ({s['tokens']} tokens, {title})",
        ["metric", "sage_attn", baseline, "change"],
        [
            ["perplexity", s["perplexity"], b["perplexity"], ui.pct(rel)],
            ["mean NLL", s["nll_mean"], b["nll_mean"], ""],
            ["mean |Δ logprob|", comparison["mean_abs_logprob_diff"], "", ""],
            ["max |Δ logprob|", comparison["max_abs_logprob_diff"], "", ""],
        ],
    )


@click.command()
@click.option("--text-file", type=click.Path(dir_okay=False), help="Plain text to score.")
@click.option("--hf-dataset", help="NAME[:CONFIG[:SPLIT]], e.g. wikitext:wikitext-2-raw-v1:test.")
@click.option("--tokenizer", help="Tokenizer dir (default: the model's).")
@click.option("--context-length", type=click.IntRange(min=2), default=2048, show_default=True)
@click.option("--stride", type=click.IntRange(min=1), help="Default: context length / 2.")
@click.option("--max-tokens", type=click.IntRange(min=2), default=65536, show_default=True)
@common.server_options
@common.output_options
@common.guarded()
def perplexity(**kw: Any) -> None:
    """Token-level perplexity over sliding windows, both backends, delta in %."""
    from sglang_sage_ext.cli.bench import perplexity as pp

    limits = thresholds.parse_fail_if(kw["fail_if"], pp.GATES)
    opts = common.server_opts(kw)
    stride = kw["stride"] = kw["stride"] or max(1, kw["context_length"] // 2)
    if stride > kw["context_length"]:
        raise click.BadParameter("must be <= --context-length", param_hint="--stride")
    text, source = _load_text(kw)
    state: dict[str, Any] = {}
    early = _early_tokenizer(kw)
    if early:  # a bad tokenizer or a text without tokens fails now, not after a launch
        state.update(_tokenized(text, source, early, kw))
    lps: dict[str, list[float]] = {}

    def workload(ep: Endpoint) -> dict[str, Any]:
        if "ids" not in state:
            state.update(_tokenized(text, source, _served_tokenizer(ep.base_url), kw))
        common.check_fits(ep, state["need"])
        windows = state["windows"]
        with ui.progress() as bar:
            advance = common.advance_bar(bar, f"perplexity {ep.backend}", len(windows))
            lps[ep.role] = pp.score_windows(
                ep.base_url, state["ids"], windows, state["bos"], advance
            )
        return pp.summarize(lps[ep.role])

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
        title = f"window {kw['context_length']}, stride {stride}"
        _perplexity_table(run["results"], comparison, opts.baseline, title)
    gate = {"ppl_increase_pct": comparison["ppl_increase_pct"]}
    common.finish(doc, "perplexity", kw, gate, limits, "no token scored on both servers")
