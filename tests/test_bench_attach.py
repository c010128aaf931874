"""`bench throughput|mmlu|logits|perplexity` end to end in attach mode against two fake
SGLang servers (tests/fixtures/fake_sglang.py), one perturbed: the reported deltas must be
the ones the perturbation implies. Then `bench report` over the results.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from sglang_sage_ext.cli.bench import mmlu
from sglang_sage_ext.cli.main import main
from tests.fixtures.fake_sglang import FakeModel, fake_server, perplexity_attach_args


def _invoke(args, out):
    result = CliRunner().invoke(main, ["bench", *args, "-o", str(out)])
    return result


@pytest.fixture(scope="module")
def answers():
    table = {}
    for s in mmlu.load("builtin:mmlu_mini"):
        for q in s.test:
            table[q.question] = q.answer

    def answer_for(prompt: str) -> str:
        last = prompt.rsplit("\n\n", 1)[-1]
        return next(a for q, a in table.items() if last.startswith(q))

    return answer_for


def test_mmlu_attach_delta(tmp_path, answers):
    sage = FakeModel(
        backend="sage_attn",
        answer_for=answers,
        wrong_answers=("Which planet is farthest from the Sun?",),
    )
    base = FakeModel(backend="triton", answer_for=answers)
    with fake_server(sage) as s_url, fake_server(base) as b_url:
        result = _invoke(
            ["mmlu", "--sage-url", s_url, "--baseline-url", b_url, "--fail-if", "mmlu_drop=0.01"],
            tmp_path,
        )
    assert result.exit_code == 3, result.output  # one wrong answer of 40: drop 0.025 > 0.01
    doc = json.loads((tmp_path / "mmlu.json").read_text())
    assert doc["results"]["baseline"]["accuracy"] == 1.0
    assert doc["results"]["sage"]["accuracy"] == pytest.approx(39 / 40)
    assert doc["comparison"]["accuracy_delta"] == pytest.approx(-1 / 40)
    assert doc["comparison"]["subjects"]["astronomy"]["delta"] == pytest.approx(-1 / 8)
    assert doc["gates"]["mmlu_drop"] == pytest.approx(1 / 40)
    assert doc["sage_stats"]["sage"] is None  # attached without --sage-stats-dir
    assert len(sage.requests) == 40 and all(
        r["sampling_params"]["max_new_tokens"] == 1 for r in sage.requests
    )
    assert sage.requests[0]["text"].startswith("The following are multiple choice questions")


def test_logits_attach_identical_and_perturbed(tmp_path):
    args = [
        "logits",
        "--context-lengths",
        "16,64",
        "--prompts-per-length",
        "1",
        "--max-new-tokens",
        "4",
        "--score-last",
        "0",
    ]
    with fake_server(FakeModel("sage_attn")) as s_url, fake_server(FakeModel()) as b_url:
        same = _invoke([*args, "--sage-url", s_url, "--baseline-url", b_url], tmp_path / "a")
    assert same.exit_code == 0, same.output
    doc = json.loads((tmp_path / "a" / "logits.json").read_text())
    overall = doc["comparison"]["all"]
    assert overall["kl_mean"] == 0 and overall["top1_agreement"] == 1.0
    assert overall["identical_greedy"] == 2

    with (
        fake_server(FakeModel("sage_attn", swap_every=4)) as s_url,
        fake_server(FakeModel()) as b_url,
    ):
        res = _invoke(
            [*args, "--sage-url", s_url, "--baseline-url", b_url, "--fail-if", "kl_mean=1e-15"],
            tmp_path / "b",
        )
    assert res.exit_code == 3, res.output
    doc = json.loads((tmp_path / "b" / "logits.json").read_text())
    c16 = doc["comparison"]["16"]
    # prompt positions 1..15 (position 0 has no logprob); swapped at 4, 8, 12 -> 3/15 differ,
    # plus output positions up to the first divergence
    div = c16["first_divergence"][0]
    positions = list(range(1, 16)) + list(range(16, 16 + (4 if div is None else div + 1)))
    swapped = sum(p % 4 == 0 for p in positions)
    assert c16["positions"] == len(positions)
    assert c16["top1_agreement"] == pytest.approx(1 - swapped / len(positions))
    assert c16["kl_mean"] > 0
    assert doc["gates"]["top1_disagree"] == pytest.approx(
        1 - doc["comparison"]["all"]["top1_agreement"]
    )


def test_perplexity_attach_shift(tmp_path, tiny_model_dir):
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    shift = 0.01
    with (
        fake_server(FakeModel("sage_attn", logprob_shift=shift)) as s_url,
        fake_server(FakeModel()) as b_url,
    ):
        args = perplexity_attach_args(s_url, b_url, text, tiny_model_dir, 64)
        res = _invoke([*args, "--max-tokens", "300"], tmp_path / "o")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / "perplexity.json").read_text())
    assert doc["config"]["windows"] > 1 and doc["results"]["sage"]["tokens"] > 100
    # every logprob lowered by c: perplexity x e^c
    assert doc["comparison"]["ppl_increase_pct"] == pytest.approx((math.exp(shift) - 1) * 100)
    assert doc["comparison"]["max_abs_logprob_diff"] == pytest.approx(shift)


def test_throughput_attach_and_report(tmp_path):
    sage, base = FakeModel("sage_attn"), FakeModel()
    with fake_server(sage) as s_url, fake_server(base) as b_url:
        res = _invoke(
            [
                "throughput",
                "--sage-url",
                s_url,
                "--baseline-url",
                b_url,
                "--input-lens",
                "32,128",
                "--output-lens",
                "8",
                "--concurrency",
                "1,4",
                "--num-prompts",
                "4",
            ],
            tmp_path,
        )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "throughput.json").read_text())
    point = doc["results"]["sage"]["points"]["in128_out8_c4"]
    assert point["completed"] == 4 and point["failed"] == 0
    assert point["total_input_tokens"] == 4 * 128 and point["total_output_tokens"] == 4 * 8
    assert point["ttft_ms"]["median"] > 0 and point["itl_ms"]["mean"] >= 0
    assert set(doc["comparison"]) == {
        "in32_out8_c1",
        "in32_out8_c4",
        "in128_out8_c1",
        "in128_out8_c4",
    }
    streamed = [r for r in sage.requests if r.get("stream")]
    assert all(r["sampling_params"]["ignore_eos"] for r in streamed)
    assert sage.flushes >= 4  # attached servers: cache flushed before each grid point

    pytest.importorskip("matplotlib")
    res = CliRunner().invoke(main, ["bench", "report", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.md").read_text().startswith("# sglang-sage bench report")
    assert (tmp_path / "ttft_vs_prompt_length.png").stat().st_size > 1000
    assert (tmp_path / "output_tps_vs_concurrency.png").exists()


def test_attach_to_wrong_backend_is_refused(tmp_path):
    with fake_server(FakeModel("triton")) as s_url, fake_server(FakeModel()) as b_url:
        res = _invoke(["mmlu", "--sage-url", s_url, "--baseline-url", b_url], tmp_path)
    assert res.exit_code == 1
    assert "reports attention backend 'triton', not 'sage_attn'" in res.output


def test_attach_to_nothing(tmp_path):
    from sglang_sage_ext.cli.bench.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    res = _invoke(["mmlu", "--sage-url", url, "--baseline-url", url, "--timeout", "2"], tmp_path)
    assert res.exit_code == 1 and "cannot attach" in res.output
    assert "Traceback" not in res.output
