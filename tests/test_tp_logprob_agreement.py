"""bench/tp_logprob_agreement.py (the tp2 device step's logprob check) on CPU.

`query` runs against two fake SGLang servers (tests/fixtures/fake_sglang.py); the "sage" one
perturbs its next-token distributions only at positions past the chunk boundary, as Sage does
on chunks over a cached prefix. `compare` must then report exactly what a numpy recomputation
of both toy models gives: mean/max |delta logprob| and top-1 agreement per region, zero before
the boundary. Also: bench/e2e_summary.py's --workloads/--tp, which the tp2 step uses.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.fake_sglang import VOCAB, FakeModel, base_logprobs, fake_server

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.release_independent  # imports no SGLang (tests/_selection.py)

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("tp_agree", ROOT / "bench/tp_logprob_agreement.py")
tp_agree = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp_agree)

CHUNK = 32
LENGTHS = (48, 64)
SCORE_LAST = 40
AMP = 0.5  # perturbation of the logits past the boundary: flips some top-1, moves every logprob


def perturbation(pos: int) -> np.ndarray:
    return AMP * np.cos(2.1 * np.arange(VOCAB) + 0.3 * pos)


@dataclass
class PastChunk(FakeModel):
    """Like FakeModel, with logits + perturbation(pos) at positions scored past the chunk."""

    chunk: int = CHUNK

    def logprobs(self, prev: int, pos: int) -> list[float]:
        lps = base_logprobs(prev, pos)
        if pos <= self.chunk:
            return lps
        moved = [x + float(d) for x, d in zip(lps, perturbation(pos), strict=True)]
        top = max(moved)
        lse = top + math.log(sum(math.exp(x - top) for x in moved))
        return [x - lse for x in moved]


def reference_logprobs(prev: int, pos: int, perturbed: bool) -> np.ndarray:
    """The toy model of fake_sglang, recomputed in numpy (float64)."""
    logits = 3 * np.sin(0.37 * prev + 1.3 * np.arange(VOCAB) + 0.01 * pos)
    if perturbed and pos > CHUNK:
        logits = logits + perturbation(pos)
    return logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))


def expected_regions(prompts: list[list[int]]) -> dict[str, dict[str, float]]:
    """mean/max |delta logprob| and top-1 agreement per region, straight from the two models."""
    diffs: dict[str, list[float]] = {"prefix_free": [], "over_prefix": []}
    same: dict[str, list[bool]] = {"prefix_free": [], "over_prefix": []}
    for ids in prompts:
        start = len(ids) - SCORE_LAST
        # start + 1: the entry at logprob_start_len has no logprob; len(ids): the new token
        for pos in range(start + 1, len(ids) + 1):
            if pos == CHUNK:
                continue
            key = "prefix_free" if pos < CHUNK else "over_prefix"
            n = reference_logprobs(ids[pos - 1], pos, False)
            s = reference_logprobs(ids[pos - 1], pos, True)
            # prompt tokens: the given id; the new token: each server's own greedy pick
            tn, ts = (ids[pos], ids[pos]) if pos < len(ids) else (n.argmax(), s.argmax())
            diffs[key].append(abs(float(s[ts] - n[tn])))
            same[key].append(bool(n.argmax() == s.argmax()))
    return {
        k: {
            "mean_abs_logprob_diff": float(np.mean(diffs[k])),
            "max_abs_logprob_diff": float(np.max(diffs[k])),
            "top1_agreement": float(np.mean(same[k])),
        }
        for k in diffs
    }


def _query(url: str, out: Path, *extra: str) -> None:
    args = ["query", "--url", url, "--out", str(out), "--lengths", ",".join(map(str, LENGTHS))]
    args += ["--per-length", "2", "--score-last", str(SCORE_LAST), "--top-k", "5"]
    args += ["--vocab", str(VOCAB), "--chunk", str(CHUNK), *extra]
    assert tp_agree.main(args) == 0


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    d = tmp_path_factory.mktemp("tp2")
    stats = d / "stats"
    stats.mkdir()
    sage, native = PastChunk(backend="sage_attn", stats_dir=str(stats)), FakeModel("flashinfer")
    with fake_server(sage) as s_url, fake_server(native) as n_url:
        _query(s_url, d / "sage.json", "--stats-dir", str(stats))
        _query(n_url, d / "native.json")
    assert sage.flushes == 1 and native.flushes == 1  # each server's radix cache emptied first
    assert tp_agree.main(["compare", "--sage", str(d / "sage.json"), "--native",
                          str(d / "native.json"), "--out", str(d / "agree.json")]) == 0  # fmt: skip
    prompts = [r["input_ids"] for r in native.requests]
    return d, json.loads((d / "agree.json").read_text()), prompts


def test_regions_match_a_numpy_recomputation(answers):
    _, doc, prompts = answers
    want = expected_regions(prompts)
    assert want["over_prefix"]["top1_agreement"] < 1  # the perturbation does flip some top-1
    for region in ("prefix_free", "over_prefix"):
        got = doc["regions"][region]
        for key, value in want[region].items():
            assert got[key] == pytest.approx(value, abs=1e-9), (region, key)
    assert doc["regions"]["prefix_free"]["max_abs_logprob_diff"] == 0
    assert doc["regions"]["prefix_free"]["kl_mean"] == 0


def test_overall_rows_and_metadata(answers):
    d, doc, prompts = answers
    assert len(prompts) == 4 and sorted(map(len, prompts)) == [48, 48, 64, 64]
    assert len({p[0] for p in prompts}) == 4  # distinct first ids: no shared radix prefix
    assert set(doc["by_length"]) == {"48", "64", "all"}
    overall = doc["by_length"]["all"]
    # every scored position: 39 prompt tokens (the first entry has no logprob) + 1 new, x 4
    assert overall["positions"] == 4 * SCORE_LAST
    assert overall["max_abs_logprob_diff"] == doc["regions"]["over_prefix"]["max_abs_logprob_diff"]
    assert doc["backends"] == {"sage_attn": "sage_attn", "native": "flashinfer"}
    assert doc["chunked_prefill_size"] == CHUNK and doc["prompts"]["score_last"] == SCORE_LAST
    # the fake sage server counts one fallback call per request in its stats dir
    assert doc["sage_stats_during_queries"]["fallback_calls"] == {"no_cuda": 4}
    assert json.loads((d / "native.json").read_text())["sage_stats"] is None


def test_different_prompts_are_refused(answers, tmp_path, capsys):
    d, _, _ = answers
    other = json.loads((d / "sage.json").read_text())
    other["prompts"]["seed"] = 1
    (tmp_path / "other.json").write_text(json.dumps(other))
    rc = tp_agree.main(["compare", "--sage", str(tmp_path / "other.json"), "--native",
                        str(d / "native.json"), "--out", str(tmp_path / "x.json")])  # fmt: skip
    assert rc == 1 and "different prompts" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_no_chunked_prefill_puts_everything_before_the_boundary(answers):
    d, _, _ = answers
    sage, native = (json.loads((d / f"{n}.json").read_text()) for n in ("sage", "native"))
    native["chunked_prefill_size"] = -1
    doc = tp_agree.compare(sage, native)
    assert set(doc["regions"]) == {"prefix_free"}
    assert doc["regions"]["prefix_free"]["positions"] == 4 * SCORE_LAST


def test_unreachable_server_is_one_line_rc_1(tmp_path, capsys):
    rc = tp_agree.main(["query", "--url", "http://127.0.0.1:9", "--out", str(tmp_path / "o")])
    assert rc == 1 and "ClientError" in capsys.readouterr().err


def test_e2e_summary_keeps_the_selected_workloads_and_tp(tmp_path):
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    rows = {"single_32k": ("median_e2e_latency_ms", 1000.0, 1250.0),
            "c64_1k_128": ("output_throughput", 3300.0, 3000.0)}  # fmt: skip
    for name, (field, sage, native) in rows.items():
        for tag, value in (("sage", sage), ("native", native)):
            (jsonl / f"{tag}_{name}.jsonl").write_text(json.dumps({field: value, "completed": 4}))
    out = tmp_path / "res"
    cmd = [sys.executable, str(ROOT / "bench/e2e_summary.py"), "--jsonl", str(jsonl), "--native",
           "flashinfer", "--out", str(out), "--tp", "2", "--gpu", "H", "--sglang", "0.5.17",
           "--workloads", "single_32k c64_1k_128"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    doc = json.loads((out / "e2e_vs_native.json").read_text())
    assert list(doc["workloads"]) == ["single_32k", "c64_1k_128"]
    assert doc["tp"] == 2 and doc["gpu"] == "H" and doc["sglang"] == "0.5.17"
    assert doc["workloads"]["single_32k"]["ratio"] == pytest.approx(1.25)
    assert doc["workloads"]["c64_1k_128"]["ratio"] == pytest.approx(1.1)
    assert doc["workloads"]["c64_1k_128"]["higher_is_better"] is True
    assert "TP=2" in (out / "e2e_vs_native.md").read_text()
    bad = subprocess.run([*cmd[:-1], "single_32k nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope" in bad.stderr
