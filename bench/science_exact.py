"""The exact-expectation variant against CE on the main study's grid, and the default-loss call.

Reads the cached runs of CE and igmsda-exact (bench/cache/science/size32/runs, trained by
`python -m bench.science run --stage grid --losses ce igmsda-exact`), compares them paired
by seed, sets them beside the closed form's figures from bench/results/science.json, and
decides the default loss by the rule of the exact-IGMSDA issue: igmsda-exact becomes the
default when it is never significantly worse than CE at any size and its raw ECE is <= 0.03.

    python -m bench.science exact
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.science_report import (
    SIZE_ORDER,
    Runs,
    _table,
    build_report,
    ci_text,
    f1,
    mean_std,
    paired_ci,
)

ECE_LIMIT = 0.03


def _stored(main: dict[str, Any], loss: str, size: str) -> dict[str, Any] | None:
    return next((g for g in main["grid"] if g["loss"] == loss and g["size"] == size), None)


def _ece_reason(sizes: list[str], eces: list[float], ce_eces: list[float]) -> str:
    over = [i for i, e in enumerate(eces) if e > ECE_LIMIT]
    return "its raw ECE is above {} at {}".format(
        ECE_LIMIT,
        ", ".join(
            f"{sizes[i]} tiles per class ({eces[i]:.3f}; CE there: {ce_eces[i]:.3f})" for i in over
        ),
    )


def exact_report(raw: dict[str, dict[str, Any]], main_summary: Path) -> tuple[dict[str, Any], str]:
    """(JSON, Markdown) of igmsda-exact against CE, with the closed form for context."""
    chosen = {k: r for k, r in raw.items() if r["spec"]["loss"] in ("ce", "igmsda-exact")}
    summary, md = build_report(chosen, 32, None)
    runs = Runs(chosen)
    main = json.loads(main_summary.read_text())
    sizes = [s for s in SIZE_ORDER if runs.ok("igmsda-exact", s)]
    rows, checks, worse, eces, ce_eces = [], [], [], [], []
    for size in sizes:
        ce_eces.append(mean_std(runs.values("ce", size, lambda r: r["test"]["ece"]))[0])
        ce_f = runs.values("ce", size, f1)
        exact_ece = runs.values("igmsda-exact", size, lambda r: r["test"]["ece"])
        eces.append(mean_std(exact_ece)[0])
        diffs = runs.paired("igmsda-exact", size, f1)
        mean, lo, hi = paired_ci(diffs)
        worse.append(hi < 0)
        closed = _stored(main, "igmsda", size)
        stored_ce = _stored(main, "ce", size)
        same = stored_ce is not None and abs(mean_std(ce_f)[0] - stored_ce["f1"][0]) < 1e-12
        checks.append({"size": size, "ce_reproduces_main_study": same})
        rows.append(
            [
                size,
                ci_text(diffs),
                "–"
                if closed is None or closed["delta_f1_vs_ce"] is None
                else "{:+.2f} [{:+.2f}, {:+.2f}]".format(
                    *(100 * v for v in closed["delta_f1_vs_ce"])
                ),
                f"{mean_std(exact_ece)[0]:.3f}",
                "–" if closed is None else f"{closed['ece'][0]:.3f}",
                "yes" if same else "no",
            ]
        )
    decision = not any(worse) and max(eces) <= ECE_LIMIT
    md += "\n### IGMSDA exact against the closed form, paired ΔF against CE (points) and raw ECE\n"
    md += _table(
        [
            "tiles/class",
            "exact: ΔF vs CE",
            "closed form: ΔF vs CE",
            "exact: raw ECE",
            "closed form: raw ECE",
            "CE runs identical to the main study",
        ],
        rows,
    )
    verdict = (
        "igmsda-exact becomes the default loss: it is never significantly worse than CE "
        f"(no 95% CI lies below 0) and its raw ECE is at most {max(eces):.3f} <= {ECE_LIMIT}."
        if decision
        else "igmsda-exact does not become the default loss: "
        + (
            f"it is significantly worse than CE at {[s for s, w in zip(sizes, worse, strict=True) if w]}"
            if any(worse)
            else _ece_reason(sizes, eces, ce_eces)
        )
        + "."
    )
    md += f"\n**Default loss.** {verdict}\n"
    full = runs.ok("igmsda-exact", "full")
    if full and "p_t_train" in full[0]:
        means = [r["p_t_train"]["mean"] for r in full]
        medians = [r["p_t_train"]["median"] for r in full]
        md += (
            f"\nOn the full split, training tiles' p_t under igmsda-exact: mean "
            f"{mean_std(means)[0]:.3f}, median {mean_std(medians)[0]:.4f} (the closed form: "
            "mean 0.721, its floor).\n"
        )
        summary["p_t_train_full"] = {"mean": mean_std(means), "median": mean_std(medians)}
    summary.update(
        {
            "comparison": rows,
            "ce_reproduction": checks,
            "default_is_exact": decision,
            "max_raw_ece": max(eces),
            "verdict": verdict,
        }
    )
    return summary, md
