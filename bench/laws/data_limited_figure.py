"""The data-limited law's figure: the chain by generation and the ensemble by k (with the ensembles'
students), measured against predicted left out a corpus at a time, with the 90% intervals the product
prints. One column per student size and repeated pool; each point a change against the cell's seeds
trained alone (% of their mean), averaged over corpora (and over a cell's chains); the measured runs of
each corpus as small dots.

    python bench/laws/data_limited_fit.py --runs FILE --figure docs/figures/data_limited.png   # fit and draw
    python bench/laws/data_limited_figure.py --json REPORT.json --out docs/figures/data_limited.png

(REPORT.json: what `data_limited_fit.py --json` wrote; redrawn without refitting.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from distillscale.planning.plots import pyplot, save_figure
from distillscale.units import parse_quantity, Quantity

MEASURED, PREDICTED, STUDENT, STUDENT_PREDICTED = "#1f4e79", "#5b9bd5", "#a0522d", "#e3a857"


def _percent(check: dict, key: str) -> float:
    return 100.0 * (check[key] - check["alone_mean"]) / check["alone_mean"]


def _interval(check: dict) -> tuple[float, float]:
    low, high = check["interval"]
    return (100.0 * (low - check["alone_mean"]) / check["alone_mean"],
            100.0 * (high - check["alone_mean"]) / check["alone_mean"])


def columns(checks: list[dict]) -> list[tuple[str, str]]:
    """The (size, pool) of every cell with a chain predicted, smallest size first, most repeated pool first."""
    found = {(c["size"], c["pool"]) for c in checks if c["generation"] is not None}
    return sorted(found, key=lambda sp: (sp[0], parse_quantity(sp[1], "pool", kind=Quantity.TOKENS)))


def series(checks: list[dict], x_of) -> dict:
    """Per x: the measured and predicted changes (% of the seeds' mean alone) averaged over the checks at x,
    the intervals' ends averaged likewise, and the measured value of each corpus (averaged over its chains)."""
    by_x: dict = {}
    for c in checks:
        by_x.setdefault(x_of(c), []).append(c)
    out = {"x": sorted(by_x)}
    for key in ("measured", "predicted", "low", "high"):
        out[key] = []
    out["corpora"] = []
    for x in out["x"]:
        items = by_x[x]
        out["measured"].append(np.mean([_percent(c, "measured") for c in items]))
        out["predicted"].append(np.mean([_percent(c, "predicted") for c in items]))
        ends = np.array([_interval(c) for c in items])
        out["low"].append(ends[:, 0].mean())
        out["high"].append(ends[:, 1].mean())
        corpora: dict = {}
        for c in items:
            corpora.setdefault(c["corpus"], []).append(_percent(c, "measured"))
        out["corpora"].append([np.mean(v) for v in corpora.values()])
    return {key: np.asarray(value, dtype=object if key == "corpora" else float) for key, value in out.items()}


def _draw_series(axis, data: dict, measured_colour: str, predicted_colour: str, label: str, start=None) -> None:
    """One series: the predicted mean with its band, the measured mean, each corpus's dots; `start` (x, 0)
    prepends the seeds trained alone."""
    x, measured, predicted = list(data["x"]), list(data["measured"]), list(data["predicted"])
    low, high = list(data["low"]), list(data["high"])
    if start is not None:
        x, measured, predicted, low, high = [start] + x, [0.0] + measured, [0.0] + predicted, [0.0] + low, [0.0] + high
    axis.fill_between(x, low, high, color=predicted_colour, alpha=0.25, linewidth=0)
    axis.plot(x, predicted, "--", color=predicted_colour, label=f"{label}: predicted left out [90%]")
    axis.plot(x, measured, "o-", color=measured_colour, label=f"{label}: measured (mean of corpora)")
    for xi, values in zip(data["x"], data["corpora"]):
        axis.plot([xi] * len(values), values, ".", color=measured_colour, alpha=0.35, markersize=4)


def figure(record: dict):
    """The figure of a fit's record (`data_limited_fit.report`): chains above, ensembles below."""
    checks = record["left_out"]["checks"]
    cols = columns(checks)
    if not cols:
        raise SystemExit("the record holds no chain predicted left out: nothing to draw")
    plt = pyplot()
    fig, axes = plt.subplots(2, len(cols), figsize=(3.6 * len(cols), 7.0), squeeze=False, sharey="col")
    for j, (size, pool) in enumerate(cols):
        here = [c for c in checks if c["size"] == size and c["pool"] == pool]
        chain = [c for c in here if c["generation"] is not None]
        top, bottom = axes[0][j], axes[1][j]
        _draw_series(top, series(chain, lambda c: c["generation"]), MEASURED, PREDICTED, "chain", start=0)
        some = here[0]
        top.set_title(f"{size}, {pool} pool: {some['epochs']:.0f} epochs,\n"
                      f"{some['params_per_unique_token']:.1f} parameters per unique token", fontsize=9)
        top.set_xlabel("generation (0: trained alone)")
        ensembles = [c for c in here if c["kind"].startswith("ensemble of")]
        students = [c for c in here if c["kind"].startswith("student of an ensemble")]
        first = [c for c in chain if c["generation"] == 1]   # the student of one member
        if ensembles:
            _draw_series(bottom, series(ensembles, lambda c: c["members"]), MEASURED, PREDICTED, "ensemble", start=1)
        if students:
            _draw_series(bottom, series(first + students, lambda c: c["members"] or 1), STUDENT, STUDENT_PREDICTED,
                         "its student (k = 1: generation 1)")
        bottom.set_xscale("log", base=2)
        ks = sorted({1} | {c["members"] for c in ensembles})
        bottom.set_xticks(ks, [str(k) for k in ks])
        bottom.set_xlabel("members k (k = 1: one member)")
        for axis in (top, bottom):
            axis.axhline(0.0, color="grey", linewidth=0.8)
            axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("Δ against the seeds alone (%)")
    axes[1][0].set_ylabel("Δ against the seeds alone (%)")
    axes[0][0].legend(fontsize=7, loc="best")
    axes[1][0].legend(fontsize=7, loc="best")
    corpora = sorted({c["corpus"] for c in checks})
    fig.suptitle(f"The data-limited law: each corpus predicted by the constants fitted on the others\n"
                 f"({', '.join(corpora)}; dots: each corpus measured)", fontsize=10)
    fig.tight_layout()
    return fig


def draw(record: dict, path: Path) -> None:
    """Draw `record`'s figure into `path` (.png or .svg), atomically."""
    save_figure(figure(record), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="a report data_limited_fit.py --json wrote")
    parser.add_argument("--out", type=Path, required=True, help="the figure (.png or .svg)")
    args = parser.parse_args()
    try:
        record = json.loads(args.json.read_text(encoding="utf-8"))
        record["left_out"]["checks"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--json {args.json}: not a report of bench/laws/data_limited_fit.py --json ({exc})")
    draw(record, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
