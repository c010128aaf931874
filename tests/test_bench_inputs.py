"""The lower-severity findings of the fault-injection pass (2026-11-28), each fixed: a context
longer than the server takes, perplexity inputs found bad only after a launch, bare NaN in
result files, results lost to a failed write, an empty MMLU dev CSV run 0-shot, and a dangling
result symlink skipped by `report`. Each is one line with the documented exit code."""

from __future__ import annotations

import errno
import json
import math
import pathlib

import pytest

from sglang_sage_ext.cli.bench import capacity, results, runner
from tests.fixtures.fake_sglang import FakeModel, fake_server
from tests.test_bench_hardening import LOGITS, THROUGHPUT, _clean, _invoke

PERPLEXITY_TEXT = "def add(a, b):\n    return a + b\n" * 40


def _strict(text):
    """json.loads that rejects NaN/Infinity the way strict parsers (jq, JavaScript) do."""

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------- 1: context length limit


def _perplexity_args(tmp_path, tokenizer, context):
    text = tmp_path / "text.txt"
    text.write_text(PERPLEXITY_TEXT)
    args = ["perplexity", "--text-file", str(text), "--tokenizer", str(tokenizer)]
    return [*args, "--context-length", str(context)]


@pytest.mark.parametrize(
    ("command", "option", "kv_tokens", "cause"),
    [
        ("logits", "--context-lengths <= 39", 100_000, "the model's context length"),
        ("throughput", "--input-lens <= 39", 100_000, "the model's context length"),
        ("perplexity", "--context-length <=", 46, "its KV cache holds 46 tokens"),
    ],
)
def test_a_context_longer_than_the_server_takes_is_refused_before_any_request(
    tmp_path, tiny_model_dir, command, option, kv_tokens, cause
):
    args = {
        "logits": [*LOGITS[:2], "64", *LOGITS[3:]],
        "throughput": [*THROUGHPUT[:2], "64", *THROUGHPUT[3:]],
        "perplexity": _perplexity_args(tmp_path, tiny_model_dir, 64),
    }[command]
    sage = FakeModel("sage_attn", max_req_input_len=40, max_total_num_tokens=kv_tokens)
    with fake_server(sage) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke([*args, "--sage-url", s_url, "--baseline-url", b_url], tmp_path / "o")
    _clean(res, 2, "do not fit", "at most 39 tokens", cause, option)
    assert sage.requests == []  # refused before the first request, warmup included
    assert not (tmp_path / "o" / f"{command}.json").exists()


def test_the_longest_prompt_that_fits_is_not_refused(tmp_path):
    sage = FakeModel("sage_attn", max_req_input_len=40, max_total_num_tokens=100_000)
    base = FakeModel(max_req_input_len=40, max_total_num_tokens=100_000)
    with fake_server(sage) as s_url, fake_server(base) as b_url:
        urls = ["--sage-url", s_url, "--baseline-url", b_url]
        res = _invoke([*LOGITS[:2], "39", *LOGITS[3:], *urls], tmp_path)
    _clean(res, 0)


def test_the_fit_follows_sglangs_rules():
    # SGLang: prompt < max_req_input_len, and new tokens clipped to max_req_len - prompt - 1
    # with max_req_len = max_req_input_len + 5
    assert capacity.largest_prompt(40, 1) == 39
    assert capacity.largest_prompt(40, 10) == 34
    info = {"max_req_input_len": 40}
    assert capacity.problem(capacity.Need(34, 10, "--x"), info) is None
    assert "use --x <= 34" in capacity.problem(capacity.Need(35, 10, "--x"), info)
    assert "generate fewer tokens" in capacity.problem(capacity.Need(2, 60, "--x"), info)
    assert capacity.problem(capacity.Need(10**6, 1, "--x"), {}) is None  # limit unknown


def test_a_length_refusal_without_a_reported_limit_names_the_length(tmp_path):
    sage = FakeModel("sage_attn", max_req_input_len=40, report_limit=False)
    with fake_server(sage) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke(
            [*LOGITS[:2], "64", *LOGITS[3:], "--sage-url", s_url, "--baseline-url", b_url],
            tmp_path,
        )
    _clean(res, 1, "HTTP 400", "maximum allowed length", "longer than this server takes")
    assert "check that it is a working SGLang server" not in res.output


# ---------------------------------------------------------------- 2: inputs before a launch


@pytest.fixture
def no_launch(monkeypatch):
    """Fail the test's expectation loudly if bench tries to start a server."""
    started = []

    def refuse(*args, **kwargs):
        started.append(kwargs.get("attention_backend"))
        raise RuntimeError("a server was started")

    monkeypatch.setattr(runner.servers, "start_server", refuse)
    return started


@pytest.mark.parametrize(
    ("text", "tokenizer", "needle"),
    [
        ("", None, "is empty (no text to score)"),
        (" \n\n ", None, "is empty (no text to score)"),
        (PERPLEXITY_TEXT, "/nonexistent/tokenizer", "does not exist; pass --tokenizer"),
        (PERPLEXITY_TEXT, "empty-dir", "cannot load the tokenizer from"),
    ],
)
def test_bad_perplexity_inputs_fail_before_any_server_starts(
    tmp_path, tiny_model_dir, no_launch, text, tokenizer, needle
):
    path = tmp_path / "text.txt"
    path.write_text(text)
    if tokenizer == "empty-dir":
        tokenizer = tmp_path / "empty-dir"
        tokenizer.mkdir()
    args = ["perplexity", "--model-path", str(tiny_model_dir), "--text-file", str(path)]
    args += ["--tokenizer", str(tokenizer)] if tokenizer else []
    res = _invoke(args, tmp_path / "o")
    _clean(res, 1, needle)
    assert no_launch == []
    assert not (tmp_path / "o" / "logs").exists()


# ---------------------------------------------------------------- 3: strict JSON


def test_result_files_are_strict_json_and_report_reads_old_and_new(tmp_path):
    out = tmp_path / "o"
    # one output token: no TPOT (NaN statistics), as bench_serving
    args = [*THROUGHPUT[:4], "1", *THROUGHPUT[5:]]
    with fake_server(FakeModel("sage_attn")) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke([*args, "--sage-url", s_url, "--baseline-url", b_url], out)
        printed = _invoke([*args, "--json", "--sage-url", s_url, "--baseline-url", b_url], out)
    _clean(res, 0)
    _clean(printed, 0)
    assert ": NaN" not in printed.output  # a bare token; "NaN" in non_finite is a string
    text = (out / "throughput.json").read_text()
    doc = _strict(text)
    pointer = "/results/sage/points/in16_out1_c1/tpot_ms/median"
    assert doc["non_finite"][pointer] == "NaN"
    assert doc["results"]["sage"]["points"]["in16_out1_c1"]["tpot_ms"]["median"] is None
    restored = results.loads(text)
    assert math.isnan(restored["results"]["sage"]["points"]["in16_out1_c1"]["tpot_ms"]["median"])
    assert "non_finite" not in restored

    _clean(_invoke(["report", "--no-plots"], out), 0)
    _strict((out / "report.json").read_text())
    # a file from before strict JSON (bare NaN) reads the same
    (out / "throughput.json").write_text(json.dumps(restored))
    _clean(_invoke(["report", "--no-plots"], out), 0)
    _strict((out / "report.json").read_text())


def test_non_finite_values_and_odd_keys_round_trip():
    doc = {"a": math.nan, "b": [1.0, math.inf], "c/d": {"e~": -math.inf}, "p": pathlib.Path("x")}
    text = results.dumps(doc)
    strict = _strict(text)
    assert strict["non_finite"] == {"/a": "NaN", "/b/1": "Infinity", "/c~1d/e~0": "-Infinity"}
    back = results.loads(text)
    assert math.isnan(back["a"]) and back["b"] == [1.0, math.inf]
    assert back["c/d"]["e~"] == -math.inf and back["p"] == "x"


# ---------------------------------------------------------------- 4: a failed write


@pytest.mark.parametrize("kind", ["dir", "dangling"])
def test_a_result_file_that_cannot_be_replaced_is_refused_before_the_workload(tmp_path, kind):
    out = tmp_path / "o"
    out.mkdir()
    if kind == "dir":
        (out / "mmlu.json").mkdir()
    else:
        (out / "mmlu.json").symlink_to(tmp_path / "gone" / "mmlu.json")
    sage, base = FakeModel("sage_attn"), FakeModel()
    with fake_server(sage) as s_url, fake_server(base) as b_url:
        res = _invoke(["mmlu", "--sage-url", s_url, "--baseline-url", b_url], out)
    _clean(res, 2, "mmlu.json", "-o/--output-dir")
    assert sage.requests == [] and base.requests == []


@pytest.mark.parametrize(("gate", "code"), [([], 5), (["--fail-if", "mmlu_drop=-1"], 3)])
def test_a_failed_final_write_keeps_the_summary(tmp_path, monkeypatch, gate, code):
    real = pathlib.Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name == "mmlu.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", disk_full)
    with fake_server(FakeModel("sage_attn")) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke(
            ["mmlu", "--num-questions", "4", "--sage-url", s_url, "--baseline-url", b_url, *gate],
            tmp_path,
        )
    _clean(res, code, "MMLU (4 questions)", "answer agreement")  # the summary table
    _clean(res, code, "could not be written (No space left on device)", "free space or fix -o")
    assert not (tmp_path / "mmlu.json").exists()


def test_drift_keeps_its_results_when_the_plot_cannot_be_written(tmp_path, monkeypatch):
    from sglang_sage_ext.cli.bench import drift, report_plots

    part = {"rel_l2": 0.01, "max_abs": 0.1, "cosine": 0.99}
    layer = {"layer": 0, **part, "rel_l2": math.nan, "rel_l2_mean": math.nan}
    final = {"hidden": part, "logits": {**part, "kl_mean": 1e-4, "top1_agreement": 1.0}}
    monkeypatch.setattr(drift, "environment_problem", lambda *a, **k: None)
    monkeypatch.setattr(drift, "run", lambda *a, **k: {"layers": [layer], "final": final})
    monkeypatch.setattr(report_plots, "require_matplotlib", lambda: None)

    def no_space(doc, output_dir):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_plots, "plot_drift", no_space)
    res = _invoke(["drift", "--model-path", "m"], tmp_path)
    _clean(res, 0, "cannot write drift_layers.png", "No space left on device")
    doc = _strict((tmp_path / "drift.json").read_text())
    assert doc["plot"] is None and doc["layers"][0]["rel_l2"] is None
    assert doc["non_finite"] == {
        "/layers/0/rel_l2": "NaN",
        "/layers/0/rel_l2_mean": "NaN",
        "/gates/drift_rel_l2_max": "NaN",
    }


def test_demo_exits_5_when_demo_json_cannot_be_written(tmp_path, monkeypatch, capsys):
    from sglang_sage_ext.cli import demo

    def no_space(*args):
        raise results.ResultWriteError("demo.json could not be written (No space left)")

    monkeypatch.setattr(results, "write", no_space)
    with pytest.raises(results.ResultWriteError) as lost:
        demo._finish({}, tmp_path, None, cpu=False)
    assert lost.value.exit_code == 5
    with pytest.raises(SystemExit) as stopped:  # a run without Sage keeps its code 4
        demo._finish({}, tmp_path, "never ran Sage", cpu=False)
    assert stopped.value.code == 4
    captured = capsys.readouterr()
    assert "FAILED: never ran Sage" in captured.out and "could not be written" in captured.err


# ---------------------------------------------------------------- 5: MMLU few-shot examples


def _mmlu_data(root, dev_rows):
    for sub in ("dev", "test"):
        (root / sub).mkdir(parents=True)
    (root / "dev" / "x_dev.csv").write_text("".join(f"d{i},a,b,c,d,A\n" for i in range(dev_rows)))
    (root / "test" / "x_test.csv").write_text("What is one?,1,2,3,4,A\n")
    return root


def test_an_empty_dev_csv_is_refused_unless_0_shot_is_asked(tmp_path):
    data = _mmlu_data(tmp_path / "d", 0)
    urls = ["--sage-url", "http://127.0.0.1:9", "--baseline-url", "http://127.0.0.1:9"]
    res = _invoke(["mmlu", "--data-dir", str(data), *urls], tmp_path / "o")
    _clean(res, 1, "no few-shot examples for x", "--ntrain 5", "--ntrain 0")

    sage = FakeModel("sage_attn")
    with fake_server(sage) as s_url, fake_server(FakeModel()) as b_url:
        urls = ["--sage-url", s_url, "--baseline-url", b_url]
        res = _invoke(["mmlu", "--data-dir", str(data), "--ntrain", "0", *urls], tmp_path / "o")
    _clean(res, 0)
    assert sage.requests[0]["text"].endswith(
        "about x.\n\nWhat is one?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    )


def test_fewer_dev_examples_than_ntrain_are_said(tmp_path):
    data = _mmlu_data(tmp_path / "d", 2)
    with fake_server(FakeModel("sage_attn")) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke(
            ["mmlu", "--data-dir", str(data), "--sage-url", s_url, "--baseline-url", b_url],
            tmp_path / "o",
        )
    _clean(res, 0, "x has 2 few-shot examples, fewer than --ntrain 5", "2-shot")


# ---------------------------------------------------------------- 6: dangling symlinks


def test_report_names_a_dangling_result_symlink(tmp_path):
    doc = {
        "kind": "perplexity",
        "results": {"sage": {"perplexity": 2.0}, "baseline": {"perplexity": 2.0}},
        "comparison": {
            "perplexity_sage": 2.0,
            "perplexity_baseline": 2.0,
            "ppl_increase_pct": 0.0,
            "mean_abs_logprob_diff": 0.0,
        },
    }
    (tmp_path / "perplexity.json").write_text(json.dumps(doc))
    _clean(_invoke(["report", "--no-plots"], tmp_path), 0)  # a valid report on its own
    (tmp_path / "logits.json").symlink_to(tmp_path / "moved" / "logits.json")
    res = _invoke(["report", "--no-plots"], tmp_path)
    _clean(res, 1, "logits.json is a symlink to", "which does not exist", "remove the link")
