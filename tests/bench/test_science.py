"""bench/science.py's pieces: subsets, tile labels from masks, AP, paired CIs, the report, the bound."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.plot import Series, line_plot
from bench.science import RunSpec, grid_specs, sensitivity_specs, training_subset
from bench.science_analysis import average_precision, bound_gap, cfd_tile_labels, pt_summary
from bench.science_exact import exact_report
from bench.science_report import build_report, paired_ci
from models.data import load_labelled_set, load_tiles

ROOT = Path(__file__).resolve().parents[2]


def test_training_subset_takes_per_class_tiles_and_keeps_val_and_test(tiny_set):
    data = load_labelled_set(tiny_set, seed=0)
    tiles = {s: load_tiles(data.source, data.splits[s], 32) for s in data.splits}
    sub, sub_tiles = training_subset(data, tiles, 10, seed=1)
    images, labels = sub_tiles["train"]
    assert images.shape[0] == 20 and torch.bincount(labels).tolist() == [10, 10]
    assert [s.label for s in sub.splits["train"]] == labels.tolist()
    assert sub.splits["val"] == data.splits["val"] and sub_tiles["test"] is tiles["test"]
    # the same seed draws the same tiles (so losses are paired); another seed draws others
    again = training_subset(data, tiles, 10, seed=1)[0].splits["train"]
    other = training_subset(data, tiles, 10, seed=2)[0].splits["train"]
    assert again == sub.splits["train"] and other != sub.splits["train"]
    with pytest.raises(ValueError, match="train tiles"):
        training_subset(data, tiles, 10_000, seed=0)


def test_specs_pair_every_loss_on_the_same_seeds():
    specs = grid_specs(["ce", "igmsda"], [100, None], [0, 1])
    assert len(specs) == 8 and len({s.key for s in specs}) == 8
    sens = sensitivity_specs([0])
    assert len(sens) == 8  # 5 α0 + 4 λ0, the default counted once
    assert RunSpec("igmsda", 300, 0) in sens
    assert RunSpec("gm100", None, 0).config(32).gm_samples == 100


def test_tile_labels_from_a_mask_follow_the_pixel_rule():
    mask = np.zeros((64, 96), np.uint8)
    mask[10, 0:32] = 255  # a 1-px crack across the first tile: 32 pixels
    mask[40, 32:40] = 255  # 8 pixels in the fifth tile: ambiguous
    boxes = [(x, y, 32, 32) for y in (0, 32) for x in (0, 32, 64)]
    assert cfd_tile_labels(mask, boxes, 32) == [1, 0, 0, 0, -1, 0]


def test_average_precision_matches_its_definition():
    rng = np.random.default_rng(0)
    scores, labels = rng.random(200), (rng.random(200) < 0.3).astype(int)
    order = np.argsort(-scores)
    hits = labels[order]
    expected = np.mean([hits[: k + 1].mean() for k in range(200) if hits[k]])
    assert average_precision(scores, labels) == pytest.approx(expected)
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == 1.0
    assert math.isnan(average_precision(np.array([0.5]), np.array([0])))


def test_paired_ci_is_the_t_interval():
    mean, lo, hi = paired_ci([0.01, 0.02, 0.03])
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2 df), from tables
    assert mean == pytest.approx(0.02) and lo == pytest.approx(0.02 - half)
    assert hi == pytest.approx(0.02 + half)


def test_pt_summary_quantiles_and_histogram():
    pt = torch.linspace(0, 1, 101, dtype=torch.float64)
    s = pt_summary(pt)
    assert s["median"] == pytest.approx(0.5) and s["mean"] == pytest.approx(0.5)
    assert sum(s["histogram"]) == pytest.approx(1.0) and s["share_above_0_99"] == pytest.approx(
        1 / 101
    )


def _record(loss, size, seed, f1, alpha0=2.5, lam0=0.5, diverged=False):
    spec = {"loss": loss, "per_class": size, "seed": seed, "alpha0": alpha0, "lam0": lam0}
    if diverged:
        return {"spec": spec, "diverged": "the loss became inf at step 9"}
    test = {
        "macro_f1": f1,
        "macro_precision": f1,
        "macro_recall": f1,
        "ece": 0.1,
        "ece_calibrated": 0.01,
        "temperature": 0.5,
    }
    return {"spec": spec, "test": test, "history": [{"train_seconds": 1.0}]}


def test_report_pairs_losses_by_seed_and_counts_divergence(tmp_path):
    runs = {}
    for seed in range(3):
        for size in (100, None):
            runs[f"ce{size}{seed}"] = _record("ce", size, seed, 0.90 + 0.01 * seed)
            runs[f"ig{size}{seed}"] = _record("igmsda", size, seed, 0.92 + 0.01 * seed)
    runs["div"] = _record("igmsda", 300, 0, 0, lam0=7.5, diverged=True)
    summary, markdown = build_report(runs, 32, tmp_path / "plot.png")
    ig100 = next(e for e in summary["grid"] if e["loss"] == "igmsda" and e["size"] == "100")
    assert ig100["delta_f1_vs_ce"][0] == pytest.approx(0.02)  # constant paired difference
    assert ig100["delta_f1_vs_ce"][1] == pytest.approx(0.02)  # so a zero-width interval
    assert (
        "| IGMSDA | +2.00 [+2.00, +2.00] | – | +2.00 [+2.00, +2.00] | +2.00 [+2.00, +2.00] |"
        in markdown
    )
    assert "0 (+1 diverged)" in markdown
    with Image.open(tmp_path / "plot.png") as img:
        assert img.size == (1000, 640)


def test_line_plot_draws_every_series(tmp_path):
    series = [Series("a", [(100, 90, 1), (1000, 95, 0.5)]), Series("b", [(100, 91, 2)])]
    line_plot(series, tmp_path / "p.png", "t", "x", "y")
    with Image.open(tmp_path / "p.png") as img:
        colours = {c for _, c in img.convert("RGB").getcolors(1 << 20)}
    assert (0x1F, 0x77, 0xB4) in colours and (0xFF, 0x7F, 0x0E) in colours


@pytest.mark.slow
def test_the_closed_form_bounds_the_monte_carlo_loss_on_a_trained_model(
    synthetic_model, synthetic_set
):
    ckpt = copy.deepcopy(synthetic_model.result.checkpoint)
    ckpt.config["lam0"] = 2.0  # a strong augmentation, so the gap is far from MC noise
    data = load_labelled_set(synthetic_set, seed=0)
    images, labels = load_tiles(data.source, data.splits["test"][:200], ckpt.input_size)
    gap = bound_gap(ckpt, images, labels, samples=512)
    assert gap["gap_lambda0_mean"] >= 0  # Jensen and Cauchy–Schwarz, no sampling
    assert gap["gap_mean"] > 0 and gap["bound_mean"] > gap["mc_mean"]
    assert sum(b["n"] for b in gap["by_p_t"]) == 200


def test_results_doc_quotes_the_report_verbatim():
    """Every table line that `python -m bench.science report` wrote appears in docs/RESULTS.md."""
    reports = sorted((ROOT / "bench" / "results").glob("science*.md"))
    assert reports, "no bench/results/science*.md"
    generated = [line for path in reports for line in path.read_text().splitlines()]
    doc = (ROOT / "docs" / "RESULTS.md").read_text()
    missing = [line for line in generated if line.startswith("|") and line not in doc]
    assert not missing, f"RESULTS.md lacks {len(missing)} report lines, e.g. {missing[:2]}"
    assert (ROOT / "docs" / "science_f_vs_size.png").is_file()


def _main_summary(tmp_path, ce_f1):
    grid = [
        {"loss": "ce", "size": size, "f1": [f, 0.0], "ece": [0.01, 0.0], "delta_f1_vs_ce": None}
        for size, f in ce_f1.items()
    ]
    grid += [
        {"loss": "igmsda", "size": size, "f1": [f - 0.005, 0.0], "ece": [0.25, 0.0],
         "delta_f1_vs_ce": [-0.005, -0.01, 0.0]}
        for size, f in ce_f1.items()
    ]  # fmt: skip
    path = tmp_path / "science.json"
    path.write_text(json.dumps({"grid": grid}))
    return path


@pytest.mark.parametrize(
    "exact_f1, exact_ece, default",
    [
        (lambda s: 0.001 * (s % 2), 0.01, True),  # level with CE, calibrated
        (lambda s: -0.02 - 0.001 * s, 0.01, False),  # significantly worse
        (lambda s: 0.0, 0.05, False),  # level but not calibrated raw
    ],
)
def test_exact_report_decides_the_default_by_the_stated_rule(
    tmp_path, exact_f1, exact_ece, default
):
    runs = {}
    for seed in range(5):
        for size in (100, None):
            runs[f"ce{size}{seed}"] = _record("ce", size, seed, 0.95 + 0.002 * seed)
            exact = _record("igmsda-exact", size, seed, 0.95 + 0.002 * seed + exact_f1(seed))
            exact["test"]["ece"] = exact_ece
            runs[f"ex{size}{seed}"] = exact
    main = _main_summary(tmp_path, {"100": 0.954, "full": 0.954})
    summary, markdown = exact_report(runs, main)
    assert summary["default_is_exact"] is default
    assert ("becomes the default loss" in markdown) == default
    assert [c["ce_reproduces_main_study"] for c in summary["ce_reproduction"]] == [True, True]
