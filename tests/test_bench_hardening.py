"""Issue 12, `bench`: every bad input and every failed or malformed server reply is one clear
line with the documented exit code (never a traceback, never a silent pass), in every
subcommand and phase; gates without a value fail; a run that never ran Sage fails."""

from __future__ import annotations

import json
import sys

import click
import pytest
from click.testing import CliRunner

from sglang_sage_ext.cli.bench import server_args, verdict
from sglang_sage_ext.cli.main import main
from tests.fixtures.fake_sglang import FakeModel, fake_server, perplexity_attach_args


def _invoke(args, out=None):
    extra = [] if out is None else ["-o", str(out)]
    return CliRunner().invoke(main, ["bench", args[0], *extra, *args[1:]])


def _clean(res, code, *needles):
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output, res.output
    for needle in needles:
        assert needle in res.output, res.output


THROUGHPUT = ["throughput", "--input-lens", "16", "--output-lens", "4", "--concurrency", "1"]
THROUGHPUT += ["--num-prompts", "2"]
LOGITS = ["logits", "--context-lengths", "16", "--prompts-per-length", "1"]
LOGITS += ["--max-new-tokens", "2"]


# ---------------------------------------------------------------- failed / malformed replies


@pytest.mark.parametrize(
    ("fault", "command", "needles"),
    [
        ("http500", THROUGHPUT, ["while warming up", "HTTP 500"]),  # warmup phase
        ("not_json", THROUGHPUT, ["while warming up", "warmup request failed"]),
        ("http500", ["mmlu", "--num-questions", "2"], ["HTTP 500"]),
        ("not_json", ["mmlu", "--num-questions", "2"], ["not JSON"]),
        ("list", ["mmlu", "--num-questions", "2"], ["JSON list, not an object"]),
        ("no_meta", ["mmlu", "--num-questions", "2"], ["without meta_info"]),
        ("no_logprobs", LOGITS, ["meta_info.input_top_logprobs is missing"]),
        ("list", LOGITS, ["JSON list"]),
    ],
)
def test_bad_server_replies_are_one_line_errors(tmp_path, fault, command, needles):
    with (
        fake_server(FakeModel("sage_attn", fault=fault)) as s_url,
        fake_server(FakeModel()) as b_url,
    ):
        res = _invoke([*command, "--sage-url", s_url, "--baseline-url", b_url], tmp_path)
    _clean(res, 1, "Error:", "sage_attn server", *needles)
    error_lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1


def test_perplexity_reply_without_logprobs(tmp_path, tiny_model_dir):
    text = tmp_path / "t.txt"
    text.write_text("hello world, " * 30)
    with (
        fake_server(FakeModel("sage_attn", fault="no_logprobs")) as s_url,
        fake_server(FakeModel()) as b_url,
    ):
        args = perplexity_attach_args(s_url, b_url, text, tiny_model_dir, 32)
        res = _invoke(args, tmp_path / "o")
    _clean(res, 1, "meta_info.input_token_logprobs is missing")


# ---------------------------------------------------------------- bad input (exit 2 / 1)


def test_output_dir_is_checked_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    sage, base = FakeModel("sage_attn"), FakeModel()
    with fake_server(sage) as s_url, fake_server(base) as b_url:
        res = _invoke(
            ["mmlu", "--sage-url", s_url, "--baseline-url", b_url, "-o", str(blocker / "sub")]
        )
    _clean(res, 2, "cannot write into", "-o/--output-dir")
    assert sage.requests == [] and base.requests == []  # nothing ran, nothing lost


def test_report_needs_an_existing_dir(tmp_path):
    _clean(_invoke(["report", "-o", str(tmp_path / "missing")]), 2, "is not a directory")


@pytest.mark.parametrize(
    ("tokens", "needle"),
    [
        (["--server-args", "--json-model-override-args '{"], "unbalanced quote"),
        (["--server-args", "--ho 0.0.0.0"], "beyond loopback"),  # abbreviation of --host
        (["--server-args", "--host=::"], "beyond loopback"),
        (["--server-args", "--host 127.0.0.1"], "127.0.0.1 only"),
        (["--server-args", "--trust-remote-code"], "remote code"),
        (["--server-args", "--trust-rem"], "remote code"),
        (["--server-args", "--model-pa /elsewhere"], "--model-path"),
        (["--server-args", "--attention-backend=fa3"], "--attention-backend"),
        (["--server-args", "--port 30000"], "--port"),
        (["--", "--host", "10.0.0.1"], "beyond loopback"),  # after `--` too
        (["--server-args", "--dist-init-addr 0.0.0.0:5000"], "beyond loopback"),
        (["--server-args", "--no-such-flag-at-all 1"], "SGLang's parser says"),
    ],
)
def test_server_args_are_refused_before_launch(tmp_path, tokens, needle):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    res = _invoke(["mmlu", "--model-path", str(model), *tokens], tmp_path / "o")
    _clean(res, 2, needle)
    assert not (tmp_path / "o" / "logs").exists()  # no server was started


def test_server_args_fallback_checks_names_and_prefixes(monkeypatch):
    for tokens in (["--ho", "0.0.0.0"], ["--po=1"], ["--trust"], ["--model-path", "x"]):
        with pytest.raises(click.UsageError):
            server_args.check_by_name(tokens)
    server_args.check_by_name(["--mem-fraction-static", "0.5", "--tp", "2"])
    monkeypatch.setattr(server_args, "sglang_parser_problem", lambda: "ImportError: no sglang")
    note = server_args.vet(["--mem-fraction-static", "0.5"])
    assert note and "flag names and their prefixes only" in note
    with pytest.raises(click.UsageError, match="may abbreviate --host"):
        server_args.vet(["--ho", "0.0.0.0"])


def test_allowed_server_args_pass_sglangs_parser():
    assert server_args.vet(["--mem-fraction-static", "0.5", "--tp", "1"]) is None
    assert server_args.vet(["--disable-cuda-graph"]) is None


def test_launch_without_sglang_is_one_line(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for name in ("sglang", "sglang.srt", "sglang.srt.server_args"):
        monkeypatch.setitem(sys.modules, name, None)
    res = _invoke(["mmlu", "--model-path", str(model)], tmp_path / "o")
    _clean(res, 1, "launching servers needs SGLang", "--sage-url")


def _mmlu_dir(tmp_path, test_bytes):
    (tmp_path / "dev").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "dev" / "x_dev.csv").write_text("q,a,b,c,d,A\n")
    (tmp_path / "test" / "x_test.csv").write_bytes(test_bytes)
    return tmp_path


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"q,a,b,c,d,A\n\xff\xfe bad,a,b,c,d,B\n", "not UTF-8"),
        (b'"' + b"x" * 300_000 + b'",a,b,c,d,A\n', "field larger than field limit"),
        (b"q,a,b,c,d,A,extra\n", "got 7 columns"),
        (b"q,a,b,c,d,E\n", "answer in A-D"),
        (b"\n\n", "no test questions"),
    ],
)
def test_bad_mmlu_csvs(tmp_path, content, needle):
    root = tmp_path / "d"
    root.mkdir()
    data = _mmlu_dir(root, content)
    res = _invoke(
        ["mmlu", "--data-dir", str(data), "--sage-url", "http://x", "--baseline-url", "http://y"],
        tmp_path / "o",
    )
    _clean(res, 1, needle)


def test_text_file_not_utf8(tmp_path):
    text = tmp_path / "t.bin"
    text.write_bytes(b"\x00\xff\xfe\x80")
    res = _invoke(
        [
            "perplexity",
            "--text-file",
            str(text),
            "--sage-url",
            "http://x",
            "--baseline-url",
            "http://y",
        ],
        tmp_path / "o",
    )
    _clean(res, 1, "not UTF-8")


# ---------------------------------------------------------------- gates and the Sage verdict


def test_gate_without_value_fails_with_reason(tmp_path):
    with (
        fake_server(FakeModel("sage_attn", fault="null_tops")) as s_url,
        fake_server(FakeModel(fault="null_tops")) as b_url,
    ):
        res = _invoke(
            [*LOGITS, "--sage-url", s_url, "--baseline-url", b_url, "--fail-if", "kl_mean=1"],
            tmp_path,
        )
    _clean(res, 3, "kl_mean: no value")
    doc = json.loads((tmp_path / "logits.json").read_text())
    assert doc["thresholds"][0]["failed"] is True


@pytest.mark.parametrize(("allow", "code"), [(False, verdict.EXIT_NO_SAGE), (True, 0)])
def test_run_that_never_ran_sage(tmp_path, allow, code):
    stats = tmp_path / "stats"
    stats.mkdir()
    sage = FakeModel("sage_attn", stats_dir=str(stats), fallback_reason="no_cuda")
    with fake_server(sage) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke(
            ["mmlu", "--num-questions", "2", "--sage-url", s_url, "--baseline-url", b_url]
            + ["--sage-stats-dir", str(stats), "--fail-if", "mmlu_drop=0.5"]
            + (["--allow-no-sage"] if allow else []),
            tmp_path / "o",
        )
    _clean(res, code, "never ran Sage", "no_cuda=2", "not a measurement")
    doc = json.loads((tmp_path / "o" / "mmlu.json").read_text())  # results are kept
    assert doc["sage_ran"] is False
    assert doc["thresholds"][0]["failed"] is (not allow)


def test_interpreter_runs_get_a_caveat(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with fake_server(FakeModel("sage_attn")) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke(
            ["mmlu", "--num-questions", "2", "--sage-url", s_url, "--baseline-url", b_url],
            tmp_path,
        )
    _clean(res, 0, "caveat: Triton interpreter", "not a measurement")
