"""`bench` against servers whose answers are wrong in ways that used to pass silently (a
fault-injection pass, 2026-11-28): NaN or impossible logprobs, misaligned prompt positions,
short or partly failed streams, a baseline that is sage_attn, NaN limits; and input that used
to surface as an internal error. Each must be one line with the documented exit code."""

from __future__ import annotations

import json
import math

import pytest

from sglang_sage_ext.cli.bench import drift, thresholds
from tests.fixtures.fake_sglang import FakeModel, fake_server
from tests.test_bench_hardening import LOGITS, THROUGHPUT, _clean, _invoke

PERPLEXITY_TEXT = "def add(a, b):\n    return a + b\n" * 40


@pytest.mark.parametrize(
    ("fault", "command", "needle"),
    [
        ("nan_last", LOGITS, "(NaN or > 0): this server's model output is broken"),
        ("trunc_in", LOGITS, "scored different prompt positions"),
        ("short_stream", THROUGHPUT, "the stream returned 2 of 4 tokens"),
        ("half_fail", THROUGHPUT, "1 of 2 requests of grid point"),
    ],
)
def test_wrong_answers_of_the_sage_server_fail(tmp_path, fault, command, needle):
    with (
        fake_server(FakeModel("sage_attn", fault=fault)) as s_url,
        fake_server(FakeModel()) as b_url,
    ):
        res = _invoke(
            [*command, "--sage-url", s_url, "--baseline-url", b_url, "--fail-if", "kl_max=1"]
            if command is LOGITS
            else [*command, "--sage-url", s_url, "--baseline-url", b_url],
            tmp_path,
        )
    _clean(res, 1, needle)


def test_impossible_perplexity_logprobs_fail(tmp_path, tiny_model_dir):
    text = tmp_path / "text.txt"
    text.write_text(PERPLEXITY_TEXT)
    with (
        fake_server(FakeModel("sage_attn", fault="positive_lp")) as s_url,
        fake_server(FakeModel()) as b_url,
    ):
        urls = ["--sage-url", s_url, "--baseline-url", b_url]
        args = ["--text-file", str(text), "--tokenizer", str(tiny_model_dir)]
        res = _invoke(["perplexity", *args, "--context-length", "64", *urls], tmp_path / "o")
    _clean(res, 1, "is not a finite value <= 0")


def test_a_baseline_that_reports_sage_attn_is_refused(tmp_path):
    with fake_server(FakeModel("sage_attn")) as s_url, fake_server(FakeModel("sage_attn")) as b:
        res = _invoke([*LOGITS, "--sage-url", s_url, "--baseline-url", b], tmp_path)
    _clean(res, 1, "the baseline must be another backend than sage_attn")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fail-if", "kl_max=nan"], "the limit must be a finite number"),
        (["--fail-if", "kl_max=1", "--fail-if", "kl_max=2"], "is given twice"),
        (["--timeout", "nan"], "nan is not a finite number"),
        (["--sage-stats-dir", "/nonexistent/stats"], "does not exist"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, args, needle):
    urls = ["--sage-url", "http://127.0.0.1:9", "--baseline-url", "http://127.0.0.1:9"]
    res = _invoke([*LOGITS, *urls, *args], tmp_path)
    _clean(res, 2, needle)


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://127.0.0.1:9/ a b", "http://127.0.0.1:99999", "http://:80"]
)
def test_malformed_urls_are_usage_errors(tmp_path, url):
    res = _invoke([*LOGITS, "--sage-url", url, "--baseline-url", "http://127.0.0.1:9"], tmp_path)
    _clean(res, 2, "--sage-url", "is not a valid URL")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ([], "another kind of file"),
        ({"kind": "mmlu"}, "missing results, comparison"),
        ({"kind": "logits", "results": {}, "comparison": {}}, "another kind of file"),
    ],
)
def test_report_refuses_files_of_the_wrong_shape(tmp_path, content, needle):
    (tmp_path / "mmlu.json").write_text(json.dumps(content))
    res = _invoke(["report", "--no-plots"], tmp_path)
    _clean(res, 1, "is not a `sglang-sage bench mmlu` result", needle)


def test_a_nan_layer_fails_the_drift_gate():
    result = {
        "layers": [{"rel_l2": 0.0}, {"rel_l2": math.nan}],
        "final": {"logits": {"kl_mean": 0.0}},
    }
    gates = drift.gates(result)
    assert math.isnan(gates["drift_rel_l2_max"])
    rows = thresholds.check(gates, {"drift_rel_l2_max": 0.01})
    assert rows[0]["failed"] and "NaN" in rows[0]["reason"]


def test_parallel_map_keeps_order_and_raises_the_first_error():
    from sglang_sage_ext.cli.bench import client

    assert client.parallel_map(lambda x: x * x, list(range(20)), 3) == [x * x for x in range(20)]
    assert client.parallel_map(str, [], 4) == []

    def boom(x):
        if x == 5:
            raise client.ClientError("request 5 failed")
        return x

    with pytest.raises(client.ClientError, match="request 5 failed"):
        client.parallel_map(boom, list(range(10)), 2)


def test_text_file_and_hf_dataset_together_is_a_usage_error(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(PERPLEXITY_TEXT)
    urls = ["--sage-url", "http://127.0.0.1:9", "--baseline-url", "http://127.0.0.1:9"]
    res = _invoke(
        ["perplexity", "--text-file", str(text), "--hf-dataset", "wikitext", *urls], tmp_path
    )
    _clean(res, 2, "not both")


def test_more_questions_than_the_data_has_is_said(tmp_path):
    with fake_server(FakeModel("sage_attn")) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke(
            ["mmlu", "--num-questions", "100000", "--sage-url", s_url, "--baseline-url", b_url],
            tmp_path,
        )
    _clean(res, 0, "--num-questions 100000: the selected subjects have")
