"""Row maxima that grow late: the rescale paths of the paged Sage kernels, against float64.

The Hopper kernel's speculative softmax (csrc/sage_sm90_speculative.cuh) computes a tile's exps
with the running max of the earlier tiles. Random normal inputs never move the max past the lag
of 8 (log2 units) after the first tile, so the 1000-case suite does not reach the two rare
paths; these cases do. A few "spike" keys, aligned with a direction every query shares, appear
only after the first 128 keys (in the new keys and in the paged prefix):
* `lag`: they lift the row max by ~20 -> P and l are rescaled by alpha inside the tile;
* `overflow`: by ~120 -> exp2 with the old max may overflow fp32, and the warp recomputes its
  integer scores from shared memory before the exact path.
Both kernels (Triton, and the CUDA kernel where it builds), head_dim 64 and 128, Q smoothing off
and on, with and without a prefix. Asserted: no NaN, rows past the batch untouched, rel-L2 vs
float64 <= 1.5e-2 (the spikes make the softmax peaky: rows after them follow one key).
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.gpu.test_sage_extend_kernel_gpu import _reference
from tests.gpu.test_sage_llm_inputs_gpu import kernels_here

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

JUMPS = {"lag": (4.0, 40.0), "overflow": (8.0, 120.0)}  # (query component, spike key norm)
REL_L2_MAX = 1.5e-2
EXT, HQ, HKV, PAD_ROWS = 1000, 8, 2, 4


def _spiked_inputs(d: int, pre: int, jump: str, seed: int):
    """One request of EXT new tokens over `pre` paged ones; spike keys at new positions 300
    and 650 and, with a prefix, at prefix position pre // 2 (all past the first key tile)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    b, c = JUMPS[jump]
    u = torch.randn(d, generator=gen, device="cuda")
    u /= u.norm()
    q = torch.randn(EXT + PAD_ROWS, HQ, d, generator=gen, device="cuda") + b * u
    k = 0.5 * torch.randn(EXT + PAD_ROWS, HKV, d, generator=gen, device="cuda")
    v = torch.randn(EXT + PAD_ROWS, HKV, d, generator=gen, device="cuda")
    pool = pre + 64
    kb = 0.5 * torch.randn(pool, HKV, d, generator=gen, device="cuda")
    vb = torch.randn(pool, HKV, d, generator=gen, device="cuda")
    kvi = torch.randperm(pool, generator=gen, device="cuda")[:pre].to(torch.int64)
    for pos in (300, 650):
        k[pos] = c * u
    if pre >= 256:
        kb[kvi[pre // 2]] = c * u
    q, k, v, kb, vb = (x.to(torch.bfloat16) for x in (q, k, v, kb, vb))
    qo = torch.tensor([0, EXT], dtype=torch.int32, device="cuda")
    kvp = torch.tensor([0, pre], dtype=torch.int32, device="cuda")
    return q, k, v, kb, vb, qo, kvp, kvi


@pytest.mark.parametrize("kernel", kernels_here())
@pytest.mark.parametrize("jump", sorted(JUMPS))
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("q_smooth", ["off", "on"])
@pytest.mark.parametrize("pre", [0, 700])
def test_late_max_growth_matches_float64(kernel, jump, d, q_smooth, pre):
    from sglang_sage_ext.kernels.paged_sage import sage_extend_attention

    inputs = _spiked_inputs(d, pre, jump, seed=1000 * d + pre + len(jump))
    q, k, v, kb, vb, qo, kvp, kvi = inputs
    sm_scale = 1.0 / math.sqrt(d)
    ref = _reference(*inputs, sm_scale)[:EXT]
    o = torch.full(q.shape, float("nan"), dtype=q.dtype, device="cuda")
    sage_extend_attention(
        q, k, v, o, kb, vb, qo, kvp, kvi, EXT, sm_scale,
        pv_mode="fp16", kernel=kernel, q_smooth=q_smooth,
    )  # fmt: skip
    out = o[:EXT].double()
    assert not out.isnan().any() and not out.isinf().any()
    assert o[EXT:].isnan().all(), "rows past the batch were written"
    rel = float((out - ref).norm() / ref.norm())
    case = f"{kernel} d={d} {jump} q_smooth={q_smooth} pre={pre}"
    assert rel <= REL_L2_MAX, f"{case}: rel-L2 {rel:.3e}"
