"""Training of the tiny Llamas: the step-based schedule and the training loop.

Everything that changes during training is a function of `step / max_steps` (`schedule`), so a
seed gives the same schedule and data order at any speed. The only clock is the optional safety
cap `TrainCfg.time_budget_s`; `train()` reads time through its `clock` argument, so tests can
drive the cap with a fake clock instead of the machine's speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import tinylm_data as data
import torch
import torch.nn.functional as F
from tinylm_model import TinyLlama, autocast


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


def make_optimizer(model: TinyLlama, tc: TrainCfg, device: torch.device):
    """AdamW, weight decay on the matrices only (fused on CUDA)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": tc.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=tc.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
        fused=device.type == "cuda",
    )


class _Run:
    """The state of one `train()` call: counters, loss accumulators and the history."""

    def __init__(self, model, task, tc: TrainCfg, device, probe, log, probe_ok, clock):
        self.model, self.task, self.tc, self.device = model, task, tc, device
        self.probe, self.log, self.probe_ok, self.clock = probe, log, probe_ok, clock
        self.name = model.cfg.name
        torch.manual_seed(tc.seed)
        self.rng = np.random.default_rng(tc.seed + 1)  # the sequences
        self.len_rng = np.random.default_rng([tc.seed, 2])  # the sequence length of each step
        self.opt = make_optimizer(model, tc, device)
        self.curve: list[dict] = []
        self.probes: list[dict] = []
        self.phases: list[dict] = []
        self.emerged_step: int | None = None
        self.cut_short = False
        self.acc_loss = torch.zeros(2, device=device)
        self.acc_n = 0
        self.step = self.tokens = 0
        self.last: dict = {}  # lr, seq_len, bsz, phase of the last step
        self.t0 = clock()

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def run_probe(self) -> None:
        self.model.eval()
        r = self.probe(self.model)
        self.model.train()
        first = next(iter(r.values()), None)
        r |= {"step": self.step, "time_s": round(self.elapsed(), 1)}
        self.probes.append(r)
        self.log(f"[probe:{self.name}] {r}")
        if self.emerged_step is None and first is not None and first >= self.probe_ok:
            self.emerged_step = self.step
            self.log(
                f"[probe:{self.name}] retrieval emerged by step {self.step} of "
                f"{self.tc.max_steps} ({r})"
            )

    def log_point(self) -> None:
        lm, an = (self.acc_loss / self.acc_n).tolist()
        el, s = self.elapsed(), self.last
        secs = max(el, 1e-9)
        self.curve.append(
            {"step": self.step, "time_s": round(el, 1), "tokens": self.tokens,
             "lm_loss": round(lm, 4), "answer_loss": round(an, 4), "lr": round(s["lr"], 6),
             "seq_len": s["seq_len"], "phase": s["phase"]}
        )  # fmt: skip
        self.log(
            f"[train:{self.name}] step {self.step}/{self.tc.max_steps} t={el:.0f}s lm={lm:.3f} "
            f"ans={an:.3f} lr={s['lr']:.2e} L={s['seq_len']}x{s['bsz']} {s['phase']} "
            f"{self.step / secs:.1f} steps/s {self.tokens / secs / 1e3:.0f}K tok/s"
        )
        self.acc_loss.zero_()
        self.acc_n = 0

    def over_time_cap(self) -> bool:
        tc = self.tc
        if not tc.time_budget_s or self.elapsed() < tc.time_budget_s:
            return False
        self.cut_short = True
        self.log(
            f"[train:{self.name}] WARNING: time cap {tc.time_budget_s:g} s reached after "
            f"{self.step} of {tc.max_steps} steps: training CUT SHORT (the schedule assumed "
            f"{tc.max_steps} steps; raise --time-budget-s / TRAIN_CAP_S or lower "
            f"--max-steps / TRAIN_STEPS)"
        )
        return True

    def note_phase(self, sc: dict) -> None:
        last = self.phases[-1] if self.phases else None
        if last is None or last["phase"] != sc["phase"] or last["lens"] != sc["lens"]:
            ph = {k: sc[k] for k in ("phase", "lens", "p_task", "pair_every", "query_frac")}
            self.phases.append({"step": self.step, **ph})
            self.log(f"[train:{self.name}] step {self.step}: {ph}")

    def train_step(self) -> None:
        """One optimizer step on the batch that `schedule(step)` asks for."""
        tc, sc = self.tc, schedule(self.step, self.tc)
        self.note_phase(sc)
        for g in self.opt.param_groups:
            g["lr"] = sc["lr"]
        seq_len = int(self.len_rng.choice(sc["lens"]))
        bsz = max(1, tc.tokens_per_step // seq_len)
        inp, lab, amask = make_batch(
            self.task, seq_len, bsz, self.rng, sc["p_task"], self.device,
            pair_every=sc["pair_every"], query_frac=sc["query_frac"],
        )  # fmt: skip
        with autocast(self.device):
            logits = self.model(inp)
        ce = F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), lab.reshape(-1), reduction="none"
        )
        lm_loss = ce.mean()
        am = amask.reshape(-1).float()
        ans_loss = (ce * am).sum() / am.sum().clamp(min=1.0)
        loss = lm_loss + tc.answer_weight * ans_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.opt.step()
        self.acc_loss += torch.stack([lm_loss.detach(), ans_loss.detach()])
        self.acc_n += 1
        self.step += 1
        self.tokens += bsz * seq_len
        self.last = {"lr": sc["lr"], "seq_len": seq_len, "bsz": bsz, "phase": sc["phase"]}

    def history(self) -> dict:
        el, curve = self.elapsed(), self.curve
        return {
            "steps": self.step,
            "max_steps": self.tc.max_steps,
            "cut_short_by_time_cap": self.cut_short,
            "tokens": self.tokens,
            "train_time_s": round(el, 1),
            "steps_per_s": round(self.step / max(el, 1e-9), 2),
            "emerged_step": self.emerged_step,
            "loss_curve": curve,
            "probes": self.probes,
            "phases": self.phases,
            "final_lm_loss": curve[-1]["lm_loss"] if curve else None,
            "final_answer_loss": curve[-1]["answer_loss"] if curve else None,
            "train_cfg": asdict(self.tc),
        }


def train(
    model: TinyLlama,
    task: data.RetrievalTask,
    tc: TrainCfg,
    device: torch.device,
    probe=None,
    log=print,
    probe_ok: float = 0.5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Train in place for `tc.max_steps` steps; returns the history (loss curve, probes, ...).

    Loss = mean next-token CE over all tokens + `answer_weight` x mean CE over the answer tokens
    of the retrieval queries. `probe(model)` (every `tc.probe_every` steps and after the last
    step) returns `{name: exact match}`; the first step at which its first value reaches
    `probe_ok` is reported as `emerged_step`. Training stops early only at the time cap
    `tc.time_budget_s`, which is logged loudly and recorded as `cut_short_by_time_cap`.
    `clock()` (seconds) is the only source of time: the cap and the reported times use it.
    """
    run = _Run(model, task, tc, device, probe, log, probe_ok, clock)
    model.train()
    log(
        f"[train:{run.name}] {tc.max_steps} steps x {tc.tokens_per_step} tokens; schedule by "
        f"step only; time cap {tc.time_budget_s} s (safety only)"
    )
    while run.step < tc.max_steps and not run.over_time_cap():
        run.train_step()
        step = run.step
        if step % tc.log_every == 0 or step == 1 or step == tc.max_steps:
            run.log_point()
        if probe is not None and tc.probe_every and step % tc.probe_every == 0:
            run.run_probe()
    if run.acc_n:  # cut short between two log points
        run.log_point()
    if probe is not None and (not run.probes or run.probes[-1]["step"] != run.step):
        run.run_probe()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.eval()
    return run.history()
