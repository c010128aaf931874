"""Per-batch plan and reused workspace of the paged Sage kernel (no GPU, no SGLang needed)."""

from __future__ import annotations

import pytest
import torch

from sglang_sage_ext.kernels.paged_plan import KEY_BLOCK, Workspace, plan_extend, plan_from_indptr


@pytest.mark.parametrize(
    ("extend", "prefix"),
    [([5], [0]), ([130, 1, 64], [64, 3, 0]), ([1] * 9, [100] * 9), ([300, 7], [0, 1000])],
)
@pytest.mark.parametrize("block_m", [64, 128])
def test_plan_layout_and_tile_map(extend, prefix, block_m):
    plan = plan_extend(extend, prefix, "cpu")
    blocks = [-(-(n + p) // KEY_BLOCK) for n, p in zip(extend, prefix, strict=True)]
    expected_indptr = [sum(blocks[:i]) for i in range(len(blocks) + 1)]
    assert plan.blk_indptr.tolist() == expected_indptr
    assert plan.n_blk == expected_indptr[-1] + 2  # two zero blocks past the last request
    assert plan.max_len_extend == max(extend)
    tiles = [tuple(t) for t in plan.tiles(block_m).tolist()]
    wanted = {(b, m) for b, n in enumerate(extend) for m in range(-(-n // block_m))}
    assert sorted(tiles) == sorted(wanted) and len(tiles) == len(wanted)  # no empty program
    work = [prefix[b] + min(extend[b], (m + 1) * block_m) for b, m in tiles]
    assert work == sorted(work, reverse=True)  # heaviest first
    assert plan.tiles(block_m) is plan.tiles(block_m)  # built once per batch


def test_plan_from_indptr_matches_host_lengths():
    qo = torch.tensor([0, 5, 135, 136])
    kv = torch.tensor([0, 0, 64, 67])
    a = plan_from_indptr(qo, kv)
    b = plan_extend([5, 130, 1], [0, 64, 3], "cpu")
    assert a.blk_indptr.tolist() == b.blk_indptr.tolist() and a.n_blk == b.n_blk


def test_plan_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one entry per request"):
        plan_extend([1, 2], [0], "cpu")


def test_workspace_is_reused_and_grows():
    ws = Workspace()
    kq, ks, vq, vmax = ws.buffers(2, 128, 64, 3, False, torch.device("cpu"))
    assert kq.shape == (2, 128, 64) and vq.shape == (2, 64, 128) and vq.dtype == torch.float16
    assert vmax is ks  # FP16 P·V never reads vmax
    kq2, *_ = ws.buffers(2, 64, 64, 3, False, torch.device("cpu"))
    assert kq2.data_ptr() == kq.data_ptr()  # smaller batch: same storage, no allocation
    kq3, *_ = ws.buffers(4, 256, 64, 3, False, torch.device("cpu"))
    assert kq3.shape == (4, 256, 64)
    _, _, vq8, vmax8 = ws.buffers(2, 64, 64, 3, True, torch.device("cpu"))
    assert vq8.dtype == torch.float8_e4m3fn and vmax8.shape == (3, 2, 64)
    assert float(vmax8.abs().sum()) == 0.0  # amax accumulates from zero every call
    ws.release()


def test_workspace_hands_every_layer_the_same_views():
    """Every layer call of a batch asks for the same shapes and gets the same view objects (a
    new view per call was ~5 us of host time each); after the storage grows, a shape asked
    before gets a view of the new storage, never of the freed one."""
    ws, cpu = Workspace(), torch.device("cpu")
    first = ws.buffers(2, 128, 64, 3, False, cpu, blocked=True)
    again = ws.buffers(2, 128, 64, 3, False, cpu, blocked=True)
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert first[0].shape == (2, 128, 128) and first[1].shape == (2, 256)  # BLOCKED shapes
    grown = ws.buffers(4, 512, 64, 3, False, cpu, blocked=True)
    small = ws.buffers(2, 128, 64, 3, False, cpu, blocked=True)
    assert small[0].data_ptr() == grown[0].data_ptr() != first[0].data_ptr()
    assert small[0].shape == first[0].shape
    fp8 = ws.buffers(2, 128, 64, 3, True, cpu, blocked=True)
    fp8[3].fill_(7.0)
    assert float(ws.buffers(2, 128, 64, 3, True, cpu, blocked=True)[3].abs().sum()) == 0.0


def test_a_batch_beyond_the_cuda_grid_goes_to_triton():
    """The Hopper kernels put query tiles on gridDim.y (at most 65535): a batch that may need
    more runs the Triton kernel (one logged reason), never a failed launch."""
    from sglang_sage_ext.kernels import paged_sage

    assert not paged_sage.too_many_tiles(plan_extend([32768] * 8, [0] * 8, "cpu"))
    assert not paged_sage.too_many_tiles(plan_extend([1] * 4096, [100] * 4096, "cpu"))
    assert paged_sage.too_many_tiles(plan_extend([64 * 65536], [0], "cpu"))
    assert paged_sage.too_many_tiles(plan_extend([1] * 70000, [0] * 70000, "cpu"))
