#!/usr/bin/env python3
"""Train small Llama models offline so that accuracy numbers mean something.

A random-init model attends almost uniformly, which hides the error of 8-bit attention. This
script trains two small GQA Llamas (head_dim 64 and 128; 8 q / 2 kv heads) for a few minutes on
the GPU, on the machine's Python sources mixed with a synthetic long-context key-value retrieval
task, so that they have sharp, position-dependent (induction / copy) attention and a measurable
retrieval accuracy. Everything is offline and seeded.

Outputs (`--out`): `tokenizer/`, one HF model directory per variant (`config.json`
LlamaForCausalLM, bf16 `model.safetensors`, tokenizer files, `generation_config.json`), and
`data/` (held-out text, retrieval prompts as JSONL token ids for server benchmarks).
Results (`--results-dir`): `train_results.json` and `train_results.md`.

The model is a plain-torch Llama whose parameter names are the HF names; after saving, the
checkpoint is reloaded with transformers' LlamaForCausalLM and the logits are compared.
This file is the CLI and the per-variant pipeline; the parts live next to it: tinylm_model.py
(the model), tinylm_train.py (schedule and training loop), tinylm_eval.py (perplexity,
retrieval), tinylm_hf.py (HF export and reload check), tinylm_prepare.py (tokenizer and token
streams), tinylm_report.py (warnings, train_results.{json,md}); their public names are
re-exported here.

usage: python3 train_tiny_llama.py --out /tmp/sage-models --results-dir /tmp/sage-results
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tinylm_data as data
from tinylm_eval import perplexity, retrieval_accuracy, retrieval_samples, retrieval_verdict
from tinylm_hf import hf_config, hf_logits_check, load_own, save_model
from tinylm_model import PRESETS, ModelCfg, TinyLlama, n_params, preset
from tinylm_prepare import (
    ensure_tokenizer,
    prepare_data,
    small_heldout_stream,
    versions,
    write_retrieval_jsonl,
)
from tinylm_report import to_markdown, warnings_of, write_results
from tinylm_train import TrainCfg, make_batch, schedule, train

__all__ = [
    "PRESETS",
    "ModelCfg",
    "TinyLlama",
    "TrainCfg",
    "ensure_tokenizer",
    "hf_config",
    "hf_logits_check",
    "load_own",
    "main",
    "make_batch",
    "n_params",
    "parse_args",
    "perplexity",
    "prepare_data",
    "preset",
    "retrieval_accuracy",
    "retrieval_samples",
    "retrieval_verdict",
    "run_variant",
    "save_model",
    "schedule",
    "to_markdown",
    "train",
    "warnings_of",
    "write_results",
    "write_retrieval_jsonl",
]


def train_cfg(args) -> TrainCfg:
    """The TrainCfg of the command line."""
    return TrainCfg(
        seq_lens=args.seq_lens,
        tokens_per_step=args.tokens_per_step,
        max_steps=args.max_steps,
        time_budget_s=args.time_budget_s,
        lr=args.lr,
        warmup_frac=args.warmup_frac,
        answer_weight=args.answer_weight,
        p_task=args.p_task,
        copy_frac=args.copy_frac,
        copy_max_len=args.copy_max_len,
        unlock_frac=args.unlock_frac,
        seed=args.seed,
        log_every=args.log_every,
        probe_every=args.probe_every,
    )


def train_variant(name: str, d: dict, eval_task, args, device: torch.device, log=print):
    """A fresh seeded model of preset `name`, trained with the retrieval probe: (cfg, model, hist).

    The probe prompts come from `eval_task` (held-out text).
    """
    tok, ids = d["tok"], d["ids"]
    cfg = preset(
        name, vocab_size=args.vocab_size, max_position_embeddings=args.max_position_embeddings
    )
    torch.manual_seed(args.seed)
    model = TinyLlama(cfg)
    model.init_weights(args.seed)
    model.to(device)
    log(f"[{name}] params={n_params(model) / 1e6:.2f}M cfg={asdict(cfg)}")
    train_task = data.RetrievalTask(tok, d["train"], seed=args.seed)
    probe_sets = {
        n: retrieval_samples(eval_task, n, args.probe_trials, seed=args.seed + 99)
        for n in sorted(args.probe_lengths)
    }

    def probe(m):
        return {
            f"probe_exact@{n}": retrieval_accuracy(m, s, device, pad_id=ids["pad"])["exact"]
            for n, s in probe_sets.items()
        }

    hist = train(
        model, train_task, train_cfg(args), device, probe=probe if probe_sets else None, log=log,
        probe_ok=args.retrieval_threshold,
    )  # fmt: skip
    return cfg, model, hist


def evaluate_saved(
    name: str, mdir: Path, cfg: ModelCfg, d: dict, eval_task, args, device, log=print
):
    """Perplexity and retrieval of the saved bf16 weights (what SGLang will load), on `device`."""
    tok, ids = d["tok"], d["ids"]
    ev = load_own(mdir, cfg, torch.bfloat16 if device.type == "cuda" else torch.float32).to(device)
    ppl: dict = {"heldout_stdlib": {}, "heldout_small": {}}
    small = small_heldout_stream(tok, ids["eos"])
    for c in args.ppl_contexts:
        ppl["heldout_stdlib"][str(c)] = perplexity(ev, d["heldout"], c, device, args.ppl_max_tokens)
        if small is not None:
            ppl["heldout_small"][str(c)] = perplexity(ev, small, c, device, args.ppl_max_tokens)
    ret = {}
    for length in args.eval_lengths:
        s = retrieval_samples(eval_task, length, args.eval_trials, seed=args.seed + 1000)
        ret[str(length)] = retrieval_accuracy(ev, s, device, pad_id=ids["pad"])
        log(f"[{name}] retrieval@{length}: {ret[str(length)]}")
    del ev
    return {"perplexity": ppl, "retrieval": ret}


def run_variant(name: str, d: dict, args, device: torch.device, log=print) -> dict:
    """Train, save, check against transformers, evaluate one variant."""
    eval_task = data.RetrievalTask(d["tok"], d["heldout"], seed=args.seed + 7)
    cfg, model, hist = train_variant(name, d, eval_task, args, device, log)
    mdir = save_model(model, Path(args.out) / f"stdlib-llama-{name}", d["tok_dir"], d["ids"])
    log(f"[{name}] saved {mdir}")
    res: dict = {"path": str(mdir), "config": asdict(cfg), "params": n_params(model), "train": hist}
    del model
    t0 = time.perf_counter()
    check_ids = torch.from_numpy(d["heldout"][: 2 * 128].astype(np.int64)).view(2, 128)
    try:
        res["hf_check"] = hf_logits_check(mdir, cfg, check_ids)
    except Exception as e:
        res["hf_check"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    log(f"[{name}] hf check {res['hf_check']}")
    res["eval"] = evaluate_saved(name, mdir, cfg, d, eval_task, args, device, log)
    res["eval"]["eval_time_s"] = round(time.perf_counter() - t0, 1)
    res |= retrieval_verdict(res["eval"]["retrieval"], args.retrieval_threshold)
    log(f"[{name}] ppl {res['eval']['perplexity']}")
    log(f"[{name}] retrieval_learned={res['retrieval_learned']}")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def _add_train_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--variants", default="hd64,hd128", help="comma list of " + ",".join(PRESETS))
    ap.add_argument(
        "--max-steps", type=int, default=1400,
        help="training steps per variant; the whole schedule is a function of step / max-steps",
    )  # fmt: skip
    ap.add_argument(
        "--time-budget-s", type=float, default=300.0,
        help="safety cap on training seconds per variant (stops early, logged and flagged)",
    )  # fmt: skip
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--seq-lens", type=_ints, default=[256, 512, 1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup-frac", type=float, default=0.05)
    ap.add_argument("--answer-weight", type=float, default=1.0)
    ap.add_argument(
        "--p-task", type=float, default=0.75, help="retrieval share after the copy phase"
    )
    ap.add_argument(
        "--copy-frac", type=float, default=0.3,
        help="first share of the steps: short, dense retrieval sequences only",
    )  # fmt: skip
    ap.add_argument("--copy-max-len", type=int, default=1024)
    ap.add_argument("--unlock-frac", type=float, default=0.6, help="all seq lens in use from here")


def _add_eval_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--eval-lengths", type=_ints, default=[4096, 16384, 32768])
    ap.add_argument("--eval-trials", type=int, default=50)
    ap.add_argument("--probe-lengths", type=_ints, default=[1024, 4096])
    ap.add_argument("--probe-trials", type=int, default=16)
    ap.add_argument("--probe-every", type=int, default=50, help="steps between probes (0: off)")
    ap.add_argument(
        "--retrieval-threshold", type=float, default=0.5,
        help="exact match at the shortest eval length below which retrieval_learned is false",
    )  # fmt: skip
    ap.add_argument("--ppl-contexts", type=_ints, default=[1024, 4096])
    ap.add_argument("--ppl-max-tokens", type=int, default=262144)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--results-dir", required=True, type=Path)
    _add_train_args(ap)
    _add_eval_args(ap)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--max-position-embeddings", type=int, default=65536)
    ap.add_argument("--tokenizer-bytes", type=int, default=8_000_000)
    ap.add_argument("--train-bytes", type=int, default=40_000_000)
    ap.add_argument(
        "--no-site-packages", dest="site_packages", action="store_false",
        help="train on stdlib files only (default adds installed packages' *.py as train text)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-only", action="store_true", help="write out/tokenizer and stop")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--device", default="auto")
    return ap.parse_args(argv)


def _device(args) -> torch.device:
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def main(argv: list[str] | None = None) -> int:
    os.environ["TOKENIZERS_PARALLELISM"] = "true"  # encode_batch on all cores; we never fork
    args = parse_args(argv)
    t0 = time.perf_counter()
    device = _device(args)
    args.out.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    if args.tokenizer_only:
        ensure_tokenizer(args.out, args)
        return 0
    d = prepare_data(args.out, args)
    res = {
        "retrieval_learned": None,  # every variant: exact match >= threshold at shortest length
        "warnings": [],
        "seed": args.seed,
        "device": str(device),
        "versions": versions(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": d["info"],
        "variants": {},
    }
    try:
        res["retrieval_jsonl"] = write_retrieval_jsonl(d, args)
    except Exception as e:
        res["retrieval_jsonl"] = f"failed: {type(e).__name__}: {e}"
    rc = 0
    for name in [v for v in args.variants.split(",") if v]:
        try:
            res["variants"][name] = run_variant(name, d, args, device)
        except Exception as e:  # keep going: the other variant's numbers still come back
            traceback.print_exc()
            res["variants"][name] = {"error": f"{type(e).__name__}: {e}"}
            rc = 1
        write_results(res, args.results_dir, t0)
    if not res["variants"]:
        write_results(res, args.results_dir, t0)
    for w in res["warnings"]:
        print(f"[done] WARNING: {w}")
    print(
        f"[done] retrieval_learned={res['retrieval_learned']}; "
        f"{args.results_dir / 'train_results.md'} in {time.perf_counter() - t0:.0f}s"
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
