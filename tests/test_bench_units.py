"""Unit tests of `sglang-sage bench`: metric math, MMLU prompt/scorer, option parsing."""

from __future__ import annotations

import math
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from sglang_sage_ext.cli.bench import metrics, mmlu, runner, thresholds
from sglang_sage_ext.cli.main import main


def test_percentile_matches_numpy_linear():
    assert metrics.percentile([1, 2, 3, 4], 50) == 2.5
    assert metrics.percentile([1, 2, 3, 4], 99) == pytest.approx(3.97)
    assert metrics.percentile([5], 99) == 5
    assert math.isnan(metrics.percentile([], 50))


def test_serving_metrics_hand_computed():
    # two requests over 2 s: TTFT 0.1/0.3, latency 1.0/1.3, 10 output tokens each
    r1 = SimpleNamespace(
        success=True, ttft=0.1, latency=1.0, output_len=10, input_len=100, itl=[0.1] * 9
    )
    r2 = SimpleNamespace(
        success=True, ttft=0.3, latency=1.3, output_len=10, input_len=50, itl=[0.2] * 9
    )
    bad = SimpleNamespace(success=False, ttft=0, latency=0, output_len=0, input_len=7, itl=[])
    m = metrics.serving_metrics([r1, r2, bad], duration_s=2.0)
    assert m["completed"] == 2 and m["failed"] == 1
    assert m["request_throughput"] == 1.0
    assert m["input_throughput"] == 75.0
    assert m["output_throughput"] == 10.0
    assert m["ttft_ms"]["mean"] == pytest.approx(200.0)
    assert m["ttft_ms"]["median"] == pytest.approx(200.0)
    # TPOT = (latency - ttft) / (output_len - 1): 0.9/9 = 0.1 and 1.0/9
    assert m["tpot_ms"]["mean"] == pytest.approx((100.0 + 1000 / 9) / 2)
    assert m["itl_ms"]["mean"] == pytest.approx(150.0)
    assert m["itl_ms"]["p99"] == pytest.approx(200.0)
    assert metrics.tpot(1.0, 0.5, 1) is None


def test_topk_kl_and_agreement():
    ref = [(math.log(0.5), 1), (math.log(0.5), 2)]
    assert metrics.topk_kl(ref, ref) == 0.0
    other = [(math.log(0.75), 1), (math.log(0.25), 2)]
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert metrics.topk_kl(ref, other) == pytest.approx(expected)
    # an id missing from the other's top-k gets the other's smallest logprob
    missing = [(math.log(0.75), 1), (math.log(0.25), 3)]
    assert metrics.topk_kl(ref, missing) == pytest.approx(expected)
    assert metrics.top1_agreement([ref, ref], [other, [(0.0, 2)]]) == 0.5
    assert metrics.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert metrics.first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert metrics.first_divergence([1, 2], [1, 2, 3]) == 2


def test_perplexity_and_windows():
    assert metrics.perplexity([math.log(0.5)] * 4) == pytest.approx(2.0)
    spans = metrics.sliding_windows(10, 4, 2)
    assert spans == [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    scored = [i for _, end, first in spans for i in range(first, end)]
    assert scored == list(range(1, 10))  # every token after the first, exactly once
    with pytest.raises(ValueError):
        metrics.sliding_windows(10, 4, 5)


def test_relative_change_and_delta_table():
    assert metrics.relative_change(110, 100) == pytest.approx(0.1)
    assert metrics.relative_change(1, 0) is None
    t = metrics.delta_table({"a": 2.0, "b": None}, {"a": 1.0, "b": 3.0})
    assert t["a"] == {"sage": 2.0, "baseline": 1.0, "delta": 1.0, "rel": 1.0}
    assert t["b"]["delta"] is None


def test_builtin_fixture_layout_and_prompt():
    subjects = mmlu.load("builtin:mmlu_mini")
    assert [s.name for s in subjects] == sorted(s.name for s in subjects)
    assert len(subjects) == 5
    assert all(len(s.dev) == 5 and len(s.test) == 8 for s in subjects)
    astro = next(s for s in subjects if s.name == "astronomy")
    prompt = mmlu.fewshot_prefix(astro) + mmlu.format_example(astro.test[0], include_answer=False)
    assert prompt.startswith(
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
    )
    assert prompt.count("\nAnswer:") == 6  # 5 shots + the question
    assert prompt.endswith("\nD. 10\nAnswer:")
    assert "Answer: B\n\n" in prompt
    assert mmlu.format_subject("high_school_chemistry") == " high school chemistry"


def test_mmlu_selection_and_scoring():
    subjects = mmlu.load("builtin:mmlu_mini", ["astronomy", "computer_science"])
    qs = mmlu.select_questions(subjects, 3)
    assert [q.subject for q in qs] == ["astronomy", "computer_science", "astronomy"]
    assert mmlu.parse_prediction(" B\n") == "B" and mmlu.parse_prediction("  ") == ""
    preds = [qs[0].answer, "Z", qs[2].answer]
    s = mmlu.score(qs, preds)
    assert s["accuracy"] == pytest.approx(2 / 3)
    assert s["subjects"]["computer_science"]["accuracy"] == 0.0
    assert s["subjects"]["astronomy"]["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no dev/ and test/ folders"),
        (lambda d: ((d / "dev").mkdir(), (d / "test").mkdir()), "no *_test.csv"),
        (
            lambda d: (
                (d / "dev").mkdir(),
                (d / "test").mkdir(),
                (d / "test" / "x_test.csv").write_text("q,a,b,c,d,A\n"),
            ),
            "x_dev.csv is missing",
        ),
        (
            lambda d: (
                (d / "dev").mkdir(),
                (d / "test").mkdir(),
                (d / "dev" / "x_dev.csv").write_text("q,a,b,c,d,A\n"),
                (d / "test" / "x_test.csv").write_text("question,A,B,C,D,answer\nq,a,b\n"),
            ),
            "expected 6 columns",
        ),
    ],
)
def test_dataset_layout_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(mmlu.DatasetError, match=message.replace("*", r"\*")):
        mmlu.load(str(tmp_path))


def test_dataset_layout_error_is_a_clean_cli_error(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "mmlu",
            "--data-dir",
            str(tmp_path),
            "--sage-url",
            "http://x",
            "--baseline-url",
            "http://y",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    assert "MMLU CSV layout" in result.output
    assert "Traceback" not in result.output


def test_fail_if_parsing():
    assert thresholds.parse_fail_if(["kl_mean=0.01"], ["kl_mean"]) == {"kl_mean": 0.01}
    with pytest.raises(click.UsageError, match="not a gate of this command"):
        thresholds.parse_fail_if(["mmlu_drop=0.1"], ["kl_mean"])
    with pytest.raises(click.UsageError, match="NAME=LIMIT"):
        thresholds.parse_fail_if(["kl_mean"], ["kl_mean"])
    with pytest.raises(click.UsageError, match="not a number"):
        thresholds.parse_fail_if(["kl_mean=x"], ["kl_mean"])
    rows = thresholds.check(
        {"kl_mean": 0.02, "kl_max": None, "kl_mean2": 0.001},
        {"kl_mean": 0.01, "kl_max": 1, "kl_mean2": 0.01},
    )
    # a gate without a value fails: nothing was shown to be within the limit
    assert [r["failed"] for r in rows] == [True, True, False]
    assert rows[1]["reason"] == "kl_max: no value (nothing was measured)"


def test_server_args_parsing():
    assert runner.parse_server_args(["--mem-fraction-static 0.5"], ["--tp", "2"]) == [
        "--mem-fraction-static",
        "0.5",
        "--tp",
        "2",
    ]
    with pytest.raises(click.UsageError, match="unbalanced quote"):
        runner.parse_server_args(['--json-model-override-args \'{"a": 1}'], [])


@pytest.mark.parametrize(
    "args",
    [
        ["throughput", "--input-lens", "1024,x"],
        ["throughput", "--concurrency", "0"],
        ["logits", "--top-k", "50"],
        ["perplexity", "--context-length", "1"],
        ["mmlu", "--num-questions", "0"],
        ["drift"],  # --model-path is required
        ["throughput", "--unknown-flag"],
        ["mmlu", "--fail-if", "kl_mean=1", "--sage-url", "http://a", "--baseline-url", "http://b"],
    ],
)
def test_bad_options_are_usage_errors(args, tmp_path):
    result = CliRunner().invoke(main, ["bench", *args, "-o", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_help_of_every_subcommand():
    for cmd in ("throughput", "mmlu", "logits", "perplexity", "drift", "report"):
        result = CliRunner().invoke(main, ["bench", cmd, "--help"])
        assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert "kl_mean" in result.output and "3 a --fail-if gate exceeded" in result.output


def test_launch_needs_model_path_or_urls(tmp_path):
    result = CliRunner().invoke(main, ["bench", "mmlu", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "--model-path" in result.output


def test_drift_without_cuda_is_a_clear_error(tiny_model_dir, tmp_path):
    from sglang_sage_ext.cli.bench.drift import environment_problem

    problem = environment_problem(str(tiny_model_dir))
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        pytest.skip("CUDA present")
    assert problem and ("CUDA" in problem or "torch" in problem)
    result = CliRunner().invoke(
        main, ["bench", "drift", "--model-path", str(tiny_model_dir), "-o", str(tmp_path)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_drift_mechanics_on_cpu_with_a_stand_in_kernel(tiny_model_dir):
    """The attention hook, both passes and the per-layer records, with exact+noise as 'Sage'."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from sglang_sage_ext.cli.bench import drift

    def noisy(q, k, v, scale):
        out = drift.exact_attention(q, k, v, scale)
        return out + 1e-3 * torch.randn_like(out)

    torch.manual_seed(0)
    result = drift.run(
        str(tiny_model_dir), [16], 1, seed=0, dtype="float32", device="cpu", sage_fn=noisy
    )
    assert len(result["layers"]) >= 2
    assert all(0 < r["rel_l2"] < 0.1 and r["cosine"] > 0.99 for r in result["layers"])
    assert 0 < result["final"]["logits"]["kl_mean"] < 1e-2
    gates = drift.gates(result)
    assert gates["drift_rel_l2_max"] == max(r["rel_l2"] for r in result["layers"])


def test_perplexity_alignment_takes_the_tail_and_accepts_sglang_clipped_ids():
    """SGLang's first entry is null and ids >= vocab_size - 1 come back as 0."""
    from sglang_sage_ext.cli.bench.client import ClientError
    from sglang_sage_ext.cli.bench.perplexity import aligned_logprobs

    entries = [[None, 5, None], [-1.0, 6, None], [-2.0, 0, None], [-3.0, 8, None]]
    assert aligned_logprobs(entries, [6, 8191, 8], "w") == [-1.0, -2.0, -3.0]
    with pytest.raises(ClientError, match="do not line up"):
        aligned_logprobs(entries, [7, 8191, 8], "w")
    with pytest.raises(ClientError, match="expected 5 prompt logprobs, got 4"):
        aligned_logprobs(entries, [5, 6, 7, 8, 9], "w")
    with pytest.raises(ClientError, match="no logprob"):
        aligned_logprobs([[None, 1, None], [None, 2, None]], [2], "w")


def _sse_server(events: list[bytes]):
    """A real HTTP server on 127.0.0.1 whose /generate streams `events` (server-sent events)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for event in events:
                self.wfile.write(event + b"\n\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _event(tokens: int) -> bytes:
    return b'data: {"text": "x", "meta_info": {"completion_tokens": %d}}' % tokens


@pytest.mark.parametrize(
    ("events", "output_len", "itl_count", "error"),
    [
        # 1 token, then a chunk of 2, a repeat of 3 (no new token), 4: ITL per new token
        ([_event(1), _event(3), _event(3), _event(4), b"data: [DONE]"], 4, 3, ""),
        ([b"data: [DONE]"], 0, 0, "stream ended without tokens"),
        ([_event(1), b"data: [1, 2]"], 0, 0, "stream chunk is not a JSON object: [1, 2]"),
        ([_event(1), b'data: {"error": "boom"}'], 0, 0, "ClientError: boom"),
    ],
)
def test_stream_generate_against_a_real_http_stream(events, output_len, itl_count, error):
    from sglang_sage_ext.cli.bench import client

    server = _sse_server(events)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = client.stream_generate(url, [1, 2, 3], output_len=4, timeout=30)
    finally:
        server.shutdown()
    assert result.input_len == 3
    assert result.success is (not error), result.error
    assert error in result.error
    if not error:
        assert result.output_len == output_len and len(result.itl) == itl_count
        assert 0 < result.ttft <= result.latency
