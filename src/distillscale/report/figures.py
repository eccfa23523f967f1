"""Figures of the calibration report (matplotlib, Agg backend, imported lazily). Each returns a
Figure; the page embeds them as PNG."""

from __future__ import annotations

import numpy as np

from distillscale.planning.plots import pyplot, quantity_axis
from distillscale.report.calibration import ReportCalibration
from distillscale.report.runs import learning_curve
from distillscale.units import format_quantity


def _by_size(runs: list[dict]) -> dict[float, list[dict]]:
    groups: dict[float, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["non_embedding_params"], []).append(run)
    return dict(sorted(groups.items()))


def plot_learning_curves(calibration: ReportCalibration):
    """Validation loss against tokens for every run with a metrics.jsonl, one panel per kind."""
    plt = pyplot()
    kinds = {"supervised (teachers and baselines)": calibration.runs.supervised,
             "distilled students": calibration.runs.students}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colours = plt.get_cmap("viridis")
    for ax, (title, runs) in zip(axes, kinds.items()):
        sizes = sorted({r["non_embedding_params"] for r in runs})
        for run in runs:
            curve = [p for p in learning_curve(run.get("run_dir")) if "val_loss" in p]
            if not curve:
                continue
            shade = colours(sizes.index(run["non_embedding_params"]) / max(len(sizes) - 1, 1))
            ax.plot([p["tokens"] for p in curve], [p["val_loss"] for p in curve], marker=".",
                    color=shade, alpha=0.8, lw=1)
        for index, size in enumerate(sizes):  # one legend entry per size
            ax.plot([], [], color=colours(index / max(len(sizes) - 1, 1)), label=format_quantity(size))
        ax.set_xscale("log")
        quantity_axis(ax.xaxis)
        ax.set_xlabel("tokens seen")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        if sizes:
            ax.legend(title="parameters", fontsize="small")
    axes[0].set_ylabel("validation loss (nats/token)")
    return figure


def plot_supervised_fit(calibration: ReportCalibration):
    """Observed loss against tokens per model size, with the fitted law's curves."""
    plt = pyplot()
    law = calibration.supervised.law
    runs = calibration.runs.supervised
    figure, ax = plt.subplots(figsize=(7, 4.5))
    tokens = np.array([r["tokens"] for r in runs])
    grid = np.geomspace(tokens.min() / 2, tokens.max() * 2, 200)
    for index, (size, group) in enumerate(_by_size(runs).items()):
        colour = f"C{index % 10}"
        ax.plot(grid, law.predict(size, grid), color=colour, lw=1.2)
        for kind, marker in (("teacher", "o"), ("baseline", "s")):
            members = [r for r in group if r["kind"] == kind]
            ax.scatter([r["tokens"] for r in members], [r["val_loss"] for r in members], color=colour,
                       marker=marker, zorder=3, label=f"{format_quantity(size)} ({kind})" if members else None)
    ax.set_xscale("log")
    quantity_axis(ax.xaxis)
    ax.set_xlabel("training tokens D")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("supervised law L(N, D): runs (markers) and fit (lines)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", ncol=2)
    return figure


def plot_student_u_curves(calibration: ReportCalibration):
    """Student loss against teacher loss for each student (size, tokens), the fitted law's
    U-curve through them and the student's supervised loss."""
    plt = pyplot()
    law = calibration.distillation.law if calibration.distillation else None
    groups: dict[tuple[float, float], list[dict]] = {}
    for run in calibration.runs.students:
        groups.setdefault((run["non_embedding_params"], run["tokens"]), []).append(run)
    figure, ax = plt.subplots(figsize=(7, 4.8))
    teacher_losses = np.array([r["teacher_loss"] for r in calibration.runs.students])
    grid = np.geomspace(teacher_losses.min() * 0.8, teacher_losses.max() * 1.2, 300)
    for index, ((size, tokens), group) in enumerate(sorted(groups.items())):
        colour = f"C{index % 10}"
        label = f"{format_quantity(size)} on {format_quantity(tokens)} tokens"
        ax.scatter([r["teacher_loss"] for r in group], [r["val_loss"] for r in group], color=colour,
                   zorder=3, label=label)
        if law is not None:
            ax.plot(grid, law.predict(size, tokens, grid), color=colour, lw=1.2)
            ax.axhline(law.student_law.predict(size, tokens), color=colour, ls=":", lw=1)
    ax.set_xlabel("teacher loss L_T (nats/token)")
    ax.set_ylabel("student loss L_S (nats/token)")
    ax.set_title("students vs teacher loss: runs, fitted law (lines), supervised (dotted)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the curves, not on them
    return figure


def plot_distilled_vs_baseline(calibration: ReportCalibration):
    """Each distilled student against its supervised baseline (same size and tokens): below the
    diagonal, distillation helped."""
    plt = pyplot()
    pairs = calibration.baselines
    figure, ax = plt.subplots(figsize=(5.5, 5))
    teacher_sizes = sorted({p["teacher_params"] for p in pairs})
    for index, size in enumerate(teacher_sizes):
        members = [p for p in pairs if p["teacher_params"] == size]
        ax.scatter([p["baseline_loss"] for p in members], [p["distilled_loss"] for p in members],
                   color=f"C{index % 10}", label=f"teacher {format_quantity(size)}", zorder=3)
    values = [v for p in pairs for v in (p["baseline_loss"], p["distilled_loss"])]
    low, high = min(values), max(values)
    ax.plot([low, high], [low, high], color="black", lw=1, label="no gain")
    ax.set_xlabel("supervised baseline loss (nats/token)")
    ax.set_ylabel("distilled student loss (nats/token)")
    ax.set_title("distilled vs supervised, same size and tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return figure


def plot_backtest(calibration: ReportCalibration):
    """Per law: the signed relative error of every backtest prediction against its distance beyond
    the fitted runs, the final law's extrapolation band (`ExtrapolationError.half_width`), and the largest
    runs predicted by the law refitted without them, with their intervals."""
    plt = pyplot()
    fits = [(name, fit) for name, fit in (("supervised", calibration.supervised),
                                          ("distillation", calibration.distillation)) if fit is not None]
    figure, axes = plt.subplots(1, len(fits), figsize=(5.5 * len(fits), 4.3), squeeze=False)
    for ax, (name, fit) in zip(axes[0], fits):
        backtest, band = fit.backtest, fit.extrapolation_error
        check = calibration.holdout.get(name, {})
        rows = [r for r in check.get("runs", []) if r["interval"]]
        # Each held-out run at its own distance, on the backtest's scale (size or teacher strength).
        held_distances = np.array([r["distance"] or check["held_out_params"] / check["fitted_up_to_params"]
                                   for r in rows])
        farthest = max([1.01, *held_distances, *(backtest.distances if backtest is not None else [])])
        if backtest is not None and backtest.held_out:
            ax.scatter(backtest.distances, 100 * backtest.errors, s=12, color="C0", alpha=0.6,
                       label=f"backtest ({fit.chosen})")
        calibrated = getattr(fit.law.fit, "interval", None) if fit.law.fit is not None else None
        if calibrated is not None:  # the pack's calibration (`laws.pack_interval`), at the fitted tokens
            grid = np.geomspace(1.0, farthest, 100)
            own = None if band is None else np.hypot(
                band.half_width(grid * calibrated.summary.params_max / band.fitted_max), band.seed_half_width())
            low, high = calibrated.sides(grid * calibrated.summary.params_max, calibrated.summary.tokens_max,
                                         band.level if band is not None else 0.9, own)
            # observed in [p (1 - low), p (1 + high)]: the error p / observed - 1 in [-high, +low], to first order
            ax.fill_between(grid, -100 * high, 100 * low, color="C0", alpha=0.12,
                            label="extrapolation band (calibrated on published ladders)")
        elif band is not None:
            grid = np.geomspace(1.0, farthest, 100)
            ax.fill_between(grid, -100 * band.half_width(grid), 100 * band.half_width(grid),
                            color="C0", alpha=0.12, label=f"{band.level:.0%} extrapolation band")
        if rows:
            errors = np.array([100 * r["relative_error"] for r in rows])
            low = np.array([100 * (r["interval"][0] / r["observed"] - 1) for r in rows])
            high = np.array([100 * (r["interval"][1] / r["observed"] - 1) for r in rows])
            ax.errorbar(held_distances, errors, yerr=[errors - low, high - errors], fmt="x", color="C3",
                        capsize=2, label=f"largest held out: {check['coverage']:.0%} covered")
        ax.axhline(0, color="black", lw=0.8)
        if farthest >= 2:  # sizes: log, ticks at whole doublings; teacher strengths span a few percent
            from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(2.0 ** np.arange(0, np.ceil(np.log2(farthest)) + 1)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"distance beyond the fitted runs ({band.scale_name if band else 'scale'} ratio)")
        ax.set_ylabel("predicted / observed - 1 (%)")
        ax.set_title(f"{name} law: extrapolation backtest")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)  # off the data
    return figure


def plot_repetition(calibration: ReportCalibration):
    """Loss against epochs over a fixed subset (the same budget D, U = D / epochs unique tokens), one
    panel per student size: each group's runs (supervised, distilled), its fitted data-constrained
    curve, and the backtest's predictions (fitted on the runs of at most 4 epochs) of those beyond."""
    plt = pyplot()
    curves = calibration.repetition
    sizes = sorted({size.params for curve in curves for size in curve.sizes})
    figure, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4.3), squeeze=False)
    markers = {"supervised": "s"}
    for ax, params in zip(axes[0], sizes):
        budget = next(s.tokens for curve in curves for s in curve.sizes if s.params == params)
        for index, curve in enumerate(curves):
            size = next((s for s in curve.sizes if s.params == params), None)
            if size is None:
                continue
            colour = f"C{index % 10}"
            group = [r for r in calibration.repetition_runs(curve.name)
                     if r["non_embedding_params"] == params and abs(r["tokens"] / size.tokens - 1) < 1e-3]
            epochs = np.array([r["tokens"] / min(r["unique_tokens"], r["tokens"]) for r in group])
            ax.scatter(epochs, [r["val_loss"] for r in group], color=colour, zorder=3,
                       marker=markers.get(curve.name, "o"),
                       label=f"{curve.name}: R_D* = {curve.R_D_star:.3g}")
            grid = np.geomspace(1.0, max(epochs.max(), 2.0) * 1.25, 100)
            ax.plot(grid, curve.predict(params, size.tokens, size.tokens / grid), color=colour, lw=1.2)
            beyond = [run for run in curve.backtest if run["params"] == params]
            if beyond:
                ax.scatter([run["epochs"] for run in beyond], [run["predicted"] for run in beyond],
                           facecolors="none", edgecolors=colour, marker="D", s=40, zorder=4,
                           label=f"{curve.name}: predicted from <= {curve.backtest_epochs:g} epochs")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("epochs over the fixed subset (D / U)")
        ax.set_title(f"{format_quantity(params)} parameters, D = {format_quantity(budget)} tokens")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("validation loss (nats/token)")
    return figure


def plot_capacity_gap_pruned(calibration: ReportCalibration):
    """Student loss against teacher size per student size (one colour each), pruned-from-the-teacher
    students solid, from-scratch ones dashed, each group's N_T* a vertical mark (MiniMA's Fig.)."""
    plt = pyplot()
    gap = calibration.capacity_gap_pruned
    figure, ax = plt.subplots(figsize=(7.5, 4.8))
    sizes = sorted({p.student_params for p in gap.points})
    styles = {"scratch": ("--", "s"), "pruned": ("-", "o"), "started": (":", "^")}
    for group in gap.groups:
        for optimum in group.optima:
            colour = f"C{sizes.index(optimum.student_params) % 10}"
            line, marker = styles[group.init]
            mine = sorted((p for p in gap.points if p.init == group.init and p.student_params == optimum.student_params
                           and round(p.student_tokens / p.student_params) == group.tokens_per_param),
                          key=lambda p: p.teacher_params)
            teachers = sorted({p.teacher_params for p in mine})
            means = [np.mean([p.student_loss for p in mine if p.teacher_params == t]) for t in teachers]
            ax.plot(teachers, means, ls=line, marker=marker, color=colour, lw=1.2,
                    label=f"{format_quantity(optimum.student_params)}, {group.init}")
            ax.axvline(optimum.teacher_params, color=colour, ls=line, lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    quantity_axis(ax.xaxis)
    ax.set_xlabel("teacher size N_T (non-embedding parameters)")
    ax.set_ylabel("student loss L_S (nats/token)")
    ax.set_title("capacity gap: student loss vs teacher size (vertical: N_T*)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", title="student, start")
    return figure
