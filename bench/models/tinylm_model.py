"""The tiny Llama of train_tiny_llama.py: a plain-torch LlamaForCausalLM.

Parameter names are exactly the HF names (`state_dict()` loads into transformers'
LlamaForCausalLM), rotary tables are HF's "default" ones and GQA repeats kv heads as HF's
`repeat_kv` does, so a saved checkpoint reloads in transformers and SGLang unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelCfg:
    """Architecture of one variant (maps 1:1 onto an HF LlamaConfig)."""

    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int = 8192
    max_position_embeddings: int = 65536
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5


PRESETS: dict[str, dict] = {
    # ~25 M params: 6 layers, hidden 512, 8 q / 2 kv heads x 64
    "hd64": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                 num_key_value_heads=2, head_dim=64, intermediate_size=1408),
    # ~29 M params: same, heads of 128 (q width 1024 > hidden, as Llama allows)
    "hd128": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                  num_key_value_heads=2, head_dim=128, intermediate_size=1408),
    # CPU smoke size (tests, --cpu-only)
    "toy": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, intermediate_size=128,
                max_position_embeddings=4096),
}  # fmt: skip


def preset(name: str, vocab_size: int, **overrides) -> ModelCfg:
    """A ModelCfg from PRESETS, with the tokenizer's vocab size."""
    kw = {**PRESETS[name], "vocab_size": vocab_size, **overrides}
    return ModelCfg(name=name, **kw)


class RMSNorm(nn.Module):
    """LlamaRMSNorm: normalise in fp32, scale in the input dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rope_cos_sin(cfg: ModelCfg, n: int, device, offset: int = 0):
    """HF 'default' rotary tables (fp32), shape (n, head_dim)."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64, device=device) / d))
    pos = torch.arange(offset, offset + n, device=device, dtype=torch.float32)
    freqs = torch.outer(pos, inv.float())
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelCfg):
        super().__init__()
        self.h, self.kv, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        hs = cfg.hidden_size
        self.q_proj = nn.Linear(hs, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(hs, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(hs, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, hs, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        rep = self.h // self.kv
        if rep > 1:  # HF repeat_kv: q head i reads kv head i // rep
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, cfg: ModelCfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelCfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, cfg: ModelCfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class TinyLlama(nn.Module):
    """Plain-torch Llama; `state_dict()` keys are exactly HF LlamaForCausalLM's."""

    def __init__(self, cfg: ModelCfg):
        super().__init__()
        self.cfg = cfg
        self.model = Body(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def init_weights(self, seed: int) -> None:
        """Seeded GPT-2 style init: N(0, 0.02), residual outputs scaled by 1/sqrt(2 L)."""
        g = torch.Generator().manual_seed(seed)
        res_std = 0.02 / math.sqrt(2 * self.cfg.num_hidden_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.ndim == 1:
                    p.fill_(1.0)
                    continue
                std = res_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                p.copy_(torch.randn(p.shape, generator=g) * std)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states (B, T, hidden)."""
        x = self.model.embed_tokens(ids)
        cos, sin = rope_cos_sin(self.cfg, ids.shape[1], ids.device)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.model.norm(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.hidden(ids))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def autocast(device: torch.device):
    """bf16 autocast on CUDA, plain fp32 elsewhere (training and evaluation)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
