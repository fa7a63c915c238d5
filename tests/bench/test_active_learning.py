"""bench.active_learning's own logic: picks over a pool of maps, and the targets it reports."""

from __future__ import annotations

import argparse

from bench.active_learning import pick, targets_of
from tests.models.inference.test_tile_table import random_table


def test_pool_picks_skip_labelled_tiles_and_never_overlap_within_a_photo():
    tables = [random_table(200, 300, 64, 32, seed=s) for s in range(3)]
    names = ["a", "b", "c"]
    labelled = {"a": {(0, 0), (1, 1)}}
    for strategy in ("uncertainty", "random", "mixed"):
        picked = pick(strategy, tables, labelled, names, 12, seed=0)
        assert len(picked) == len(set(picked)) == 12
        assert not {(r, c) for n, r, c in picked if n == 0} & labelled["a"]
        for i, (n, r, c) in enumerate(picked):
            for m, r2, c2 in picked[i + 1 :]:
                assert n != m or abs(r - r2) >= 2 or abs(c - c2) >= 2  # stride = tile / 2
    first = pick("uncertainty", tables, {}, names, 1, seed=0)[0]
    n, r, c = first
    best = min(abs(float(p) - 0.5) for t in tables for p in t.defect_probs)
    assert abs(float(tables[n].defect_probs[r * tables[n].grid.cols + c]) - 0.5) == best


def test_targets_compare_each_strategy_with_the_start_and_with_random():
    table = [
        {"strategy": s, "labels": n, "f1_mean": f}
        for s, n, f in [
            ("uncertainty", 0, 0.4),
            ("uncertainty", 150, 0.7),
            ("random", 0, 0.4),
            ("random", 150, 0.66),
        ]
    ]
    found = targets_of(table, argparse.Namespace(rounds=3, k=50))
    assert found["uncertainty_gain"] == 0.7 - 0.4 and found["gain_met"]
    assert abs(found["uncertainty_minus_random"] - 0.04) < 1e-12 and found["margin_met"]
