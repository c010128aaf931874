"""Export of a tiny Llama as an HF model directory, and the transformers reload check.

The directory (`config.json` LlamaForCausalLM, bf16 `model.safetensors`, tokenizer files,
`generation_config.json`) is what SGLang loads; `hf_logits_check` reloads it with transformers'
LlamaForCausalLM and compares its fp32 logits with ours.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tinylm_model import ModelCfg, TinyLlama


def hf_config(cfg: ModelCfg, ids: dict[str, int]) -> dict:
    """config.json for LlamaForCausalLM (SGLang's weight names = HF names)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "vocab_size": cfg.vocab_size,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    }


def save_model(model: TinyLlama, out_dir: Path, tok_dir: Path, ids: dict[str, int]) -> Path:
    """Write an HF model directory: config, bf16 safetensors, tokenizer, generation config."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {
        k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()
    }
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config(model.cfg, ids), indent=2) + "\n")
    gen = {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"]}
    (out / "generation_config.json").write_text(json.dumps(gen | {"do_sample": False}) + "\n")
    for f in Path(tok_dir).iterdir():
        if f.is_file():
            shutil.copy(f, out / f.name)
    return out


def load_own(model_dir: Path, cfg: ModelCfg, dtype=torch.float32) -> TinyLlama:
    """Our model with the saved (bf16) weights."""
    from safetensors.torch import load_file

    m = TinyLlama(cfg)
    m.load_state_dict(
        {k: v.to(dtype) for k, v in load_file(str(Path(model_dir) / "model.safetensors")).items()}
    )
    return m.to(dtype).eval()


def hf_logits_check(model_dir: Path, cfg: ModelCfg, ids: torch.Tensor) -> dict:
    """Reload with transformers' LlamaForCausalLM (fp32, CPU) and compare logits with ours."""
    import transformers
    from transformers import LlamaForCausalLM

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        hf = LlamaForCausalLM.from_pretrained(str(model_dir), attn_implementation="eager")
        hf = hf.to(torch.float32).eval()
        own = load_own(model_dir, cfg, torch.float32)
        with torch.no_grad():
            a = own(ids)
            b = hf(input_ids=ids).logits
        diff = float((a - b).abs().max())
        return {
            "max_abs_diff_fp32": diff,
            "logit_absmax": float(b.abs().max()),
            "argmax_agree": float((a.argmax(-1) == b.argmax(-1)).float().mean()),
            "tokens": int(ids.numel()),
            "transformers": transformers.__version__,
            "ok": diff < 1e-3,
        }
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
