"""How `distillscale fit` shows a calibration: the coefficient table, the fit's diagnostics, the
candidates' backtests, the hold-out check, and the same as JSON."""

from __future__ import annotations

from typing import Any

import numpy as np

from distillscale.console import Table, console, warn
from distillscale.laws.backtest import SCORE_DISTANCE
from distillscale.laws.calibrate import HoldoutCheck
from distillscale.laws.selection import LawFit
from distillscale.units import format_interval


def print_fit(title: str, fit: LawFit, n_dropped: int, holdout: HoldoutCheck | None, fit_where: str | None) -> None:
    """The coefficients with their intervals, how the fit went, the backtests and the hold-out."""
    record, law = fit.record, fit.law
    header = f"{record.level:.0%} interval" if record.intervals else "interval (no bootstrap)"
    table = Table(title=title)
    table.add_column("coefficient")
    table.add_column("value", justify="right")
    table.add_column(header, justify="right")
    for name, value in law.coefficients().items():
        low_high = record.intervals.get(name)
        constraint = record.constraints.get(name)
        if name in record.not_identified:
            shown = "not identified"
        elif constraint is not None and not isinstance(constraint, dict):
            shown = "fixed" if isinstance(constraint, float) else f"= {constraint}"
        else:
            shown = " – ".join(format_interval(*low_high, digits=6)) if low_high else "–"
        table.add_row(name, f"{value:.6g}", shown)
    console.print(table)
    diagnostics, convergence = record.diagnostics, record.convergence
    console.print(f"form: {fit.chosen} ({fit.reason})")
    console.print(f"runs: {record.n_runs} fitted"
                  + (f", {n_dropped} invalid skipped" if n_dropped else "")
                  + (f"; objective: {record.objective}" if (record.objective or "").startswith("median of")
                     else f"; objective: summed Huber (delta {record.huber_delta:g}) of log-loss residuals "
                     f"= {convergence['fun']:.6g}"))
    console.print(f"fit quality: RMSE of log-loss {diagnostics.rmse_log_loss:.4f}, "
                  f"max relative error {diagnostics.max_relative_error:.2%}")
    screening = convergence.get("screening")
    continued = (f", {screening['n_continued']} continued after {screening['iterations']} "
                 f"{screening['dtype']} screening iterations" if screening else "")
    console.print(f"optimiser: {record.solver}; best of {convergence['n_starts']} starts "
                  f"({convergence['n_converged']} converged{continued}): {convergence['message']} after "
                  f"{convergence['nit']} iterations, projected gradient {convergence['grad_norm']:.2g}")
    if diagnostics.best_start_on_grid_edge:
        console.print("best start on the edge of the grid in: " + ", ".join(diagnostics.best_start_on_grid_edge))
    _print_selection(fit)
    if holdout is not None and holdout.runs:
        errors = np.abs(holdout.errors)
        coverage = (f"; {holdout.coverage:.0%} inside their {holdout.level:.0%} intervals"
                    if holdout.coverage is not None else "")
        console.print(f"hold-out ({fit_where}): fitted on {len(holdout.fitted_rows)} runs; relative error on "
                      f"the other {len(holdout.runs)}: mean {errors.mean():.2%}, max {errors.max():.2%}, "
                      f"{holdout.n_over_predicted} of {len(holdout.runs)} over-predicted (mean signed "
                      f"{holdout.errors.mean():+.2%})" + coverage)
        if holdout.describe_raw() is not None:
            console.print(f"hold-out, {holdout.describe_raw()}", soft_wrap=True, highlight=False)
    note = bias_note(fit)
    if note is not None:
        console.print(note, soft_wrap=True, highlight=False)
    for message in fit_warnings(fit, holdout, fit_where):
        warn(message)


def bias_note(fit: LawFit) -> str | None:
    """The one line a bias-corrected supervised law prints (`laws.crossladder`); None for a raw law."""
    correction = getattr(fit.law, "bias_correction", None)
    return None if correction is None else correction.describe()


def fit_warnings(fit: LawFit, holdout: HoldoutCheck | None, fit_where: str | None) -> list[str]:
    """What `fit` warns about (on stderr, and in its --json): coefficients the runs do not pin down,
    a fit without a backtest or with rough intervals (LawFit.warnings), a hold-out that holds nothing out."""
    messages = list(fit.warnings)
    if holdout is not None and not holdout.runs:
        messages.append(f"--fit-where {fit_where!r} matches every run: nothing held out")
    if holdout is not None and holdout.bias is not None:
        messages.append(holdout.bias)
    return messages


def _print_selection(fit: LawFit) -> None:
    """The candidates' backtests side by side, and the chosen law's extrapolation error."""
    scored = [c for c in fit.candidates if c.backtest is not None and c.backtest.held_out]
    if scored:
        console.print(_backtest_table(fit, scored, SCORE_DISTANCE))
    extrapolation = fit.extrapolation_error
    calibrated = getattr(fit.law.fit, "interval", None) if fit.law.fit is not None else None
    if calibrated is not None:  # the pack's calibration replaces the backtest's quantile (`laws.pack_interval`)
        level = extrapolation.level if extrapolation is not None else 0.9
        own = None if extrapolation is None else np.hypot(extrapolation.half_width(
            calibrated.summary.params_max * np.array([1.0, 2.0, 4.0, 10.0]) / extrapolation.fitted_max),
            extrapolation.seed_half_width())
        console.print(f"{calibrated.describe(level, own)}; predict, plan and teacher show it as their intervals",
                      soft_wrap=True, highlight=False)
    elif extrapolation is not None:
        # Teacher strengths (1 / L_T) span a few percent: show distances on that scale.
        distances = (1, 2, 4, 10) if extrapolation.scale_name == "params" else (1, 1.05, 1.1, 1.25)
        widths = ", ".join(f"±{extrapolation.half_width(d):.1%} at {d:g}x" for d in distances)
        source = (f"from {extrapolation.n_points} backtest predictions of the candidates that could be chosen" if extrapolation.measured
                  else "not measured: the literature's typical error, for want of a backtest that measured any")
        scale = getattr(fit.law.fit, "interval_scale", None)
        use = "the calibration below scales the interval it makes" if scale is not None else \
            "predict, plan and teacher add it to their intervals"
        console.print(f"extrapolation error ({extrapolation.level:.0%}, {source}): {widths} the largest "
                      f"fitted {extrapolation.scale_name}; {use}")
        if extrapolation.seed_noise > 0:
            console.print(f"seed noise: ±{extrapolation.seed_half_width():.1%} per run ({extrapolation.level:.0%}), "
                          f"from {extrapolation.seed_settings} settings run with several seeds; in every interval")
        if scale is not None:
            console.print(f"{scale.describe(extrapolation.level)}; predict, plan and teacher give that",
                          soft_wrap=True, highlight=False)


def _backtest_table(fit: LawFit, scored, score_distance: float) -> Table:
    near = [b.label for b in max((c.backtest.bands() for c in scored), key=len) if b.high <= score_distance]
    table = Table(title=f"Backtest: fitted on smaller {scored[0].backtest.scale_name}, mean |relative "
                        "error| on larger, by distance beyond the fitted runs")
    for name in ("candidate", "coef.", "score", *near, f">{score_distance:g}x", f"worst <={score_distance:g}x"):
        table.add_column(name, justify="left" if name == "candidate" else "right")
    for candidate in scored:
        backtest = candidate.backtest
        bands = {b.label: b for b in backtest.bands()}
        within = backtest.distances <= score_distance
        far = np.abs(backtest.errors[~within])
        worst = backtest.errors[within][np.argmax(np.abs(backtest.errors[within]))] if within.any() else None
        table.add_row(candidate.name + (" (chosen)" if candidate.name == fit.chosen else ""),
                      str(candidate.n_parameters),
                      f"{candidate.score:.2%}" if candidate.score is not None else candidate.note or "-",
                      *(f"{bands[label].mean_abs_error:.2%}" if label in bands else "" for label in near),
                      f"{far.mean():.2%}" if far.size else "",
                      f"{worst:+.2%}" if worst is not None else "")
    return table


def fit_json(laws_name: str, fit: LawFit, n_dropped: int, holdout: HoldoutCheck | None, fit_where: str | None,
             lines, out) -> dict[str, Any]:
    """`fit --json`: the chosen law, its record's summary, the candidates and the hold-out check
    (its runs named by their line in the run file)."""
    record = fit.record
    return {"law": laws_name, "form": fit.chosen, "reason": fit.reason,
            "coefficients": fit.law.coefficients(),
            # a coefficient the runs do not identify has no interval (its value is not an estimate)
            "intervals": {name: None if name in record.not_identified else interval
                          for name, interval in record.to_json().get("intervals", {}).items()},
            "not_identified": record.not_identified, "level": record.level,
            "candidates": [c.to_dict() for c in fit.candidates],
            "backtest": record.backtest, "extrapolation_error": record.to_json().get("extrapolation_error"),
            "diagnostics": record.diagnostics.model_dump(), "solver": record.solver,
            "convergence": record.convergence, "huber_delta": record.huber_delta,
            "n_runs": record.n_runs, "n_dropped": n_dropped, "data_hash": record.data_hash,
            "holdout": ({"filter": fit_where, **holdout.to_dict([int(line) for line in lines])}
                        if holdout is not None else None),
            "bias_correction": bias_note(fit),
            "saved_to": str(out) if out else None, "warnings": fit_warnings(fit, holdout, fit_where)}
