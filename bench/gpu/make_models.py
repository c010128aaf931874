#!/usr/bin/env python3
"""Build offline model directories for SGLang tests (no downloads).

1. A byte-level BPE tokenizer trained on this machine's Python stdlib sources,
   saved as a PreTrainedTokenizerFast (bos <s>, eos </s>, unk <unk>, pad <pad>).
2. tiny-llama: LlamaForCausalLM, random init, bf16 safetensors
   (hidden 512, 4 layers, 8 heads, 2 kv heads, head_dim 64, ctx 32768).
3. llama31-8b-dummy: config.json of the real Llama-3.1-8B architecture (from
   bench/models/dummy_configs.py) plus the same tokenizer files, no weights: use with
   --load-format dummy.

usage: python3 make_models.py [OUTDIR=/tmp/models]
"""

import glob
import os
import sys
import sysconfig
import time

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/models"
t0 = time.time()
os.makedirs(out, exist_ok=True)
tok_dir = os.path.join(out, "tokenizer")

from tokenizers import (  # noqa: E402
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast  # noqa: E402

if not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
    stdlib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(stdlib, "*.py")))[:400]
    print(f"[tok] training BPE on {len(files)} files from {stdlib}")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=8192,
        min_frequency=2,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train(files, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=32768,
    )
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    fast.save_pretrained(tok_dir)
    print(f"[tok] vocab={len(fast)} saved to {tok_dir}")
fast = PreTrainedTokenizerFast.from_pretrained(tok_dir)
ids = fast("def hello_world():\n    return 42")["input_ids"]
print("[tok] sample ids:", ids[:16], "->", repr(fast.decode(ids)))


def copy_tok(dst):
    import shutil

    for f in os.listdir(tok_dir):
        shutil.copy(os.path.join(tok_dir, f), dst)


# tiny llama with real (random) weights
tiny = os.path.join(out, "tiny-llama")
if not os.path.exists(os.path.join(tiny, "config.json")):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=8192,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=32768,
        rope_theta=500000.0,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg).to(torch.bfloat16)
    m.save_pretrained(tiny, safe_serialization=True)
    copy_tok(tiny)
    print(f"[tiny] params={sum(p.numel() for p in m.parameters()) / 1e6:.1f}M saved to {tiny}")

# Llama-3.1-8B architecture, no weights (use --load-format dummy): the project's one definition
# of it lives in bench/models/dummy_configs.py (this script also runs as .carry/scripts/...,
# two levels below the repo root as well)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "models"))
import dummy_configs  # noqa: E402

big = dummy_configs.write_dummies(out, tok_dir, ["llama31-8b-dummy"])["llama31-8b-dummy"]
print(f"[8b] config written to {big}; done in {time.time() - t0:.1f}s")
