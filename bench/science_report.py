"""Aggregate bench/science.py's cached runs: tables (Markdown), a JSON summary and the F-vs-size plot."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scipy.stats import t as student_t

from bench.common import median
from bench.plot import Series, line_plot

LOSS_ORDER = ["ce", "focal", "isda", "gm16", "gm100", "igmsda", "igmsda-exact"]
LOSS_LABELS = {
    "ce": "CE",
    "focal": "focal",
    "isda": "ISDA",
    "gm16": "GM S=16",
    "gm100": "GM S=100",
    "igmsda": "IGMSDA",
    "igmsda-exact": "IGMSDA exact",
}
SIZE_ORDER = ["100", "300", "1000", "full"]
FULL_PER_CLASS = 1500
DEFAULT = (2.5, 0.5)


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired_ci(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% t confidence interval (lo, hi)."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return mean, math.nan, math.nan
    half = float(student_t.ppf(0.975, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
    return mean, mean - half, mean + half


def pm(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    m, s = mean_std(values)
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}" if values else "–"


def ci_text(diffs: list[float]) -> str:
    if not diffs:
        return "–"
    m, lo, hi = paired_ci(diffs)
    if len(diffs) < 2:
        return f"{100 * m:+.2f} [one pair]"
    return f"{100 * m:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Runs:
    """The cached runs, indexed by (loss, size, seed, alpha0, lam0)."""

    def __init__(self, runs: dict[str, dict[str, Any]]) -> None:
        self.by_key: dict[tuple[str, str, int, float, float], dict[str, Any]] = {}
        for record in runs.values():
            spec = record["spec"]
            size = "full" if spec["per_class"] is None else str(spec["per_class"])
            key = (spec["loss"], size, spec["seed"], spec["alpha0"], spec["lam0"])
            self.by_key[key] = record
        self.seeds = sorted({k[2] for k in self.by_key})

    def get(
        self, loss: str, size: str, seed: int, hp: tuple[float, float] = DEFAULT
    ) -> dict[str, Any] | None:
        return self.by_key.get((loss, size, seed, hp[0], hp[1]))

    def ok(self, loss: str, size: str, hp: tuple[float, float] = DEFAULT) -> list[dict[str, Any]]:
        """Runs that finished (did not diverge), in seed order."""
        found = [self.get(loss, size, s, hp) for s in self.seeds]
        return [r for r in found if r is not None and "diverged" not in r]

    def diverged(self, loss: str, size: str, hp: tuple[float, float] = DEFAULT) -> int:
        found = [self.get(loss, size, s, hp) for s in self.seeds]
        return sum(1 for r in found if r is not None and "diverged" in r)

    def values(
        self, loss: str, size: str, field: Callable[[dict[str, Any]], float], hp=DEFAULT
    ) -> list[float]:
        return [field(r) for r in self.ok(loss, size, hp)]

    def paired(
        self,
        loss: str,
        size: str,
        field: Callable[[dict[str, Any]], float],
        hp: tuple[float, float] = DEFAULT,
    ) -> list[float]:
        """field(loss run) − field(CE run) for every seed where both finished."""
        out = []
        for seed in self.seeds:
            a, b = self.get(loss, size, seed, hp), self.get("ce", size, seed)
            if a and b and "diverged" not in a and "diverged" not in b:
                out.append(field(a) - field(b))
        return out


def f1(r: dict[str, Any]) -> float:
    return float(r["test"]["macro_f1"])


def epoch_seconds(r: dict[str, Any]) -> float:
    """The run's median training seconds per epoch (validation excluded), from its history."""
    return median([h["train_seconds"] for h in r["history"]])


def _main_table(
    runs: Runs, sizes: list[str], losses: list[str]
) -> tuple[list[dict[str, Any]], str]:
    """Section 1: test metrics per (size, loss), and the summary grid."""
    md: list[str] = []
    grid: list[dict[str, Any]] = []
    # 1. Main table: one column per (summary name, header, field, scale, digits)
    columns: list[tuple[str, str, Callable[[dict[str, Any]], float], float, int]] = [
        ("precision", "P %", lambda r: r["test"]["macro_precision"], 100.0, 2),
        ("recall", "R %", lambda r: r["test"]["macro_recall"], 100.0, 2),
        ("f1", "F %", f1, 100.0, 2),
        ("ece", "ECE", lambda r: r["test"]["ece"], 1.0, 3),
        ("ece_calibrated", "ECE after T", lambda r: r["test"]["ece_calibrated"], 1.0, 3),
        ("temperature", "T", lambda r: r["test"]["temperature"], 1.0, 2),
        ("epoch_seconds", "s/epoch", epoch_seconds, 1.0, 2),
    ]
    rows = []
    for size in sizes:
        for loss in losses:
            diverged = runs.diverged(loss, size)
            ok = runs.ok(loss, size)
            if not ok and not diverged:
                continue
            values = {name: [field(r) for r in ok] for name, _, field, _, _ in columns}
            paired = runs.paired(loss, size, f1) if loss != "ce" else []
            grid.append(
                {
                    "size": size,
                    "loss": loss,
                    "runs": len(ok),
                    "diverged": diverged,
                    **{name: mean_std(v) for name, v in values.items()},
                    "delta_f1_vs_ce": paired_ci(paired) if paired else None,
                }
            )
            rows.append(
                [
                    size,
                    LOSS_LABELS[loss],
                    *(pm(values[name], scale, digits) for name, _, _, scale, digits in columns),
                    f"{len(ok)}" + (f" (+{diverged} diverged)" if diverged else ""),
                ]
            )
    md.append("### Test metrics (mean ± std over seeds)\n")
    md.append(_table(["tiles/class", "loss", *(c[1] for c in columns), "runs"], rows))
    return grid, "".join(md)


def _paired_table(runs: Runs, sizes: list[str], losses: list[str]) -> str:
    """Section 2: paired differences in test F against CE, per size and pooled."""
    md: list[str] = []
    # 2. Paired differences against CE
    rows = []
    for loss in losses:
        if loss == "ce":
            continue
        pooled: list[float] = []
        row = [LOSS_LABELS[loss]]
        for size in sizes:
            d = runs.paired(loss, size, f1)
            pooled += d
            row.append(ci_text(d))
        row.append(ci_text(pooled))
        rows.append(row)
    md.append("\n### Paired difference in test F against CE, percentage points: mean [95% CI]\n")
    md.append(_table(["loss", *sizes, "all sizes"], rows))
    return "".join(md)


def _sensitivity(runs: Runs) -> tuple[list[dict[str, Any]], str]:
    """Section 3: IGMSDA's (alpha0, lambda0) grid at 300 tiles per class."""
    md: list[str] = []
    found: list[dict[str, Any]] = []
    # 3. Sensitivity
    sens_rows = []
    size = "300"
    settings = sorted(
        {(k[3], k[4]) for k in runs.by_key if k[0] == "igmsda" and k[1] == size},
        key=lambda hp: (hp[1] != DEFAULT[1], hp),
    )
    for hp in settings:
        ok = runs.ok("igmsda", size, hp)
        d = runs.paired("igmsda", size, f1, hp)
        found.append(
            {
                "alpha0": hp[0],
                "lam0": hp[1],
                "runs": len(ok),
                "diverged": runs.diverged("igmsda", size, hp),
                "f1": mean_std(runs.values("igmsda", size, f1, hp)),
                "delta_f1_vs_ce": paired_ci(d) if d else None,
            }
        )
        sens_rows.append(
            [
                f"{hp[0]:g}",
                f"{hp[1]:g}",
                pm(runs.values("igmsda", size, f1, hp)),
                ci_text(d),
                pm(runs.values("igmsda", size, lambda r: r["test"]["ece"], hp), 1, 3),
                pm(runs.values("igmsda", size, lambda r: r["test"]["temperature"], hp), 1, 2),
                f"{len(ok)}"
                + (
                    f" (+{runs.diverged('igmsda', size, hp)} diverged)"
                    if runs.diverged("igmsda", size, hp)
                    else ""
                ),
            ]
        )
    if sens_rows:
        md.append(f"\n### Sensitivity of IGMSDA at {size} tiles per class\n")
        md.append(_table(["α0", "λ0", "F %", "ΔF vs CE [95% CI]", "ECE", "T", "runs"], sens_rows))
    return found, "".join(md)


def _bound_gap(runs: Runs) -> tuple[list[dict[str, Any]], str]:
    """Section 4: the closed form against the Monte Carlo GM loss, full split."""
    md: list[str] = []
    found: list[dict[str, Any]] = []
    # 4. The bound against Monte Carlo
    gap_rows = []
    for where in ("train", "test"):
        for r in runs.ok("igmsda", "full"):
            g = r.get(f"bound_gap_{where}")
            if g is None:
                continue
            found.append({"seed": r["spec"]["seed"], "tiles": where, **g})
            gap_rows.append(
                [
                    where,
                    str(r["spec"]["seed"]),
                    f"{g['lam']:g}",
                    f"{g['alpha']:g}",
                    f"{g['bound_mean']:.4f}",
                    f"{g['mc_mean']:.4f}",
                    f"{g['gap_mean']:.4f}",
                    f"{100 * g['relative_gap']:.1f}",
                    f"{g['gap_min']:.4f}",
                    f"{g['gap_lambda0_mean']:.4f}",
                ]
            )
    if gap_rows:
        md.append(
            "\n### IGMSDA closed form against the Monte Carlo GM loss (S = 2048), full split\n"
        )
        md.append(
            _table(
                [
                    "tiles",
                    "seed",
                    "λ",
                    "α",
                    "bound",
                    "MC",
                    "gap",
                    "gap %",
                    "min gap",
                    "gap at λ=0",
                ],
                gap_rows,
            )
        )
        first = next((r for r in runs.ok("igmsda", "full") if "bound_gap_train" in r), None)
        if first is not None:
            rows = [
                [
                    b["p_t"],
                    str(b["n"]),
                    f"{b['bound']:.4f}",
                    f"{b['mc']:.4f}",
                    f"{b['gap']:.4f}",
                    f"{b['gap_lambda0']:.4f}",
                ]
                for b in first["bound_gap_train"]["by_p_t"]
            ]
            md.append(f"\nBy p_t, train tiles, seed {first['spec']['seed']}:\n\n")
            md.append(_table(["p_t", "tiles", "bound", "MC", "gap", "gap at λ=0"], rows))
    return found, "".join(md)


def _p_t(runs: Runs, losses: list[str]) -> tuple[list[dict[str, Any]], str]:
    """Section 5: p_t (softmax probability of the true class) at the end of training."""
    md: list[str] = []
    found: list[dict[str, Any]] = []
    # 5. p_t at the end of training
    rows = []
    for loss in losses:
        ok = runs.ok(loss, "full")
        if not ok or "p_t_train" not in ok[0]:
            continue

        def stat(name: str, where: str = "train", ok: list[dict[str, Any]] = ok) -> list[float]:
            return [float(r[f"p_t_{where}"][name]) for r in ok]

        found.append(
            {
                "loss": loss,
                **{
                    f"train_{n}": mean_std(stat(n))
                    for n in ("mean", "q05", "median", "q95", "share_above_0_99")
                },
                "test_mean": mean_std(stat("mean", "test")),
                "train_histogram": [
                    statistics.fmean(h)
                    for h in zip(*(r["p_t_train"]["histogram"] for r in ok), strict=True)
                ],
            }
        )
        rows.append(
            [
                LOSS_LABELS[loss],
                pm(stat("mean"), 1, 3),
                pm(stat("q05"), 1, 3),
                pm(stat("median"), 1, 3),
                pm(stat("q95"), 1, 3),
                pm(stat("share_above_0_99"), 100, 1),
                pm(stat("mean", "test"), 1, 3),
            ]
        )
    if rows:
        md.append(
            "\n### p_t (softmax probability of the true class, T = 1) at the end of training, full split\n"
        )
        md.append(
            _table(
                [
                    "loss",
                    "mean (train)",
                    "5% quantile",
                    "median",
                    "95% quantile",
                    "% above 0.99",
                    "mean (test)",
                ],
                rows,
            )
        )
    return found, "".join(md)


def _crackforest(runs: Runs, losses: list[str]) -> tuple[list[dict[str, Any]], str]:
    """Section 6: crack maps of CrackForest, crack-class tile metrics."""
    md: list[str] = []
    found: list[dict[str, Any]] = []
    # 6. Cross-domain: CrackForest
    rows = []
    for loss in losses:
        ok = [r for r in runs.ok(loss, "full") if "cfd" in r]
        if not ok:
            continue
        for i, tile in enumerate(t["tile"] for t in ok[0]["cfd"]):

            def c(name: str, i: int = i, ok: list[dict[str, Any]] = ok) -> list[float]:
                return [float(r["cfd"][i][name]) for r in ok]

            found.append(
                {
                    "loss": loss,
                    "tile": tile,
                    **{
                        n: mean_std(c(n))
                        for n in ("precision", "recall", "f1", "average_precision")
                    },
                }
            )
            rows.append(
                [
                    LOSS_LABELS[loss],
                    str(tile),
                    str(ok[0]["cfd"][i]["tiles_scored"]),
                    str(ok[0]["cfd"][i]["crack_tiles"]),
                    pm(c("precision")),
                    pm(c("recall")),
                    pm(c("f1")),
                    pm(c("average_precision")),
                ]
            )
    if rows:
        md.append(
            "\n### Cross-domain: crack maps of CrackForest (118 photos), crack-class tile metrics\n"
        )
        md.append(
            _table(["loss", "tile px", "tiles", "crack tiles", "P %", "R %", "F %", "AP %"], rows)
        )
    return found, "".join(md)


def draw_f_vs_size(grid: list[dict[str, Any]], image_size: int, path: Path) -> None:
    """The plot: test F against training tiles per class, one line per loss, from the grid
    of the summary (so `bench.science plot` redraws it from bench/results/science.json)."""
    series = []
    for loss in LOSS_ORDER:
        cells = {g["size"]: g for g in grid if g["loss"] == loss and g["runs"] > 0}
        if not cells:
            continue
        points = []
        for size in SIZE_ORDER:
            if size in cells:
                m, s = cells[size]["f1"]
                n = FULL_PER_CLASS if size == "full" else int(size)
                points.append((float(n), 100 * m, 100 * s))
        series.append(Series(LOSS_LABELS[loss], points))
    line_plot(
        series,
        path,
        title=f"Test macro F on ccic-dev vs training tiles per class (resnet18, {image_size} px)",
        x_label="training tiles per class (log scale)",
        y_label="test macro F (%), mean ± std over seeds",
        x_ticks={float(FULL_PER_CLASS): f"{FULL_PER_CLASS} (full)"},
    )


def build_report(
    raw: dict[str, dict[str, Any]], image_size: int, plot_path: Path | None, lr: float = 0.01
) -> tuple[dict[str, Any], str]:
    """(JSON summary, Markdown tables) from the cached runs; draws the plot to plot_path.

    Without a plot_path only the comparison tables (sections 1 and 2) are built.
    """
    runs = Runs(raw)
    sizes = [s for s in SIZE_ORDER if any(k[1] == s for k in runs.by_key)]
    losses = [x for x in LOSS_ORDER if any(k[0] == x for k in runs.by_key)]
    md: list[str] = [f"Image size {image_size} px; learning rate {lr:g}; seeds {runs.seeds}.\n\n"]
    summary: dict[str, Any] = {"image_size": image_size, "lr": lr, "seeds": runs.seeds}
    summary["grid"], text = _main_table(runs, sizes, losses)
    md += [text, _paired_table(runs, sizes, losses)]
    if plot_path is None:  # a side study (another lr or size): the comparison tables only
        return summary, "".join(md)
    for name, (found, text) in (
        ("sensitivity", _sensitivity(runs)),
        ("bound_gap", _bound_gap(runs)),
        ("p_t", _p_t(runs, losses)),
        ("cfd", _crackforest(runs, losses)),
    ):
        summary[name] = found
        md.append(text)
    draw_f_vs_size(summary["grid"], image_size, plot_path)
    summary["plot"] = str(plot_path.name)
    return summary, "".join(md)
