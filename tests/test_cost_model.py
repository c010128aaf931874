"""The cost model that routes each extend batch to Sage or the native backend (issue #10)."""

from __future__ import annotations

import json

import pytest

from sglang_sage_ext.backend import cost_model
from sglang_sage_ext.backend.cost_model import CostTable, batch_features, sage_pays


def _pairs_reference(reqs):
    """Query-key pairs per head, counted one query at a time."""
    return sum(sum(p + i + 1 for i in range(n)) for n, p in reqs)


@pytest.mark.parametrize(
    "reqs",
    [[(1, 0)], [(7, 0)], [(5, 11)], [(3, 0), (4, 9), (1, 100)], [(128, 0)] * 3],
)
def test_batch_features_count_every_visible_key(reqs):
    pairs, mean_kv, prefix_fraction = batch_features([n for n, _ in reqs], [p for _, p in reqs])
    assert pairs == _pairs_reference(reqs)
    assert prefix_fraction == pytest.approx(sum(n * p for n, p in reqs) / pairs)
    weights = [_pairs_reference([r]) for r in reqs]
    expected = sum(w * (n + p) for w, (n, p) in zip(weights, reqs, strict=True)) / sum(weights)
    assert mean_kv == pytest.approx(expected)


def test_empty_batch_has_no_work():
    assert batch_features([], []) == (0, 0.0, 0.0)


TABLE = CostTable("test", min_kv_len=8192, min_pairs=8192 * 8192 // 2, min_prefix_fraction=0.5)


@pytest.mark.parametrize(
    ("extend", "prefix", "expected"),
    [
        ([1024], [0], False),  # short prompt: fixed costs dominate
        ([512] * 64, [0] * 64, False),  # many small requests: much work, short tiles
        ([16384], [0], False),  # long prompt without prefix: the native prefill is faster
        ([8192], [24576], True),  # a chunk over a long cached prefix
        ([2048], [8192], False),  # a short chunk: too little work
        ([600] * 16, [6000] * 16, False),  # radix hits: long keys, too little work
        ([1], [200000], False),  # one decode-like token over a huge prefix: too little work
    ],
)
def test_sage_pays_needs_both_thresholds(extend, prefix, expected):
    assert sage_pays(TABLE, extend, prefix) is expected


def test_disabled_table_never_picks_sage():
    table = CostTable("off", 0, 0, enabled=False, source="why")
    assert not sage_pays(table, [100000], [0])
    assert "never" in table.describe()


def test_shipped_tables_parse_and_say_where_they_come_from():
    paths = sorted(cost_model.TABLES_DIR.glob("*.json"))
    assert paths, "no cost tables shipped"
    for path in paths:
        table = cost_model.table_from_json(json.loads(path.read_text()), path.stem)
        assert table.source, path
        assert table.min_kv_len >= 0 and table.min_pairs >= 0


def test_unmeasured_gpu_gets_the_conservative_default():
    cost_model.load_table.cache_clear()
    table = cost_model.load_table((7, 5), "flashinfer")
    assert table.name == "default"
    assert table.min_kv_len == cost_model.DEFAULT_MIN_KV_LEN
    assert not sage_pays(table, [8192], [0])


def test_fa3_on_hopper_stays_native_until_measured():
    cost_model.load_table.cache_clear()
    assert not cost_model.load_table((9, 0), "fa3").enabled


def test_cpu_interpreter_table_routes_everything_to_sage():
    cost_model.load_table.cache_clear()
    assert sage_pays(cost_model.load_table(None, "triton"), [16], [0])


def test_unreadable_table_falls_back_to_the_default(tmp_path, monkeypatch):
    (tmp_path / "sm99-flashinfer.json").write_text("{not json")
    monkeypatch.setattr(cost_model, "TABLES_DIR", tmp_path)
    cost_model.load_table.cache_clear()
    try:
        table = cost_model.load_table((9, 9), "flashinfer")
    finally:
        cost_model.load_table.cache_clear()
    assert table.name == "default" and "unreadable" in table.source
