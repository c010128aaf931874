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

The model below is a plain-torch Llama whose parameter names are the HF names; after saving,
the checkpoint is reloaded with transformers' LlamaForCausalLM and the logits are compared.

usage: python3 train_tiny_llama.py --out /tmp/sage-models --results-dir /tmp/sage-results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tinylm_data as data

# ---------------------------------------------------------------------------------------------
# model


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


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class TrainCfg:
    """Optimisation knobs and the curriculum.

    Training runs exactly `max_steps` steps, and everything that changes during training
    (learning rate, sequence lengths, share and density of retrieval sequences) is a function of
    `step / max_steps` only, so a seed gives the same schedule and data order on any GPU at any
    speed (GPU kernels are not bit-exact, so the weights still differ slightly between runs).
    `time_budget_s` is only a safety cap: reaching it stops training early, and the result says
    so (`cut_short_by_time_cap`).

    Curriculum: the first `copy_frac` of the steps use only sequences up to `copy_max_len`
    tokens, nearly all of them carrying dense retrieval pairs (`copy_p_task`, one pair per
    `copy_pair_every` tokens, `copy_query_frac` of them queried): at short range the attention
    gradient towards the needle is not diluted over thousands of keys, which should let the copy
    (induction) heads form early. Then the longer lengths are unlocked one by one until
    `unlock_frac`, and the task returns to its sparse mix (`p_task`, one pair per `pair_every`
    tokens).
    """

    seq_lens: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048, 4096, 8192, 16384])
    tokens_per_step: int = 65536
    max_steps: int = 1400
    time_budget_s: float | None = None
    lr: float = 1.5e-3
    min_lr_frac: float = 0.1
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    answer_weight: float = 1.0
    p_task: float = 0.75
    pair_every: int = 256
    query_frac: float = 0.5
    copy_frac: float = 0.3
    copy_max_len: int = 1024
    copy_p_task: float = 0.95
    copy_pair_every: int = 128
    copy_query_frac: float = 0.75
    unlock_frac: float = 0.6
    seed: int = 0
    log_every: int = 25
    probe_every: int = 50


def schedule(step: int, tc: TrainCfg) -> dict:
    """What step `step` (0-based) trains on: a function of step / max_steps only."""
    p = min(1.0, step / max(1, tc.max_steps))
    # learning rate: linear warmup, cosine decay to min_lr_frac
    if p < tc.warmup_frac:
        lr = tc.lr * max((step + 1) / max(1.0, tc.warmup_frac * tc.max_steps), 0.02)
    else:
        q = (p - tc.warmup_frac) / max(1e-9, 1 - tc.warmup_frac)
        lr = tc.lr * (tc.min_lr_frac + (1 - tc.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * q)))
    lens = sorted(tc.seq_lens)
    n_short = max(1, sum(1 for n in lens if n <= tc.copy_max_len))
    if p < tc.copy_frac:
        return {"phase": "copy", "lr": lr, "lens": lens[:n_short], "p_task": tc.copy_p_task,
                "pair_every": tc.copy_pair_every, "query_frac": tc.copy_query_frac}  # fmt: skip
    q = min(1.0, (p - tc.copy_frac) / max(1e-9, tc.unlock_frac - tc.copy_frac))
    # the first longer length right after the copy phase, the longest one at unlock_frac
    k = min(len(lens), n_short + 1 + math.floor(q * (len(lens) - n_short - 1)))
    return {"phase": "long" if k >= len(lens) else "unlock", "lr": lr, "lens": lens[:k],
            "p_task": tc.p_task, "pair_every": tc.pair_every,
            "query_frac": tc.query_frac}  # fmt: skip


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def make_batch(
    task: data.RetrievalTask, seq_len: int, batch: int, rng, p_task: float, device, **task_kw
):
    """(inputs, labels, answer mask) tensors for one step; sequences have seq_len + 1 tokens."""
    seqs, masks = zip(
        *(
            task.train_sequence(seq_len + 1, rng=rng, p_task=p_task, **task_kw)
            for _ in range(batch)
        ),
        strict=True,
    )
    ids = torch.from_numpy(np.stack(seqs).astype(np.int64))
    m = torch.from_numpy(np.stack(masks))
    if device.type == "cuda":
        ids, m = ids.pin_memory(), m.pin_memory()
    ids, m = ids.to(device, non_blocking=True), m.to(device, non_blocking=True)
    return ids[:, :-1], ids[:, 1:], m[:, 1:]


def train(
    model: TinyLlama,
    task: data.RetrievalTask,
    tc: TrainCfg,
    device: torch.device,
    probe=None,
    log=print,
    probe_ok: float = 0.5,
) -> dict:
    """Train in place for `tc.max_steps` steps; returns the history (loss curve, probes, ...).

    Loss = mean next-token CE over all tokens + `answer_weight` x mean CE over the answer tokens
    of the retrieval queries. `probe(model)` (every `tc.probe_every` steps and after the last
    step) returns `{name: exact match}`; the first step at which its first value reaches
    `probe_ok` is reported as `emerged_step`. Training stops early only at the time cap
    `tc.time_budget_s`, which is logged loudly and recorded as `cut_short_by_time_cap`.
    """
    name = model.cfg.name
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed + 1)  # the sequences
    len_rng = np.random.default_rng([tc.seed, 2])  # the sequence length of each step
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": tc.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=tc.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
        fused=device.type == "cuda",
    )
    model.train()
    curve: list[dict] = []
    probes: list[dict] = []
    phases: list[dict] = []
    emerged_step = None
    cut_short = False
    acc_loss = torch.zeros(2, device=device)
    acc_n = 0
    step = tokens = 0
    log(
        f"[train:{name}] {tc.max_steps} steps x {tc.tokens_per_step} tokens; schedule by step "
        f"only; time cap {tc.time_budget_s} s (safety only)"
    )
    t0 = time.perf_counter()

    def run_probe() -> None:
        nonlocal emerged_step
        model.eval()
        r = probe(model)
        model.train()
        first = next(iter(r.values()), None)
        r |= {"step": step, "time_s": round(time.perf_counter() - t0, 1)}
        probes.append(r)
        log(f"[probe:{name}] {r}")
        if emerged_step is None and first is not None and first >= probe_ok:
            emerged_step = step
            log(f"[probe:{name}] retrieval emerged by step {step} of {tc.max_steps} ({r})")

    def log_point(lr: float, seq_len: int, bsz: int, phase: str) -> None:
        nonlocal acc_n
        lm, an = (acc_loss / acc_n).tolist()
        el = time.perf_counter() - t0
        curve.append(
            {"step": step, "time_s": round(el, 1), "tokens": tokens, "lm_loss": round(lm, 4),
             "answer_loss": round(an, 4), "lr": round(lr, 6), "seq_len": seq_len,
             "phase": phase}
        )  # fmt: skip
        log(
            f"[train:{name}] step {step}/{tc.max_steps} t={el:.0f}s lm={lm:.3f} ans={an:.3f} "
            f"lr={lr:.2e} L={seq_len}x{bsz} {phase} {step / max(el, 1e-9):.1f} steps/s "
            f"{tokens / max(el, 1e-9) / 1e3:.0f}K tok/s"
        )
        acc_loss.zero_()
        acc_n = 0

    while step < tc.max_steps:
        el = time.perf_counter() - t0
        if tc.time_budget_s and el >= tc.time_budget_s:
            cut_short = True
            log(
                f"[train:{name}] WARNING: time cap {tc.time_budget_s:g} s reached after {step} "
                f"of {tc.max_steps} steps: training CUT SHORT (the schedule assumed "
                f"{tc.max_steps} steps; raise --time-budget-s / TRAIN_CAP_S or lower "
                f"--max-steps / TRAIN_STEPS)"
            )
            break
        sc = schedule(step, tc)
        if not phases or phases[-1]["phase"] != sc["phase"] or phases[-1]["lens"] != sc["lens"]:
            ph = {k: sc[k] for k in ("phase", "lens", "p_task", "pair_every", "query_frac")}
            phases.append({"step": step, **ph})
            log(f"[train:{name}] step {step}: {ph}")
        lr = sc["lr"]
        for g in opt.param_groups:
            g["lr"] = lr
        seq_len = int(len_rng.choice(sc["lens"]))
        bsz = max(1, tc.tokens_per_step // seq_len)
        inp, lab, amask = make_batch(
            task, seq_len, bsz, rng, sc["p_task"], device,
            pair_every=sc["pair_every"], query_frac=sc["query_frac"],
        )  # fmt: skip
        with _autocast(device):
            logits = model(inp)
        ce = F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), lab.reshape(-1), reduction="none"
        )
        lm_loss = ce.mean()
        am = amask.reshape(-1).float()
        ans_loss = (ce * am).sum() / am.sum().clamp(min=1.0)
        loss = lm_loss + tc.answer_weight * ans_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        acc_loss += torch.stack([lm_loss.detach(), ans_loss.detach()])
        acc_n += 1
        step += 1
        tokens += bsz * seq_len
        if step % tc.log_every == 0 or step == 1 or step == tc.max_steps:
            log_point(lr, seq_len, bsz, sc["phase"])
        if probe is not None and tc.probe_every and step % tc.probe_every == 0:
            run_probe()
    if acc_n:  # cut short between two log points
        log_point(lr, seq_len, bsz, sc["phase"])
    if probe is not None and (not probes or probes[-1]["step"] != step):
        run_probe()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.eval()
    el = time.perf_counter() - t0
    return {
        "steps": step,
        "max_steps": tc.max_steps,
        "cut_short_by_time_cap": cut_short,
        "tokens": tokens,
        "train_time_s": round(el, 1),
        "steps_per_s": round(step / max(el, 1e-9), 2),
        "emerged_step": emerged_step,
        "loss_curve": curve,
        "probes": probes,
        "phases": phases,
        "final_lm_loss": curve[-1]["lm_loss"] if curve else None,
        "final_answer_loss": curve[-1]["answer_loss"] if curve else None,
        "train_cfg": asdict(tc),
    }


# ---------------------------------------------------------------------------------------------
# evaluation (bf16 reference = this model with SDPA)


@torch.no_grad()
def perplexity(
    model: TinyLlama,
    stream: np.ndarray,
    ctx: int,
    device: torch.device,
    max_tokens: int = 262144,
    batch: int = 8,
) -> dict:
    """Perplexity over non-overlapping `ctx`-token windows of the held-out stream."""
    n_win = min(len(stream) // ctx, max(1, max_tokens // ctx))
    if n_win == 0:
        return {"ppl": None, "windows": 0, "tokens": 0}
    wins = torch.from_numpy(stream[: n_win * ctx].astype(np.int64)).view(n_win, ctx)
    nll, cnt = 0.0, 0
    for i in range(0, n_win, batch):
        ids = wins[i : i + batch].to(device)
        with _autocast(device):
            logits = model(ids)
        ce = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
            reduction="sum",
        )  # fmt: skip
        nll += float(ce)
        cnt += ids[:, 1:].numel()
    return {"ppl": round(math.exp(nll / cnt), 4), "windows": n_win, "tokens": cnt}


def retrieval_samples(
    task: data.RetrievalTask, length: int, n: int, seed: int
) -> list[data.RetrievalSample]:
    """The `n` eval prompts of one length (the same ones for every model and backend)."""
    rng = np.random.default_rng([seed, length])
    return [task.sample(length, rng=rng) for _ in range(n)]


@torch.no_grad()
def retrieval_accuracy(
    model: TinyLlama,
    samples: list[data.RetrievalSample],
    device: torch.device,
    batch: int | None = None,
    pad_id: int = 0,
) -> dict:
    """Exact match of the copied value under greedy decoding (= teacher-forced argmax)."""
    if not samples:
        return {"exact": None, "n": 0}
    length = len(samples[0].input_ids)
    batch = batch or max(1, 131072 // length)
    exact = tok_ok = tok_n = 0
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        amax = max(len(s.answer_ids) for s in chunk)
        ids = torch.full((len(chunk), length + amax), pad_id, dtype=torch.long)
        for j, s in enumerate(chunk):
            ids[j, : length + len(s.answer_ids)] = torch.tensor(s.input_ids + s.answer_ids)
        ids = ids.to(device)
        with _autocast(device):
            h = model.hidden(ids)[:, length - 1 : length - 1 + amax]
            pred = model.lm_head(h).argmax(-1).cpu()
        for j, s in enumerate(chunk):
            a = torch.tensor(s.answer_ids)
            ok = pred[j, : len(a)] == a
            exact += bool(ok.all())
            tok_ok += int(ok.sum())
            tok_n += len(a)
    return {
        "exact": round(exact / len(samples), 4),
        "token_acc": round(tok_ok / tok_n, 4),
        "n": len(samples),
        "length": length,
    }


# ---------------------------------------------------------------------------------------------
# saving and the transformers check


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
    import shutil

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


# ---------------------------------------------------------------------------------------------
# the pipeline


def _versions() -> dict:
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


def _small_heldout_stream(tok, eos: int) -> np.ndarray | None:
    p = Path(__file__).resolve().parents[1] / "data" / "heldout_small.txt"
    return data.encode_stream(tok, [p.read_text()], eos) if p.exists() else None


def run_variant(name: str, d: dict, args, device: torch.device, log=print) -> dict:
    """Train, save, check against transformers, evaluate one variant."""
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
    eval_task = data.RetrievalTask(tok, d["heldout"], seed=args.seed + 7)
    probe_sets = {
        n: retrieval_samples(eval_task, n, args.probe_trials, seed=args.seed + 99)
        for n in sorted(args.probe_lengths)
    }

    def probe(m):
        return {
            f"probe_exact@{n}": retrieval_accuracy(m, s, device, pad_id=ids["pad"])["exact"]
            for n, s in probe_sets.items()
        }

    tc = TrainCfg(
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
    hist = train(
        model, train_task, tc, device, probe=probe if probe_sets else None, log=log,
        probe_ok=args.retrieval_threshold,
    )  # fmt: skip
    mdir = save_model(model, Path(args.out) / f"stdlib-llama-{name}", d["tok_dir"], ids)
    log(f"[{name}] saved {mdir}")
    res: dict = {"path": str(mdir), "config": asdict(cfg), "params": n_params(model), "train": hist}
    t0 = time.perf_counter()
    check_ids = torch.from_numpy(d["heldout"][: 2 * 128].astype(np.int64)).view(2, 128)
    try:
        res["hf_check"] = hf_logits_check(mdir, cfg, check_ids)
    except Exception as e:
        res["hf_check"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    log(f"[{name}] hf check {res['hf_check']}")
    # evaluate the saved bf16 weights (what SGLang will load), in bf16 on the device
    ev = load_own(mdir, cfg, torch.bfloat16 if device.type == "cuda" else torch.float32).to(device)
    ppl: dict = {"heldout_stdlib": {}, "heldout_small": {}}
    small = _small_heldout_stream(tok, ids["eos"])
    for c in args.ppl_contexts:
        ppl["heldout_stdlib"][str(c)] = perplexity(ev, d["heldout"], c, device, args.ppl_max_tokens)
        if small is not None:
            ppl["heldout_small"][str(c)] = perplexity(ev, small, c, device, args.ppl_max_tokens)
    ret = {}
    for length in args.eval_lengths:
        s = retrieval_samples(eval_task, length, args.eval_trials, seed=args.seed + 1000)
        ret[str(length)] = retrieval_accuracy(ev, s, device, pad_id=ids["pad"])
        log(f"[{name}] retrieval@{length}: {ret[str(length)]}")
    res["eval"] = {
        "perplexity": ppl,
        "retrieval": ret,
        "eval_time_s": round(time.perf_counter() - t0, 1),
    }
    res |= retrieval_verdict(ret, args.retrieval_threshold)
    log(f"[{name}] ppl {ppl}")
    log(f"[{name}] retrieval_learned={res['retrieval_learned']}")
    del model, ev
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def retrieval_verdict(ret: dict, threshold: float = 0.5) -> dict:
    """`retrieval_learned` from the exact match at the shortest eval length (>= threshold)."""
    if not ret:
        return {"retrieval_learned": None, "retrieval_check": None}
    n = min(ret, key=int)
    exact = ret[n].get("exact")
    ok = exact is not None and exact >= threshold
    return {
        "retrieval_learned": ok,
        "retrieval_check": {"length": int(n), "exact": exact, "threshold": threshold},
    }


def warnings_of(res: dict) -> list[str]:
    """One line per problem a reader must not miss (no retrieval skill, training cut short)."""
    out = []
    for name, r in res.get("variants", {}).items():
        if "error" in r:
            out.append(f"{name}: FAILED ({r['error']})")
            continue
        t = r.get("train", {})
        if t.get("cut_short_by_time_cap"):
            out.append(
                f"{name}: training CUT SHORT by the time cap after {t['steps']} of "
                f"{t['max_steps']} steps ({t['train_time_s']} s)"
            )
        hf = r.get("hf_check") or {}
        if hf.get("ok") is False:
            why = hf.get("error") or f"max |dlogit| {hf.get('max_abs_diff_fp32')}"
            out.append(f"{name}: transformers reload check failed ({why})")
        if r.get("retrieval_learned") is False:
            c = r["retrieval_check"]
            toy = " (expected for the toy smoke model)" if name == "toy" else ""
            out.append(
                f"{name}: retrieval NOT learned (retrieval_learned: false): exact match "
                f"{c['exact']} @ {c['length']} < {c['threshold']}{toy}"
            )
    return out


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


def to_markdown(res: dict) -> str:
    """Human summary of train_results.json."""
    lines = ["# Tiny trained Llamas: training and bf16 reference accuracy", ""]
    v = res["versions"]
    lines.append(
        f"seed {res['seed']}; torch {v['torch']}, transformers {v.get('transformers')}, "
        f"GPU {v.get('gpu', 'none')}; data: {res['data']['train_tokens']:,} train tokens, "
        f"{res['data']['heldout_tokens']:,} held-out tokens (stdlib `{res['data']['stdlib']}`, "
        f"split by file, seed `{res['data']['split_seed']}`); total {res['total_time_s']} s."
    )
    lines.append("")
    lines += [f"**retrieval_learned: {str(res.get('retrieval_learned')).lower()}**", ""]
    for w in warnings_of(res):
        lines += [f"> **WARNING: {w}**", ""]
    for name, r in res["variants"].items():
        if "error" in r:
            lines += [f"## {name}: FAILED", "", "```", r["error"], "```", ""]
            continue
        c, t, e = r["config"], r["train"], r["eval"]
        lines.append(f"## {name} ({r['params'] / 1e6:.1f} M params)")
        lines.append("")
        lines.append(
            f"{c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
            f"{c['num_attention_heads']} q / {c['num_key_value_heads']} kv heads x "
            f"{c['head_dim']}, rope_theta {c['rope_theta']:g}, max_pos "
            f"{c['max_position_embeddings']}; trained {t['steps']} of {t.get('max_steps')} "
            f"steps, {t['tokens'] / 1e6:.1f} M tokens, {t['train_time_s']} s "
            f"({t.get('steps_per_s')} steps/s); transformers reload max |dlogit| (fp32) "
            f"{r['hf_check'].get('max_abs_diff_fp32')}"
        )
        lines.append("")
        chk = r.get("retrieval_check") or {}
        emerged = t.get("emerged_step")
        lines.append(
            f"**retrieval_learned: {str(r.get('retrieval_learned')).lower()}** (exact match "
            f"{chk.get('exact')} @ {chk.get('length')}, threshold {chk.get('threshold')}); "
            f"training probe first >= threshold at step "
            f"{emerged if emerged is not None else 'never'}"
            + ("; **training cut short by the time cap**" if t.get("cut_short_by_time_cap") else "")
        )
        lines.append("")
        lines += ["| metric | value |", "|---|---|"]
        for src, per in e["perplexity"].items():
            for ctx, p in per.items():
                lines.append(f"| perplexity {src} @ {ctx} | {p['ppl']} ({p['tokens']:,} tokens) |")
        for length, rr in e["retrieval"].items():
            lines.append(
                f"| retrieval exact match @ {length} | {rr['exact']} "
                f"(token acc {rr.get('token_acc')}, n={rr['n']}) |"
            )
        lines.append("")
        curve = t["loss_curve"]
        if curve:
            pick = sorted({0, *range(0, len(curve), max(1, len(curve) // 8)), len(curve) - 1})
            lines += [
                "| step | time s | lm loss | answer loss | seq len | phase |",
                "|---|---|---|---|---|---|",
            ]
            for i in pick:
                p = curve[i]
                lines.append(
                    f"| {p['step']} | {p['time_s']} | {p['lm_loss']} | {p['answer_loss']} "
                    f"| {p['seq_len']} | {p.get('phase', '')} |"
                )
            lines.append("")
        if t.get("probes"):
            keys = [k for k in t["probes"][0] if k.startswith("probe_")]
            lines += [
                "| step | " + " | ".join(k.replace("probe_", "") for k in keys) + " |",
                "|---|" + "---|" * len(keys),
            ]
            for p in t["probes"]:
                lines.append(f"| {p['step']} | " + " | ".join(str(p[k]) for k in keys) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def ints(s: str) -> list[int]:
        return [int(x) for x in s.split(",") if x]

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--results-dir", required=True, type=Path)
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
    ap.add_argument("--seq-lens", type=ints, default=[256, 512, 1024, 2048, 4096, 8192, 16384])
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
    ap.add_argument("--eval-lengths", type=ints, default=[4096, 16384, 32768])
    ap.add_argument("--eval-trials", type=int, default=50)
    ap.add_argument("--probe-lengths", type=ints, default=[1024, 4096])
    ap.add_argument("--probe-trials", type=int, default=16)
    ap.add_argument("--probe-every", type=int, default=50, help="steps between probes (0: off)")
    ap.add_argument(
        "--retrieval-threshold", type=float, default=0.5,
        help="exact match at the shortest eval length below which retrieval_learned is false",
    )  # fmt: skip
    ap.add_argument("--ppl-contexts", type=ints, default=[1024, 4096])
    ap.add_argument("--ppl-max-tokens", type=int, default=262144)
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


def main(argv: list[str] | None = None) -> int:
    os.environ["TOKENIZERS_PARALLELISM"] = "true"  # encode_batch on all cores; we never fork
    args = parse_args(argv)
    t0 = time.perf_counter()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
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
        "versions": _versions(),
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
            import traceback

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


def write_results(res: dict, results_dir: Path, t0: float) -> None:
    """train_results.{json,md}, with the overall verdict and the warnings up front."""
    flags = [r.get("retrieval_learned") for r in res["variants"].values()]
    res["retrieval_learned"] = bool(flags) and all(f is True for f in flags)
    res["warnings"] = warnings_of(res)
    res["total_time_s"] = round(time.perf_counter() - t0, 1)
    (results_dir / "train_results.json").write_text(json.dumps(res, indent=2) + "\n")
    (results_dir / "train_results.md").write_text(to_markdown(res))


if __name__ == "__main__":
    sys.exit(main())
