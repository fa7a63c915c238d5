"""A line plot with error bars and a log x axis, drawn with matplotlib (Agg, no display)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the benches run on servers without a display

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


@dataclass
class Series:
    label: str
    points: list[tuple[float, float, float]]  # (x, y, error half-width)


def line_plot(
    series: list[Series],
    path: Path,
    title: str,
    x_label: str,
    y_label: str,
    size: tuple[int, int] = (1000, 640),
    x_ticks: dict[float, str] | None = None,
) -> None:
    """Draw the series (log x, linear y, ±error bars, legend at the lower right) to a PNG.

    size is in pixels; x_ticks relabels some x values (every x of the data gets a tick)."""
    points = [p for s in series for p in s.points]
    if not points:
        raise ValueError("nothing to plot")
    dpi = 100
    figure, axes = plt.subplots(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    try:
        for i, s in enumerate(series):
            if not s.points:
                continue
            # spread the error bars of neighbouring series apart on the log axis
            shift = 10 ** ((i - (len(series) - 1) / 2) * 0.008)
            xs, ys, errors = zip(*s.points, strict=True)
            axes.errorbar(
                [x * shift for x in xs], ys, yerr=errors, label=s.label, marker="o", capsize=4
            )
        axes.set_xscale("log")
        ticks = sorted({p[0] for p in points})
        axes.set_xticks(ticks, [(x_ticks or {}).get(x, f"{x:g}") for x in ticks])
        axes.minorticks_off()
        axes.grid(axis="y", color="#e6e6e6")
        axes.set_title(title)
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.legend(loc="lower right")
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
    finally:
        plt.close(figure)
