"""Evaluation of the tiny Llamas (bf16 reference = this model with SDPA).

Perplexity over non-overlapping windows of a held-out token stream, and exact match of the
synthetic key-value retrieval task (greedy = teacher-forced argmax over the answer tokens).
"""

from __future__ import annotations

import math

import numpy as np
import tinylm_data as data
import torch
import torch.nn.functional as F
from tinylm_model import TinyLlama, autocast


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
        with autocast(device):
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
        with autocast(device):
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
