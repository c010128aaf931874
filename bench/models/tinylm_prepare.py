"""Data for train_tiny_llama.py: tokenizer, train / held-out token streams, eval prompt files.

Thin wrappers around tinylm_data (which holds the split, the tokenizer and the retrieval task)
that write what a training run needs under `--out` and record what they used.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tinylm_data as data
import torch
from tinylm_eval import retrieval_samples


def versions() -> dict:
    """Versions of the libraries (and the GPU) behind a result, for train_results.json."""
    v = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("transformers", "tokenizers", "safetensors", "numpy"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception as e:  # pragma: no cover - informational only
            v[mod] = f"unavailable: {e}"
    if torch.cuda.is_available():
        v["cuda"] = torch.version.cuda
        v["gpu"] = torch.cuda.get_device_name(0)
    return v


def ensure_tokenizer(out: Path, args, train_files=None, log=print):
    """`out/tokenizer` (BPE trained on the train split), reused when it already exists."""
    tok_dir = out / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        log(f"[data] reusing tokenizer {tok_dir}")
        return data.load_tokenizer(tok_dir), tok_dir
    t0 = time.perf_counter()
    if train_files is None:
        train_files = data.split_files(data.source_files(), "train")
    texts = data.iter_texts(train_files, max_bytes=args.tokenizer_bytes)
    tok = data.train_tokenizer(texts, vocab_size=args.vocab_size)
    data.save_tokenizer(tok, tok_dir, model_max_length=args.max_position_embeddings)
    log(f"[data] tokenizer vocab={tok.get_vocab_size()} in {time.perf_counter() - t0:.1f}s")
    return tok, tok_dir


def prepare_data(out: Path, args, log=print) -> dict:
    """Tokenizer (trained here) + train / held-out token streams."""
    t0 = time.perf_counter()
    std = data.source_files()
    train_files = data.split_files(std, "train")
    held_files = data.split_files(std, "heldout")
    tok, tok_dir = ensure_tokenizer(out, args, train_files, log)
    ids = data.special_ids(tok)
    files = list(train_files)
    site_n = 0
    held_text = data.heldout_text(max_bytes=None)
    if args.site_packages:
        extra = data.site_source_files()
        site_n = len(extra)
        files += extra
    # vendored copies of held-out files (e.g. in site-packages) stay out of the training text
    excl = data.heldout_hashes()
    texts = list(data.iter_texts(files, max_bytes=args.train_bytes, exclude=excl))
    train_bytes = sum(len(t.encode()) for t in texts)
    stream = data.encode_stream(tok, texts, ids["eos"])
    held = data.encode_stream(tok, [held_text], ids["eos"])
    info = {
        "stdlib": str(data.stdlib_dir()),
        "split_seed": data.SPLIT_SEED,
        "train_stdlib_files": len(train_files),
        "site_package_files_available": site_n,
        "train_docs_used": len(texts),
        "train_bytes": train_bytes,
        "train_tokens": len(stream),
        "heldout_files": len(held_files),
        "heldout_bytes": len(held_text.encode()),
        "heldout_tokens": len(held),
        "vocab_size": tok.get_vocab_size(),
        "prep_time_s": round(time.perf_counter() - t0, 1),
    }
    log(f"[data] {info}")
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "data" / "heldout_stdlib.txt").write_text(held_text)
    return {
        "tok": tok,
        "tok_dir": tok_dir,
        "ids": ids,
        "train": stream,
        "heldout": held,
        "info": info,
    }


def small_heldout_stream(tok, eos: int) -> np.ndarray | None:
    """bench/data/heldout_small.txt as tokens (None where the file is missing)."""
    p = Path(__file__).resolve().parents[1] / "data" / "heldout_small.txt"
    return data.encode_stream(tok, [p.read_text()], eos) if p.exists() else None


def write_retrieval_jsonl(d: dict, args) -> list[str]:
    """The eval prompts as JSONL token ids (for server-side accuracy runs on these models)."""
    task = data.RetrievalTask(d["tok"], d["heldout"], seed=args.seed + 7)
    paths = []
    for length in args.eval_lengths:
        p = Path(args.out) / "data" / f"retrieval_{length}.jsonl"
        with p.open("w") as f:
            for s in retrieval_samples(task, length, args.eval_trials, seed=args.seed + 1000):
                rec = asdict(s) | {"answer_text": " " + s.value}
                f.write(json.dumps(rec) + "\n")
        paths.append(str(p))
    return paths
