"""The pre-pass's BLOCKED layout (read by the warp-specialized Hopper kernel with TMA bulk
copies) holds exactly the plain packed layout's values, only moved: K rows with their 16-byte
chunks swizzled by key % 8, and V^T in 64-key blocks with chunks swizzled by channel % 8.

The plain layout is the one the Triton kernel reads (and the CPU kernel tests check against
float64), so un-swizzling the blocked copy in torch and comparing byte for byte checks every
index of the new layout. Runs the real Triton pre-pass under TRITON_INTERPRET=1 in a fresh
interpreter, as the other CPU kernel tests do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._subproc import run_python

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

pytestmark = pytest.mark.release_independent  # imports no SGLang (tests/_selection.py)

ROOT = Path(__file__).resolve().parents[1]


def unblock_k(kq_blocked: torch.Tensor, head_dim: int = 128) -> torch.Tensor:
    """[Hkv, n, 128] int8 with chunk c of row r at c ^ (r % 8) -> plain rows of `head_dim`
    (D = 64 uses the first four chunks of each 128-byte row)."""
    hkv, n, width = kq_blocked.shape
    chunks = kq_blocked.view(hkv, n, width // 16, 16)
    row = torch.arange(n).view(1, n, 1)
    src = torch.arange(width // 16).view(1, 1, -1) ^ (row % 8)  # where plain chunk c was stored
    plain = torch.gather(chunks, 2, src.unsqueeze(-1).expand(hkv, n, width // 16, 16))
    return plain.view(hkv, n, width)[:, :, :head_dim]


def unquad_scales(ks_blocked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[Hkv, 2n] quads (s_2i, s_2i+1, b_2i, b_2i+1) -> (scales [Hkv, n], bias terms [Hkv, n])."""
    quads = ks_blocked.view(ks_blocked.shape[0], -1, 4)
    return quads[:, :, :2].reshape(quads.shape[0], -1), quads[:, :, 2:].reshape(quads.shape[0], -1)


def unblock_v(vq_blocked: torch.Tensor) -> torch.Tensor:
    """[Hkv, n/64, D, 64] fp16 with chunk c of channel row d at c ^ (d % 8) -> V^T [Hkv, D, n]."""
    hkv, d, n = vq_blocked.shape  # the workspace view is [Hkv, D, n]; the bytes are blocked
    blocks = vq_blocked.reshape(hkv, n // 64, d, 8, 8)
    ch = torch.arange(d).view(1, 1, d, 1)
    src = torch.arange(8).view(1, 1, 1, 8) ^ (ch % 8)
    plain = torch.gather(blocks, 3, src.unsqueeze(-1).expand(hkv, n // 64, d, 8, 8))
    return plain.reshape(hkv, n // 64, d, 64).permute(0, 2, 1, 3).reshape(hkv, d, n)


def compare_layouts(head_dim: int = 128) -> dict:
    """Pre-pass both layouts for a batch with a prefix, a fresh prompt and a 1-token extend."""
    from sglang_sage_ext.kernels import paged_sage, sage_sm90
    from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend
    from tests._llm_inputs import llm

    shape = llm.Shape("3 requests", (130, 0, 70), (70, 200, 1), 4, 2, head_dim)
    b = llm.make_batch("llm", shape, seed=5)
    plan = plan_extend(shape.extend, shape.prefix, "cpu")
    tensors = (b.q, b.k, b.v, b.k_buffer, b.v_buffer, b.qo_indptr, b.kv_indptr, b.kv_indices)
    out = {}
    blocked_spec = sage_sm90.spec_for(False, head_dim=head_dim)
    for name, spec in (("plain", None), ("blocked", blocked_spec)):
        kq, ks, vq = paged_sage._pre_pass(tensors, plan, Workspace(), False, False, spec, 0.1)[:3]
        out[name] = (kq.clone(), ks.clone(), vq.clone())
    (kq_p, ks_p, vq_p), (kq_b, ks_b, vq_b) = out["plain"], out["blocked"]
    scales, bias = unquad_scales(ks_b)
    return {
        "k_shape": list(kq_b.shape),
        "k_equal": bool(torch.equal(unblock_k(kq_b, head_dim), kq_p)),
        "k_moved": kq_b.shape != kq_p.shape or not bool(torch.equal(kq_b, kq_p)),
        "scales_equal": bool(torch.equal(scales, ks_p)),
        "bias_equal": bool(torch.equal(bias, -12582912.0 * ks_p)),
        "v_equal": bool(torch.equal(unblock_v(vq_b).view(torch.int16), vq_p.view(torch.int16))),
        "v_moved": not bool(torch.equal(vq_b.view(torch.int16), vq_p.view(torch.int16))),
        "nonzero": int(kq_p.count_nonzero()),
    }


@pytest.mark.parametrize("head_dim", [128, 64])
def test_blocked_layout_is_the_plain_layout_swizzled(head_dim):
    """Every value of the BLOCKED copy is the plain copy's, moved: K rows (128 bytes even at
    D = 64), scales with their bias terms -1.5 * 2**23 * s in quads, V^T blocks."""
    code = (
        "import json; from tests.test_sm90_layout_cpu import compare_layouts; "
        f"print('ROW' + json.dumps(compare_layouts({head_dim})))"
    )
    stdout = run_python(code, env={"TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)})
    row = json.loads(next(x for x in stdout.splitlines() if x.startswith("ROW"))[3:])
    assert row["nonzero"] > 0, row
    assert row["k_shape"][2] == 128, row
    assert row["k_moved"] and row["v_moved"], row  # the layouts really differ
    assert row["k_equal"] and row["v_equal"] and row["scales_equal"], row
    assert row["bias_equal"], row


def test_unblock_helpers_invert_a_known_swizzle():
    """The test's own un-swizzling, on a layout built by hand from the kernel's rule."""
    plain_k = torch.arange(2 * 64 * 128, dtype=torch.int32).view(2, 64, 128)
    blocked_k = torch.empty_like(plain_k)
    for r in range(64):
        for c in range(8):
            blocked_k[:, r, (c ^ (r % 8)) * 16 : (c ^ (r % 8)) * 16 + 16] = plain_k[
                :, r, c * 16 : c * 16 + 16
            ]
    assert torch.equal(unblock_k(blocked_k), plain_k)
    plain_v = torch.arange(1 * 128 * 128, dtype=torch.int32).view(1, 128, 128)  # [Hkv, D, n]
    blocked_v = torch.empty(1, 2, 128, 64, dtype=torch.int32)
    for blk in range(2):
        for d in range(128):
            for c in range(8):
                dst = (c ^ (d % 8)) * 8
                blocked_v[0, blk, d, dst : dst + 8] = plain_v[
                    0, d, blk * 64 + c * 8 : blk * 64 + c * 8 + 8
                ]
    assert torch.equal(unblock_v(blocked_v.view(1, 128, 128)), plain_v)


def launches_by_mode() -> dict:
    """What `sage_extend_attention(kernel="sm90")` hands the CUDA launch in each P·V / Q
    smoothing mode (the launch itself recorded, not run: no GPU here), and the Triton path's
    smoothing terms for the same batch."""
    from sglang_sage_ext.kernels import paged_sage, sage_sm90
    from sglang_sage_ext.kernels.paged_plan import Workspace, plan_extend
    from tests._llm_inputs import llm

    shape = llm.Shape("2 requests", (130, 0), (70, 200), 4, 2, 128)
    b = llm.make_batch("q_bias", shape, seed=3)
    plan = plan_extend(shape.extend, shape.prefix, "cpu")
    tensors = (b.q, b.k, b.v, b.k_buffer, b.v_buffer, b.qo_indptr, b.kv_indptr, b.kv_indices)
    qk_scale = b.sm_scale * paged_sage._LOG2E
    packed = paged_sage._pre_pass(tensors, plan, Workspace(), False, True, None, qk_scale)
    qmean_ref, cq_ref = packed[4:]
    seen = {}

    def record(*args, spec, vmax=None, q_terms=None):
        terms = None if q_terms is None else [t.clone() for t in q_terms]
        seen["last"] = (spec, vmax is not None, terms)

    sage_sm90.launch = record
    out = {}
    modes = (("fp16", "auto"), ("fp16", "on"), ("fp16", "off"), ("fp8", "auto"), ("fp8", "on"))
    for pv, smooth in modes:
        paged_sage.sage_extend_attention(
            *tensors[:3], torch.empty_like(b.q), *tensors[3:], 200, b.sm_scale, pv_mode=pv,
            q_smooth=smooth, plan=plan, workspace=Workspace(), kernel="sm90",
        )  # fmt: skip
        spec, fp8, terms = seen["last"]
        row = {"entry": spec.entry.decode(), "spec_smooth": spec.q_smooth, "fp8": fp8}
        row["terms"] = terms is not None
        if terms is not None:
            qmean, cq = terms
            row["qmean_shape"], row["cq_shape"] = list(qmean.shape), list(cq.shape)
            keys = plan.n_pad - 128  # the two zero blocks at the end are not written per mode
            row["qmean_equal"] = bool(torch.equal(qmean, qmean_ref))
            row["cq_equal"] = bool(torch.equal(cq[:, :keys], cq_ref[:, :keys]))
            row["cq_nonzero"] = int(cq.count_nonzero())
        out[f"{pv}/{smooth}"] = row
    return out


def test_each_mode_launches_its_cuda_kernel_with_its_terms():
    """Q smoothing reaches the CUDA kernel when asked for ("auto" keeps it off there): its build
    flag and the pre-pass's q_mean and c_j, the very terms the Triton kernel reads (the BLOCKED
    K/V layout does not move them)."""
    code = (
        "import json; from tests.test_sm90_layout_cpu import launches_by_mode; "
        "print('ROW' + json.dumps(launches_by_mode()))"
    )
    stdout = run_python(code, env={"TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)})
    rows = json.loads(next(x for x in stdout.splitlines() if x.startswith("ROW"))[3:])
    smoothed = {"fp16/on": "sage_sm90_ws_fwd", "fp8/on": "sage_sm90_fwd"}
    for mode, row in rows.items():
        assert row["spec_smooth"] == row["terms"] == (mode in smoothed), (mode, row)
        assert row["fp8"] == mode.startswith("fp8"), (mode, row)
    for mode, entry in smoothed.items():
        row = rows[mode]
        assert row["entry"] == entry, row
        assert row["qmean_shape"] == [2, 4, 128] and row["cq_shape"][0] == 4, row
        assert row["qmean_equal"] and row["cq_equal"] and row["cq_nonzero"] > 0, row
