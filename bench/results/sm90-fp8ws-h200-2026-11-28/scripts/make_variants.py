"""Write this session's experiment builds of the warp-specialized kernel: each is a copy of
sglang_sage_ext/kernels/csrc with one textual edit, under DIR/<name>/ (kernel.cu includes the
copy). Timing only, several of them compute garbage on purpose (nosoftmax, halfpv).

usage (repo root): python3 <this file> DIR [NAME ...]
  FP16 builds (e2ea633's source): poly8 poly4 poly2 nosoftmax halfpv spec noturn
                                  t_shipped t_halfpv t_nosoftmax (phase-trace builds)
  FP8 builds (first `git apply fp8ws.patch`): f8_nopromote f8_nopromote_regscales f8_regscales
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

CSRC = Path("sglang_sage_ext/kernels/csrc")
WS, SOFTMAX = "sage_sm90_ws.cu", "sage_sm90_softmax.cuh"

# exp2 on the FMA pipe (FlashAttention-4's idea): 2^round(x) * p(f), f in [-0.5, 0.5], p of
# degree 3 (max rel. error 7.5e-5), the power of two added into the exponent bits by an IMAD.
POLY = """
__device__ __forceinline__ float exp2_fma(float x) {
  constexpr float kC = 12582912.f;  // 1.5 * 2^23
  x = fmaxf(x, -125.f);
  const float t = x + kC;
  const float f = x - (t - kC);
  float p = fmaf(0.0551796481013298f, f, 0.2426118552684784f);
  p = fmaf(p, f, 0.6932595372200012f);
  p = fmaf(p, f, 0.9999279975891113f);
  int mul;
  asm volatile("mov.b32 %0, 8388608;" : "=r"(mul));
  return __int_as_float(__float_as_int(p) + __float_as_int(t) * mul);
}
"""
EXP = (
    "    t[i] = exp2f(kQSmooth ? t[i] + neg_m[i >> 1 & 1] : "
    "fmaf(t[i], qs[i >> 1 & 1], neg_m[i >> 1 & 1]));\n"
)


def poly_every(k: int) -> list[tuple[str, str, str]]:
    """Every k-th exp2 of a tile on the FMA pipe instead of MUFU."""
    new = (
        "    {\n      const float xx = kQSmooth ? t[i] + neg_m[i >> 1 & 1] : "
        "fmaf(t[i], qs[i >> 1 & 1], neg_m[i >> 1 & 1]);\n"
        f"      t[i] = (i % {k} == {k} - 1) ? exp2_fma(xx) : exp2f(xx);\n    }}\n"
    )
    return [(SOFTMAX, EXP, new), (SOFTMAX, "namespace {\n", "namespace {\n" + POLY)]


SCORES = (
    "    else\n      scores<false>(s, scales, SmemKeyScales{scq + ks * kCqBytes}, qs, st, "
    "n + 1, n_full, limit0);\n"
)
NOSOFTMAX = (WS, SCORES, '    else\n      asm volatile("" :: "f"(scales.v[0].x));\n')
PV_LOOP = "  for (int kstep = 0; kstep < kPvSteps; ++kstep) {\n"
HALF_PV = (WS, PV_LOOP, "  for (int kstep = 0; kstep < kPvSteps / 2; ++kstep) {\n")
NOTURN = [
    (WS, "  if (cw == 1) named_arrive(kTurnBarrier, 256);", "  // (no turn)"),
    (WS, "  if (cw == 0) named_arrive(other, 256);", "  // (no turn)"),
    (WS, "ALL:  named_sync(mine, 256);\n", "  // (no turn)\n"),
    (WS, "ALL:  named_arrive(other, 256);\n", "  // (no turn)\n"),
]
NOPROMOTE = [  # FP8 P.V accumulated in the wgmma accumulator across tiles (no two-level)
    (WS, "  float (&acc)[kON] = kFp8Pv ? pv : o;", "  float (&acc)[kON] = o;"),
    (WS, "    finish_tile<kFp8Pv>(s, o, acc", "    finish_tile<false>(s, o, acc"),
    (WS, "    for (int i = 0; i < kON; ++i) o[i] += pv[i];", "    for (int i = 0; i < 0; ++i) {}"),
    (WS, "wgmma_pv_e4m3_n136(o, a, desc, !first);", "wgmma_pv_e4m3_n136(o, a, desc, 1);"),
    (WS, "wgmma_pv_e4m3_n72(o, a, desc, !first);", "wgmma_pv_e4m3_n72(o, a, desc, 1);"),
]
REGSCALES = [  # FP8 with the key scales in registers, as FP16 (spills)
    (WS, "if constexpr (kFp8Pv) {\n    return quads", "if constexpr (false) {\n    return quads")
]
TRACE = "#define SAGE_TRACE 1\n"
SPEC = "#define SAGE_SPECULATIVE 1\n"
VARIANTS = {
    "poly8": (poly_every(8), ""), "poly4": (poly_every(4), ""), "poly2": (poly_every(2), ""),
    "nosoftmax": ([NOSOFTMAX], ""), "halfpv": ([HALF_PV], ""), "spec": ([], SPEC),
    "noturn": (NOTURN, ""), "t_shipped": ([], TRACE), "t_halfpv": ([HALF_PV], TRACE),
    "t_nosoftmax": ([NOSOFTMAX], TRACE), "f8_nopromote": (NOPROMOTE, ""),
    "f8_nopromote_regscales": (NOPROMOTE + REGSCALES, ""), "f8_regscales": (REGSCALES, ""),
}  # fmt: skip


def write(out: Path, name: str) -> None:
    edits, defines = VARIANTS[name]
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(CSRC, d / "csrc")
    for fname, old, new in edits:
        path = d / "csrc" / fname
        text = path.read_text()
        every = old.startswith("ALL:")
        old = old.removeprefix("ALL:")
        count = text.count(old)
        if count == 0 or (count > 1 and not every):
            raise SystemExit(f"{name}: edit does not apply ({count} matches): {old[:60]!r}")
        path.write_text(text.replace(old, new))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted((d / "csrc").iterdir())))
    (d / "kernel.cu").write_text(
        f"// experiment {name} (csrc {digest.hexdigest()[:16]}; the cubin cache keys this line)\n"
        f'{defines}#include "csrc/sage_sm90_ws.cu"\n'
    )


if __name__ == "__main__":
    for variant in sys.argv[2:] or VARIANTS:
        write(Path(sys.argv[1]), variant)
