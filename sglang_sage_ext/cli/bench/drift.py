"""`bench drift`: how far Sage's attention output drifts from exact attention, layer by layer.

In process, no server: the Hugging Face model (transformers, Llama-style) gets a registered
attention function that computes exact attention (SDPA, causal) and Sage (`sage_extend`,
the same kernel call the `sage_attn` backend makes) on the *same* q/k/v. Pass 1 returns the
exact output (every layer sees exact inputs) and records Sage-vs-exact per layer; pass 2
returns Sage's output in every layer, and its final hidden states and full-vocabulary logits
are compared with pass 1's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sglang_sage_ext.cli.bench import prompts

#: Gates this command reports (see thresholds.GATES).
GATES = ("drift_rel_l2_max", "drift_logits_kl")
ATTN_NAME = "sglang_sage_drift"
LOGIT_CHUNK = 512


def environment_problem(model_path: str, device: str = "cuda") -> str | None:
    """None when drift can run here, else what is missing (CUDA, sageattention, model)."""
    path = Path(model_path).expanduser()
    if not (path / "config.json").exists():
        return f"model path {model_path!r} is not a model directory with config.json"
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        return f"drift needs torch and transformers ({exc})"
    if device == "cuda":
        if not torch.cuda.is_available():
            return "drift needs a CUDA GPU (it runs the SageAttention kernel in process)"
        from sglang_sage_ext.kernels.sage_ops import sageattention_problem

        problem = sageattention_problem()
        if problem:
            return problem
    return None


def exact_attention(q: Any, k: Any, v: Any, scale: float | None) -> Any:
    """Causal SDPA; q [B, Hq, S, D], k/v [B, Hkv, S, D] -> [B, S, Hq, D]."""
    import torch.nn.functional as F

    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return out.transpose(1, 2).contiguous()


def sage_attention(q: Any, k: Any, v: Any, scale: float | None) -> Any:
    """Sage on SGLang's packed layout via `sage_extend`; same shapes as exact_attention."""
    import torch

    from sglang_sage_ext.kernels.sage_ops import sage_extend

    b, hq, s, d = q.shape
    qp = q.transpose(1, 2).reshape(b * s, hq, d).contiguous()
    kp = k.transpose(1, 2).reshape(b * s, k.shape[1], d).contiguous()
    vp = v.transpose(1, 2).reshape(b * s, v.shape[1], d).contiguous()
    out = torch.empty_like(qp)
    cu = torch.arange(0, b + 1, device=q.device, dtype=torch.int32) * s
    sage_extend(qp, kp, vp, out, cu, s, scale, b * s)
    return out.reshape(b, s, hq, d)


def compare_tensors(ref: Any, other: Any) -> dict[str, float]:
    """rel-L2, max abs and cosine of two tensors (float32)."""
    r = ref.float().flatten()
    o = other.float().flatten()
    diff = o - r
    ref_norm = float(r.norm())
    return {
        "rel_l2": float(diff.norm()) / ref_norm if ref_norm else math.nan,
        "max_abs": float(diff.abs().max()),
        "cosine": float((r @ o) / (r.norm() * o.norm()).clamp_min(1e-30)),
    }


class _Recorder:
    """The registered attention function's state: mode and per-layer records."""

    def __init__(self, sage_fn: Callable[..., Any]) -> None:
        self.sage_fn = sage_fn
        self.mode = "compare"  # or "sage"
        self.records: dict[int, list[dict[str, float]]] = {}
        self.calls = 0

    def __call__(
        self,
        module: Any,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> tuple[Any, None]:
        self.calls += 1
        sage = self.sage_fn(query, key, value, scaling)
        if self.mode == "sage":
            return sage, None
        exact = exact_attention(query, key, value, scaling)
        layer = int(getattr(module, "layer_idx", len(self.records)))
        self.records.setdefault(layer, []).append(compare_tensors(exact, sage))
        return exact, None


def _register(recorder: _Recorder) -> None:
    try:
        from transformers import AttentionInterface

        AttentionInterface.register(ATTN_NAME, recorder)
    except ImportError:  # transformers < 4.48
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        ALL_ATTENTION_FUNCTIONS[ATTN_NAME] = recorder


def _use_attention(model: Any) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        try:
            setter(ATTN_NAME)
            return
        except Exception:
            pass
    model.config._attn_implementation = ATTN_NAME


def _logit_drift(model: Any, h_exact: Any, h_sage: Any) -> dict[str, float]:
    """Full-vocabulary logits of both hidden states, in chunks: KL, top-1, rel-L2, cosine."""
    import torch

    head = model.get_output_embeddings()
    sq_diff = sq_ref = sq_other = dot = 0.0
    max_abs = 0.0
    kl_sum = 0.0
    agree = positions = 0
    for start in range(0, h_exact.shape[0], LOGIT_CHUNK):
        le = head(h_exact[start : start + LOGIT_CHUNK]).float()
        ls = head(h_sage[start : start + LOGIT_CHUNK]).float()
        d = ls - le
        sq_diff += float((d * d).sum())
        sq_ref += float((le * le).sum())
        sq_other += float((ls * ls).sum())
        dot += float((le * ls).sum())
        max_abs = max(max_abs, float(d.abs().max()))
        lpe, lps = torch.log_softmax(le, -1), torch.log_softmax(ls, -1)
        kl_sum += float((lpe.exp() * (lpe - lps)).sum())
        agree += int((le.argmax(-1) == ls.argmax(-1)).sum())
        positions += le.shape[0]
    return {
        "rel_l2": math.sqrt(sq_diff / sq_ref) if sq_ref else math.nan,
        "max_abs": max_abs,
        "cosine": dot / math.sqrt(sq_ref * sq_other) if sq_ref and sq_other else math.nan,
        "kl_mean": kl_sum / positions if positions else math.nan,
        "top1_agreement": agree / positions if positions else math.nan,
        "positions": positions,
    }


def _dtype_kwarg(dtype: Any) -> dict[str, Any]:
    """`dtype=` (transformers >= 4.56) or `torch_dtype=` (older)."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def run(
    model_path: str,
    context_lengths: Sequence[int],
    prompts_per_length: int,
    seed: int,
    dtype: str = "bfloat16",
    device: str = "cuda",
    progress: Any = None,
    sage_fn: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Both passes over seeded random prompts; per-layer and final drift (worst over prompts)."""
    import torch
    from transformers import AutoModelForCausalLM

    recorder = _Recorder(sage_fn or sage_attention)
    _register(recorder)
    model = AutoModelForCausalLM.from_pretrained(model_path, **_dtype_kwarg(getattr(torch, dtype)))
    model = model.to(device).eval()
    _use_attention(model)
    vocab = prompts.vocab_size(model_path)
    batch = [
        (n, p)
        for n in context_lengths
        for p in prompts.random_prompts(prompts_per_length, n, vocab, seed=seed * 13 + n)
    ]
    finals = _both_passes(model, recorder, batch, device, progress)
    if recorder.calls == 0:
        raise RuntimeError(
            "the registered attention function was never called: this transformers release "
            "or model class does not dispatch attention through AttentionInterface"
        )
    return {
        "device": str(torch.cuda.get_device_name(0)) if device == "cuda" else device,
        "layers": _layer_summary(recorder.records),
        "final": _final_summary(finals),
        "per_prompt": finals,
    }


def _both_passes(model, recorder, batch, device: str, progress: Any) -> list[dict[str, Any]]:
    """Per prompt: the exact pass (recording each layer's Sage drift), then the all-Sage pass;
    the final hidden states and logits of the two compared."""
    import torch

    task = (
        progress.add_task("drift (2 passes per prompt)", total=2 * len(batch)) if progress else None
    )
    decoder = model.get_decoder()
    finals: list[dict[str, Any]] = []
    with torch.inference_mode():
        for n, ids in batch:
            x = torch.tensor([ids], device=device)
            hidden = {}
            for mode in ("compare", "sage"):
                recorder.mode = mode
                hidden[mode] = decoder(input_ids=x).last_hidden_state[0]
                if progress:
                    progress.advance(task)
            finals.append(
                {
                    "context_length": n,
                    "hidden": compare_tensors(hidden["compare"], hidden["sage"]),
                    "logits": _logit_drift(model, hidden["compare"], hidden["sage"]),
                }
            )
    return finals


def _worst(values: list[float], pick: Callable) -> float:
    """max/min that a NaN poisons (Python's max skips a NaN unless it comes first): a layer
    with a NaN output must fail the gate, not vanish from it."""
    return math.nan if any(math.isnan(v) for v in values) else pick(values)


def _layer_summary(records: dict[int, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Per layer, the worst (and mean) drift over the prompts."""
    return [
        {
            "layer": layer,
            "rel_l2": _worst([r["rel_l2"] for r in recs], max),
            "rel_l2_mean": sum(r["rel_l2"] for r in recs) / len(recs),
            "max_abs": _worst([r["max_abs"] for r in recs], max),
            "cosine": _worst([r["cosine"] for r in recs], min),
        }
        for layer, recs in sorted(records.items())
    ]


def _final_summary(finals: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's output drift, worst over the prompts (KL: the mean)."""

    def worst(part: str, key: str, pick: Callable) -> float:
        return _worst([f[part][key] for f in finals], pick)

    return {
        "hidden": {
            "rel_l2": worst("hidden", "rel_l2", max),
            "max_abs": worst("hidden", "max_abs", max),
            "cosine": worst("hidden", "cosine", min),
        },
        "logits": {
            "rel_l2": worst("logits", "rel_l2", max),
            "max_abs": worst("logits", "max_abs", max),
            "cosine": worst("logits", "cosine", min),
            "kl_mean": sum(f["logits"]["kl_mean"] for f in finals) / len(finals),
            "top1_agreement": worst("logits", "top1_agreement", min),
        },
    }


LAYER_HEADER = ["layer", "rel-L2", "max abs", "cosine"]
FINAL_HEADER = ["quantity", "rel-L2", "max abs", "cosine", "KL mean", "top-1"]


def table_rows(result: dict[str, Any]) -> tuple[list[list[Any]], list[list[Any]]]:
    """(per-layer rows, final-drift rows) for LAYER_HEADER / FINAL_HEADER tables."""
    layers = [[r["layer"], r["rel_l2"], r["max_abs"], r["cosine"]] for r in result["layers"]]
    hidden, logits = result["final"]["hidden"], result["final"]["logits"]
    final = [
        ["hidden", hidden["rel_l2"], hidden["max_abs"], hidden["cosine"], "", ""],
        [
            "logits",
            logits["rel_l2"],
            logits["max_abs"],
            logits["cosine"],
            logits["kl_mean"],
            logits["top1_agreement"],
        ],
    ]
    return layers, final


def gates(result: dict[str, Any]) -> dict[str, float | None]:
    layers = result.get("layers") or []
    return {
        "drift_rel_l2_max": _worst([r["rel_l2"] for r in layers], max) if layers else None,
        "drift_logits_kl": (result.get("final") or {}).get("logits", {}).get("kl_mean"),
    }
