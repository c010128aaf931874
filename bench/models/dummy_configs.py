#!/usr/bin/env python3
"""Dummy-weight model directories of real architectures, for `--load-format dummy`.

Real-size speed and memory behaviour (head counts, GQA ratios, head_dim 64 / 128, qkv bias,
llama3 rope scaling) without downloading weights: each directory holds the architecture's real
`config.json` plus an offline-trained tokenizer, and no weights. Deviations from the published
configs: `bos_token_id` / `eos_token_id` are our tokenizer's ids (the vocab size is kept, so the
embedding tables have the real shape); everything else is the published value.

usage: python3 dummy_configs.py OUT_DIR [--tokenizer DIR_WITH_tokenizer.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tinylm_data as data

_LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}

_QWEN2_COMMON = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151643,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "model_type": "qwen2",
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
}

# name -> (published config, source, head_dim as derived by the serving engine)
ARCHS: dict[str, tuple[dict, str, int]] = {
    "llama31-8b-dummy": (_LLAMA31_8B, "meta-llama/Llama-3.1-8B config.json", 128),
    "qwen25-7b-dummy": (
        _QWEN2_COMMON
        | {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "max_position_embeddings": 131072,
            "max_window_layers": 28,
            "num_attention_heads": 28,
            "num_hidden_layers": 28,
            "num_key_value_heads": 4,
            "sliding_window": 131072,
            "tie_word_embeddings": False,
            "vocab_size": 152064,
        },
        "Qwen/Qwen2.5-7B config.json (Qwen2: q/k/v projections have a bias)",
        128,
    ),
    "qwen25-0.5b-dummy": (
        _QWEN2_COMMON
        | {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "max_position_embeddings": 32768,
            "max_window_layers": 24,
            "num_attention_heads": 14,
            "num_hidden_layers": 24,
            "num_key_value_heads": 2,
            "sliding_window": 32768,
            "tie_word_embeddings": True,
            "vocab_size": 151936,
        },
        "Qwen/Qwen2.5-0.5B config.json (head_dim 896/14 = 64, GQA 7:1, tied embeddings)",
        64,
    ),
}


def published_config(name: str) -> dict:
    """The published config of one architecture (a copy)."""
    return json.loads(json.dumps(ARCHS[name][0]))


def ensure_tokenizer(tok_dir: Path | None, work: Path) -> Path:
    """A directory holding tokenizer.json (+ config); trains a small BPE when none is given."""
    if tok_dir is not None and (Path(tok_dir) / "tokenizer.json").exists():
        return Path(tok_dir)
    out = work / "tokenizer"
    if not (out / "tokenizer.json").exists():
        files = data.split_files(data.source_files(), "train")
        tok = data.train_tokenizer(data.iter_texts(files, max_bytes=3_000_000), vocab_size=8192)
        data.save_tokenizer(tok, out, model_max_length=131072)
    return out


def write_dummies(
    out_dir: Path, tokenizer_dir: Path | None = None, names: list[str] | None = None
) -> dict[str, Path]:
    """Write one config-only model directory per architecture; returns name -> directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tdir = ensure_tokenizer(tokenizer_dir, out)
    tok = data.load_tokenizer(tdir)
    ids = data.special_ids(tok)
    written = {}
    for name in names or list(ARCHS):
        cfg, source, head_dim = ARCHS[name]
        cfg = published_config(name)
        if tok.get_vocab_size() > cfg["vocab_size"]:
            raise ValueError(f"tokenizer larger than {name}'s vocab")
        cfg["bos_token_id"], cfg["eos_token_id"] = ids["bos"], ids["eos"]
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        gen = {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "do_sample": False}
        (d / "generation_config.json").write_text(json.dumps(gen) + "\n")
        for f in tdir.iterdir():
            if f.is_file() and f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy(f, d / f.name)
        note = {
            "source": source,
            "head_dim": head_dim,
            "weights": "none: launch with --load-format dummy",
            "deviations": {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"]},
        }
        (d / "sage_dummy.json").write_text(json.dumps(note, indent=2) + "\n")
        written[name] = d
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokenizer", type=Path, default=None, help="dir with tokenizer.json")
    ap.add_argument("--only", default="", help="comma list of " + ",".join(ARCHS))
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or None
    for name, d in write_dummies(args.out, args.tokenizer, names).items():
        print(f"[dummy] {name}: {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
