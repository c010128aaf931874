"""The tox matrix's test selection (tests/_selection.py): the releases it names are in tox.ini's
matrix, tox selects `ci`, every release keeps a real-server test, and the skip rule itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sglang_sage_ext.package import parse_version
from tests import _selection as selection

TOX_INI = Path(__file__).resolve().parents[1] / "tox.ini"


def _matrix() -> list[tuple[int, ...]]:
    versions = re.findall(r"^\s*\w+: SGLANG_VERSION = (\S+)$", TOX_INI.read_text(), re.M)
    return sorted(parse_version(v)[:3] for v in versions)


def test_selected_releases_are_the_matrix_ends_and_a_member():
    matrix = _matrix()
    assert len(matrix) >= 3, matrix
    assert (matrix[0], matrix[-1]) == selection.FULL_E2E_RELEASES
    assert selection.RELEASE_INDEPENDENT_RELEASE in matrix


def test_tox_selects_ci_and_lets_the_caller_override():
    text = TOX_INI.read_text()
    assert f"{selection.TEST_SET_ENV} = {{env:{selection.TEST_SET_ENV}:ci}}" in text
    assert "SGLANG_SAGE_*" in text  # pass_env: `SGLANG_SAGE_TEST_SET=all tox` reaches pytest


def test_every_release_keeps_a_real_server_test():
    from tests import test_e2e_cpu

    test = test_e2e_cpu.test_paged_sage_kernel_serves_chunks_and_radix_hits_on_cpu
    marks = {m.name for m in getattr(test, "pytestmark", [])}
    marks |= {m.name for m in test_e2e_cpu.pytestmark}
    assert "e2e" in marks and not marks & set(selection.MARKERS), marks


@pytest.mark.parametrize(
    ("keywords", "release", "skipped"),
    [
        ({"e2e"}, (0, 5, 14), False),
        ({"e2e", "e2e_full"}, (0, 4, 10), False),
        ({"e2e", "e2e_full"}, (0, 5, 23), False),
        ({"e2e", "e2e_full"}, (0, 5, 14), True),
        ({"e2e", "e2e_full"}, (), True),
        ({"release_independent"}, selection.RELEASE_INDEPENDENT_RELEASE, False),
        ({"release_independent"}, (0, 4, 10), True),
    ],
)
def test_skip_rule(keywords, release, skipped):
    reason = selection.skip_reason(keywords, release)
    assert (reason is not None) == skipped
    if skipped:
        assert reason.startswith(f"{selection.TEST_SET_ENV}=ci: ")


def test_test_set_values():
    name = selection.TEST_SET_ENV
    assert selection.selected_set({}) == "all"
    assert selection.selected_set({name: "CI"}) == "ci"
    assert selection.selected_set({name: "all"}) == "all"
    with pytest.raises(ValueError, match="all\\|ci"):
        selection.selected_set({name: "some"})
