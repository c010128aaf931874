"""A tiny, fully offline Llama checkpoint for CPU end-to-end tests.

`make_tiny_llama(out_dir)` writes a Hugging Face model directory that SGLang and transformers
load without network access: `config.json` (LlamaForCausalLM), a small BPE tokenizer trained
here with the `tokenizers` library on built-in text (`tokenizer.json`,
`tokenizer_config.json`, `special_tokens_map.json`) and, unless `weights=False`, seeded
random `model.safetensors` (about 2 M parameters). Without weights, use `--load-format dummy`.
"""

from __future__ import annotations

import json
from pathlib import Path

_WORDS_TEXT = """
the a an of to in and is was for on with as by at from that this it be are were
model token attention layer head query key value cache batch sequence prefill decode
server request response kernel scale quantize int8 fp8 fp16 bf16 matrix vector block
softmax gate norm rotary position embedding vocab weight bias tensor device cpu gpu
fast slow small large first last next previous input output prompt answer question
one two three four five six seven eight nine ten hundred thousand million zero
red green blue black white light dark river mountain city road house garden tree
cat dog bird fish horse cow sheep mouse lion tiger bear wolf fox rabbit deer owl
run walk read write open close start stop wait send receive store load save print
"""
_WORDS = _WORDS_TEXT.split()

_TEXT = """\
The quick brown fox jumps over the lazy dog. A tiny language model has two layers, four query
heads and two key value heads; each head has sixty four dimensions. The server receives a request
with input ids, runs prefill over the prompt, then decodes one token at a time until it has
produced eight new tokens. Attention multiplies queries by keys, scales the result, applies a
softmax and sums the values. Quantized attention stores the keys as int8 and the values as fp16.
Hello, world! Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000. Punctuation: , . ; : ! ? ( ) [ ] { }
"""


def _corpus() -> list[str]:
    """A few KB of deterministic text: a fixed paragraph plus word sequences."""
    lines = _TEXT.splitlines()
    n = len(_WORDS)
    for i in range(120):
        lines.append(" ".join(_WORDS[(i * 7 + j * 13) % n] for j in range(12)) + ".")
    return lines


def _train_tokenizer(vocab_size: int):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok


def make_tiny_llama(
    out_dir: Path,
    *,
    head_dim: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    hidden_size: int | None = None,
    intermediate_size: int = 512,
    vocab_size: int = 1024,
    max_position_embeddings: int = 2048,
    dtype: str = "bfloat16",
    weights: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny LlamaForCausalLM checkpoint to `out_dir` and return it.

    `hidden_size` defaults to `num_heads * head_dim`. `weights=True` writes seeded random
    safetensors (needs torch and safetensors); otherwise load it with `--load-format dummy`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = _write_tokenizer(out, vocab_size, max_position_embeddings)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden_size or num_heads * head_dim,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "vocab_size": vocab_size,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "initializer_range": 0.02,
        "torch_dtype": dtype,
        "use_cache": True,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "do_sample": False})
    )
    if weights:
        _write_weights(out, config, seed)
    return out


def _write_tokenizer(out: Path, vocab_size: int, max_length: int) -> dict[str, int]:
    """A byte-level BPE tokenizer trained on the spot, with its HF config files; returns the
    ids of <s>, </s> and <pad>."""
    tok = _train_tokenizer(vocab_size)
    assert tok.get_vocab_size() <= vocab_size
    tok.save(str(out / "tokenizer.json"))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": max_length,
                "add_bos_token": False,
                "add_eos_token": False,
                "clean_up_tokenization_spaces": False,
                **special,
            },
            indent=2,
        )
    )
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return {
        name: tok.token_to_id(t) for name, t in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>"))
    }


def _write_weights(out: Path, cfg: dict, seed: int) -> None:
    """Seeded random weights in HF Llama naming, saved as model.safetensors."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, cfg["torch_dtype"])
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    std = cfg["initializer_range"]

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * std * scale).to(dtype)

    tensors = {
        "model.embed_tokens.weight": rnd(v, h),
        "model.norm.weight": torch.ones(h, dtype=dtype),
        # 10x std: logits spread by a few units, so greedy argmax is not decided by rounding
        "lm_head.weight": rnd(v, h, scale=10.0),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": torch.ones(h, dtype=dtype),
            p + "post_attention_layernorm.weight": torch.ones(h, dtype=dtype),
            p + "self_attn.q_proj.weight": rnd(q, h),
            p + "self_attn.k_proj.weight": rnd(kv, h),
            p + "self_attn.v_proj.weight": rnd(kv, h),
            p + "self_attn.o_proj.weight": rnd(h, q),
            p + "mlp.gate_proj.weight": rnd(inter, h),
            p + "mlp.up_proj.weight": rnd(inter, h),
            p + "mlp.down_proj.weight": rnd(h, inter),
        }
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    import sys

    print(make_tiny_llama(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-llama")))
