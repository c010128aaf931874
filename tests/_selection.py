"""Which slow tests the tox matrix runs on which SGLang release (SGLANG_SAGE_TEST_SET=ci).

tox.ini sets SGLANG_SAGE_TEST_SET=ci (override: SGLANG_SAGE_TEST_SET=all tox ...); plain pytest
runs everything (the default, `all`). Under `ci` every env still runs every fast test against
its own SGLang release, plus one real-server test (test_e2e_cpu.py's paged-Sage server, marked
`e2e` only). Two markers run in fewer envs:

`e2e_full` (the triton server smoke, sage_attn-vs-triton with its fallback counts, the demo):
only on FULL_E2E_RELEASES, the oldest and the newest release of the matrix. Every flag of
integration/compat.py (`Features` and server_args_resolution_method) takes its oldest value on
0.4.10 (no attention registry, no native plugins, inline backend choices, the old extend kernel
module, `forward_batch.token_to_kv_pool` K/V writes, capture/replay graph hooks, pools on
ForwardBatch, `__post_init__` resolution) and its newest on 0.5.23 (registry, plugins,
ATTENTION_BACKEND_CHOICES, sglang.kernels, `KVWriteLoc.for_batch`, out_graph/in_graph, no
pools, `resolve_once`). The values in between (the 0.5.14 and 0.5.17 K/V write APIs, the
0.5.17 kernel move, registry without plugins on 0.5.5/0.5.10) are server-tested on their own
release by the paged-Sage server test, which takes every release-dependent step of a sage_attn
server: `.pth` bootstrap in the scheduler, registration, ServerArgs resolution, the inherited
TritonAttnBackend.forward_extend (its K/V write and the extend-kernel call we intercept) and
decode through SageTritonAttnBackend. What `e2e_full` adds (SGLang's own triton backend on CPU,
the no_cuda fallback accounting, the demo command) does not differ between releases.
(CUDA graphs are off on CPU: the graph hooks are the GPU suite's.)

`release_independent`: tests that import no SGLang (they pass with `sglang` made unimportable:
PYTHONPATH=<dir holding a sglang/__init__.py that raises ImportError>) and need only torch and
triton, which ci/reqs pins alike in every env: the CPU kernel tests, the GPU-step plumbing with
fake servers, the wheel build. They run once, in the RELEASE_INDEPENDENT_RELEASE env.
tests/test_ci_selection.py checks that these releases are in tox.ini's matrix.
"""

from __future__ import annotations

from collections.abc import Container

from sglang_sage_ext import env
from sglang_sage_ext.package import installed_version, parse_version

TEST_SET_ENV = "SGLANG_SAGE_TEST_SET"

#: The oldest and the newest release of the tox matrix (see the module docstring).
FULL_E2E_RELEASES = ((0, 4, 10), (0, 5, 23))
#: The env that runs the `release_independent` tests (any one release would do; this one is
#: the env README's `tox -e sgl-0517` runs, and not one of the two with the full e2e set).
RELEASE_INDEPENDENT_RELEASE = (0, 5, 17)

MARKERS = {
    "e2e_full": "real-server test that the tox matrix (SGLANG_SAGE_TEST_SET=ci) runs only on "
    "the oldest and newest SGLang release (tests/_selection.py says why)",
    "release_independent": "imports no SGLang; the tox matrix (SGLANG_SAGE_TEST_SET=ci) runs it "
    "in one env only (tests/_selection.py)",
}


def selected_set(environ: dict[str, str]) -> str:
    """`all` or `ci`; ValueError (naming the allowed values) for anything else."""
    var = env.BY_NAME[TEST_SET_ENV]
    value, problem = var.parse(environ.get(TEST_SET_ENV))
    if problem is not None:
        raise ValueError(f"{TEST_SET_ENV}={environ[TEST_SET_ENV]!r}: {var.allowed()}")
    return str(value)


def installed_release() -> tuple[int, ...]:
    """The installed SGLang release as (major, minor, patch); () without SGLang."""
    return parse_version(installed_version("sglang") or "")[:3]


def _name(release: tuple[int, ...]) -> str:
    return ".".join(map(str, release)) or "none"


def skip_reason(keywords: Container[str], release: tuple[int, ...]) -> str | None:
    """Why the CI set skips a test with these markers on `release`; None when it runs."""
    if "e2e_full" in keywords and release not in FULL_E2E_RELEASES:
        shown = " and ".join(map(_name, FULL_E2E_RELEASES))
        return f"{TEST_SET_ENV}=ci: the full e2e set runs on SGLang {shown} (tests/_selection.py)"
    if "release_independent" in keywords and release != RELEASE_INDEPENDENT_RELEASE:
        shown = _name(RELEASE_INDEPENDENT_RELEASE)
        return f"{TEST_SET_ENV}=ci: release-independent, runs in the SGLang {shown} env"
    return None
