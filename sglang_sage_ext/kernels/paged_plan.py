"""Per-forward-batch state of the paged Sage kernel: the plan and the reusable workspace.

An SGLang forward batch calls attention once per layer with the same request shapes, so what
depends only on the shapes is computed once per batch (`ExtendPlan`: the packed-key layout and
the query-tile map) and the packed quantized K/V copies live in one `Workspace` that every layer
(and every later batch that fits) reuses. That leaves two kernel launches per layer call and no
allocation, where the first version paid a cumsum, three allocations, a memset and up to three
launches in every layer (issue #10: ~0.2 ms of fixed cost per call at 1K tokens).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from sglang_sage_ext.kernels.triton_helpers import KEY_BLOCK


@dataclass
class ExtendPlan:
    """Shapes of one extend batch, known on the host (SGLang's `extend_*_lens_cpu`).

    blk_indptr[b]: first 64-key block of request b in the packed copies (device, int32).
    n_blk: blocks the pre-pass writes (every request's blocks plus two zero blocks, so that a
    128-key tile running past the last request reads zeros, never stale memory).
    """

    extend_lens: tuple[int, ...]
    prefix_lens: tuple[int, ...]
    device: torch.device
    blk_indptr: torch.Tensor
    n_blk: int
    max_len_extend: int
    _tiles: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return len(self.extend_lens)

    @property
    def n_pad(self) -> int:
        return self.n_blk * KEY_BLOCK

    @property
    def num_prefix_tokens(self) -> int:
        return sum(self.prefix_lens)

    @functools.cached_property
    def tile_bound(self) -> int:
        """An upper bound on the batch's 64-row query tiles (sum of ceil(n / 64) <= batch +
        tokens / 64), from the host lengths: once per batch, not once per layer call."""
        return self.batch + sum(self.extend_lens) // 64

    def tiles(self, block_m: int) -> torch.Tensor:
        """[num_tiles, 2] int32 (request, query tile) pairs, heaviest tile first.

        Only tiles that hold queries exist, so a mixed batch launches no empty programs; the
        work of a tile is the keys it visits (prefix + causal part), and sorting by it puts the
        long tiles in the first wave.
        """
        cached = self._tiles.get(block_m)
        if cached is None:
            cached = _to_device(_tile_map(self.extend_lens, self.prefix_lens, block_m), self.device)
            cached = cached.view(-1, 2)
            self._tiles[block_m] = cached
        return cached


def _tile_map(extend_lens: Sequence[int], prefix_lens: Sequence[int], block_m: int) -> list[int]:
    work = []
    for b, (ext, pre) in enumerate(zip(extend_lens, prefix_lens, strict=False)):
        for m in range(-(-ext // block_m)):
            work.append((pre + min(ext, (m + 1) * block_m), b, m))
    work.sort(key=lambda t: -t[0])
    flat: list[int] = []
    for _, b, m in work:
        flat += (b, m)
    return flat


def _to_device(values: list[int], device: torch.device) -> torch.Tensor:
    """int32 host list -> device tensor without making the host wait for the GPU queue."""
    host = torch.tensor(values, dtype=torch.int32)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def plan_extend(
    extend_lens: Sequence[int], prefix_lens: Sequence[int], device: torch.device | str
) -> ExtendPlan:
    """The plan of one extend batch from its per-request new-token and prefix lengths."""
    device = torch.device(device)
    extend_lens = tuple(int(n) for n in extend_lens)
    prefix_lens = tuple(int(n) for n in prefix_lens)
    if len(extend_lens) != len(prefix_lens):
        raise ValueError("extend_lens and prefix_lens must have one entry per request")
    indptr = [0]
    for ext, pre in zip(extend_lens, prefix_lens, strict=False):
        indptr.append(indptr[-1] + -(-(ext + pre) // KEY_BLOCK))
    return ExtendPlan(
        extend_lens=extend_lens,
        prefix_lens=prefix_lens,
        device=device,
        blk_indptr=_to_device(indptr, device),
        n_blk=indptr[-1] + 2,
        max_len_extend=max(extend_lens, default=0),
    )


def plan_from_indptr(qo_indptr: torch.Tensor, kv_indptr: torch.Tensor) -> ExtendPlan:
    """A plan from device indptr tensors (one host sync; for callers without host lengths)."""
    qo = qo_indptr.tolist()
    kv = kv_indptr.tolist()
    ext = [b - a for a, b in itertools.pairwise(qo)]
    pre = [b - a for a, b in itertools.pairwise(kv)]
    return plan_extend(ext, pre, qo_indptr.device)


class Workspace:
    """Packed quantized K/V buffers, grown on demand and reused by every layer and batch.

    It holds the largest batch seen so far (a 32K-token chunk with 8 kv heads and D=128 needs
    ~100 MB in FP16 P·V mode, plus 4 MB for Q smoothing's per-key terms with 32 query heads);
    `release()` gives the memory back.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}
        # the last view handed out per buffer (name -> (shape, dtype, device), view): every
        # layer of a batch asks for the same shapes, and a new view costs ~5 us of host time
        self._views: dict[str, tuple[tuple, torch.Tensor]] = {}

    def _take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
        key = (shape, dtype, device)
        last = self._views.get(name)
        if last is not None and last[0] == key:
            return last[1]
        need = 1
        for n in shape:
            need *= n
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < need or buf.dtype != dtype or buf.device != device:
            buf = torch.empty(max(need, 1), dtype=dtype, device=device)
            self._bufs[name] = buf
        view = buf[:need].view(shape)
        self._views[name] = (key, view)
        return view

    def buffers(
        self,
        hkv: int,
        n_pad: int,
        block_d: int,
        batch: int,
        pv_fp8: bool,
        device,
        blocked: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(kq, ks, vq, vmax) views: INT8 K, per-key scales, transposed V, |V| amax (fp8 only).
        `blocked`: the BLOCKED layout's shapes (128-byte K rows, scales in quads with their
        bias terms: [Hkv, 2 * n_pad])."""
        k_row = 128 if blocked else block_d
        kq = self._take("kq", (hkv, n_pad, k_row), torch.int8, device)
        ks = self._take("ks", (hkv, 2 * n_pad if blocked else n_pad), torch.float32, device)
        v_dtype = torch.float8_e4m3fn if pv_fp8 else torch.float16
        vq = self._take("vq_fp8" if pv_fp8 else "vq", (hkv, block_d, n_pad), v_dtype, device)
        if not pv_fp8:  # the kernels never dereference vmax in FP16 P·V mode
            return kq, ks, vq, ks
        vmax = self._take("vmax", (batch, hkv, block_d), torch.float32, device)
        vmax.zero_()
        return kq, ks, vq, vmax

    def q_smooth_buffers(
        self, hq: int, n_pad: int, block_d: int, batch: int, device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cq, qmean) views of Q smoothing: the per-key term q_mean . k~ [Hq, n_pad] and the
        query mean per request and query head [B, Hq, block_d] (fp32, written by the pre-pass)."""
        cq = self._take("cq", (hq, n_pad), torch.float32, device)
        qmean = self._take("qmean", (batch, hq, block_d), torch.float32, device)
        return cq, qmean

    def release(self) -> None:
        self._bufs.clear()
        self._views.clear()
