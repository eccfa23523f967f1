"""How the data-constrained fit predicts repeated data on published runs (`laws.published`'s sets
that repeat data): fit `fit_supervised(..., unique_tokens=U)` on the runs of at most 4 epochs,
predict those beyond with `predict_supervised(..., unique_tokens=U)` (what `fit supervised
--unique-tokens-col` and `predict --unique-tokens` do), and print per set and per band of epochs the
mean and max |relative error|, the coverage of the 90% intervals and the share over-predicted, with
R_D* and its interval, beside two baselines on the same held-out runs:

- "ignore": the law fitted without unique tokens, predicting from N and D (repeats counted as new);
- "published": that law with Muennighoff et al.'s constants (R_D* = 15.4, R_N* = 5.3), what
  `predict --unique-tokens` used for a law without constants of its own.

    python bench/laws/repetition_backtest.py                         # every set, the default prior
    python bench/laws/repetition_backtest.py --prior-median 5.2      # leave-one-set-out: a prior not from the set
    python bench/laws/repetition_backtest.py --forms                 # + other forms, held out by group, and a limit
    PYTHONPATH=/path/to/old/src python bench/laws/repetition_backtest.py   # "before": the same runs, older code

The runs are read from this checkout's files, so an older `src` (without the set) can be scored on
them. The default prior's median (15.4) was fitted by Muennighoff et al. on these very runs: on their
set it is not out-of-sample, and `--prior-median 5.2` (this project's micro-scale supervised R_D*)
is the leave-one-set-out check. The fits use no bootstrap (--bootstrap 0 by default): the
extrapolation part of the intervals dominates beyond the runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from distillscale.laws.lawset import LawSet
from distillscale.laws.predict import predict_supervised
from distillscale.laws.repetition import PUBLISHED, predict_repeated
from distillscale.laws.selection import fit_supervised

PACK = Path(__file__).resolve().parents[2] / "src" / "distillscale" / "laws" / "published"
SETS = ("muennighoff2023_c4",)
CUT = 4.0
BANDS = ((4.0, 16.0), (16.0, 64.0), (64.0, np.inf))
# The loss of a uniform guess over the runs' vocabulary (GPT-2's 50,257 ids): what an over-fitting
# model's loss rises toward in the bounded over-fitting forms (a few diverged runs end near it).
UNIFORM_LOSS = float(np.log(50257))


def summary(errors: np.ndarray, covered: np.ndarray | None) -> dict:
    return {"n": int(len(errors)), "mean_abs_error": float(np.mean(np.abs(errors))),
            "max_abs_error": float(np.max(np.abs(errors))), "over_predicted": float(np.mean(errors > 0)),
            "coverage": None if covered is None else float(np.mean(covered))}


def scored(errors, covered, epochs) -> dict:
    out = {"all": summary(errors, covered)}
    for low, high in BANDS:
        rows = (epochs > low * 1.0001) & (epochs <= high)
        if rows.any():
            out[f"{low:g}-{high:g}x"] = summary(errors[rows], None if covered is None else covered[rows])
    return out


def evaluate(name: str, bootstrap: int, prior_median: float | None, forms: bool = False) -> dict:
    runs = pd.read_csv(PACK / name / "runs.csv")
    N, D, U, loss = (runs[c].to_numpy(float) for c in ("params", "tokens", "unique_tokens", "loss"))
    early, epochs = D / U <= CUT * 1.0001, D / U
    options = {"bootstrap": bootstrap}
    if prior_median is not None:
        from distillscale.laws.repetition import R_D_STAR_PRIOR, RStarPrior

        options["prior"] = RStarPrior(prior_median, R_D_STAR_PRIOR.log_sd, f"median {prior_median:g}")
    started = time.time()
    fit = fit_supervised({"params": N[early], "tokens": D[early], "loss": loss[early],
                          "unique_tokens": U[early]}, unique_tokens="unique_tokens", **options)
    seconds = time.time() - started
    laws = LawSet("fitted", fit.law)
    predictions = [predict_supervised(laws, n, d, u).prediction for n, d, u in zip(N[~early], D[~early], U[~early])]
    value = np.array([p.value for p in predictions])
    covered = np.array([p.low <= y <= p.high for p, y in zip(predictions, loss[~early])]) \
        if predictions[0].has_interval else None
    covered_dc = covered
    repetition = fit.law.repetition
    out = {"set": name, "fitted_runs": int(early.sum()), "held_out": int((~early).sum()), "fit_seconds": seconds,
           "chosen": fit.chosen, "record": fit.repetition_record,
           "R_D_star": None if repetition is None else repetition.R_D_star,
           "R_D_star_interval": None if repetition is None or not repetition.interval else list(repetition.interval),
           "data_constrained": scored(value / loss[~early] - 1, covered, epochs[~early])}
    plain = fit_supervised({"params": N[early], "tokens": D[early], "loss": loss[early]}, **{"bootstrap": bootstrap})
    fresh = [plain.law.prediction(n, d) for n, d in zip(N[~early], D[~early])]
    value = value_ignore = np.array([p.value for p in fresh])
    covered = np.array([p.low <= y <= p.high for p, y in zip(fresh, loss[~early])]) if fresh[0].has_interval else None
    out["ignore"] = scored(value / loss[~early] - 1, covered, epochs[~early])
    covered_ignore = covered
    value = predict_repeated(plain.law, PUBLISHED, N[~early], D[~early], U[~early])
    out["published"] = scored(value / loss[~early] - 1, None, epochs[~early])
    if forms:
        base = np.asarray(predict_repeated(fit.law, repetition, N, D, U), float) if repetition is not None \
            else np.asarray(fit.law.predict(N, D), float)
        out["forms"] = other_forms(N, D, U, loss, base, fit.law)
        dc = np.array([p.value for p in predictions]) / loss[~early] - 1
        out["limit"] = epoch_limit(dc, value_ignore / loss[~early] - 1, covered_dc, epochs[~early], U[~early])
        out["limit_ignore"] = epoch_limit(value_ignore / loss[~early] - 1, value_ignore / loss[~early] - 1,
                                          covered_ignore, epochs[~early], U[~early])
    return out


# Other forms for repeated data, on top of the data-constrained law fitted on the runs of <= 4 epochs
# (`base`: its prediction with its R_D*). Each adds to the loss (or changes R_D* per run); its
# parameters are fitted (least |log residual|) four ways: on the runs of <= 4 epochs (what a user's
# fit could do; the runs of one epoch move only the forms whose term is not 0 there), on the
# held-out runs of every other unique-token budget U, model size N or training curve (one N on one U)
# (leave one group out: the group is scored with parameters chosen without it), on every held-out
# run (in-sample: the best the form can do, not a prediction), and on the runs up to 16 or 64 epochs
# (LONGER: a user with longer runs), scoring those beyond.
def _forms(N, D, U, law):
    E, capacity = D / U, N / U

    def decay(t, curved=0.0):   # R_D* = exp(t0) (N/U)^(-t1 - curved ln(N/U)): small models get more from repeats
        r_star = np.exp(t[0] - (t[1] + curved * np.log(capacity)) * np.log(capacity))
        r_star = np.clip(np.nan_to_num(r_star, nan=1e4), 0.05, 1e4)   # the box
        return U + U * r_star * -np.expm1(-(E - 1) / r_star)

    own = law.repetition.R_D_star if law.repetition is not None and law.repetition.R_D_star < 1e4 else None
    at_own = np.asarray(law.predict(N, D if own is None else decay([np.log(own), 0.0])), float)

    def redecayed(t, base, curved=0.0):   # the base prediction with R_D* per run instead of the law's one
        return base * np.asarray(law.predict(N, decay(t, curved)), float) / at_own

    def overfit(t, base):   # bounded over-fitting from an onset: x = (D/U - 1) (N/U)^a, rising toward ln V
        x = (E - 1) * capacity ** t[0]
        return base + (UNIFORM_LOSS - base) * -np.expm1(-(x / np.exp(t[1])) ** np.exp(t[2]))

    def onset(t, base):     # additive, from an onset x0 on: c ln(x / x0)^2
        x = (E - 1) * capacity ** t[0]
        return base + np.exp(t[1]) * np.maximum(0.0, np.log(x / np.exp(t[2]))) ** 2

    def falling(t):         # R_D* = R0 (N/U)^-|k|: never rising with N/U
        return [t[0], abs(t[1])]

    def knee(t, base, smooth):   # multiplicative rise past x0: L (x/x0)^c (a power law in x), kinked or softplus
        z = np.log((E - 1) * capacity ** t[0]) - t[2]
        return base * np.exp(np.exp(t[1]) * (np.logaddexp(0.0, z) if smooth else np.maximum(0.0, z)))

    return {
        "+ k ln(D/U)": (lambda t, base: base * np.exp(t[0] * np.log(E)), [0.01]),
        "+ c (N/U)^a ln(D/U)": (lambda t, base: base * np.exp(t[0] * capacity ** t[1] * np.log(E)), [0.01, 1.0]),
        "+ (c0 + c1 ln(N/U)) ln(D/U)": (lambda t, base: base * np.exp((t[0] + t[1] * np.log(capacity)) * np.log(E)),
                                        [0.01, 0.01]),
        "R_D* = R0 (N/U)^-k": (redecayed, [2.3, 0.5]),
        "R_D* = R0 (N/U)^-k, + c (N/U)^a ln(D/U)": (
            lambda t, base: redecayed(t, base) * np.exp(t[2] * capacity ** t[3] * np.log(E)), [2.3, 0.5, 0.0, 1.0]),
        # at one epoch too: large N/U already loses there (2.81B parameters on 100M tokens), a signal the
        # runs of <= 4 epochs hold; b says whether it grows with epochs
        "+ c (N/U)^a (D/U)^b": (lambda t, base: base + np.exp(t[0]) * capacity ** t[1] * E ** t[2], [-6.0, 1.0, 1.0]),
        "+ (ln V - L)(1 - exp(-(x/x0)^b)), x = (D/U-1)(N/U)^a": (overfit, [1.0, np.log(300.0), 0.0]),
        "R_D* = R0 (N/U)^-|k|, + (ln V - L)(1 - exp(-(x/x0)^b))": (
            lambda t, base: overfit(t[2:], redecayed(falling(t), base)), [np.log(30.0), 0.5, 1.0, np.log(300.0), 0.0]),
        "R_D* = R0 (N/U)^-|k|, + c ln(x/x0)^2 past x0": (
            lambda t, base: onset(t[2:], redecayed(falling(t), base)), [np.log(30.0), 0.5, 1.0, -3.0, np.log(30.0)]),
        # multiplicative (log-space) over-fitting terms
        "R_D* = R0 (N/U)^-|k|, * (x/x0)^c past x0": (
            lambda t, base: knee(t[2:], redecayed(falling(t), base), False), [np.log(30.0), 0.5, 1.0, -3.0, np.log(30.0)]),
        "R_D* = R0 (N/U)^-|k|, * exp(c softplus(ln(x/x0)))": (
            lambda t, base: knee(t[2:], redecayed(falling(t), base), True), [np.log(30.0), 0.5, 1.0, -3.0, np.log(30.0)]),
        "ln L + c (D/U)^a (N/U)^b": (lambda t, base: base * np.exp(np.exp(t[0]) * E ** t[1] * capacity ** t[2]),
                                     [-6.0, 0.7, 1.0]),
        "R_D* = R0 (N/U)^-|k|, ln L + c (D/U)^a (N/U)^b": (
            lambda t, base: redecayed(falling(t), base) * np.exp(np.exp(t[2]) * E ** t[3] * capacity ** t[4]),
            [np.log(30.0), 0.5, -6.0, 0.7, 1.0]),
        "R_D* = R0 (N/U)^-|k|, L e^(c (D/U-1)(N/U)^a) up to ln V": (
            lambda t, base: np.minimum(UNIFORM_LOSS, redecayed(falling(t), base)
                                       * np.exp(np.exp(t[3]) * (E - 1) * capacity ** t[2])), [np.log(30.0), 0.5, 1.0, -6.0]),
        # richer, to bound what the over-fitting forms can do in-sample: R_D* curved in ln(N/U), or a
        # second (multiplicative) rise with its own onset on top of the bounded one
        "R_D* = R0 (N/U)^(-k - k2 ln(N/U)), + (ln V - L)(1 - exp(-(x/x0)^b))": (
            lambda t, base: overfit(t[3:], redecayed(t, base, t[2])), [np.log(30.0), 0.5, 0.0, 1.0, np.log(300.0), 0.0]),
        "R_D* = R0 (N/U)^-|k|, + (ln V - L)(1 - exp(-(x/x0)^b)), L (x'/x0')^c past x0'": (
            lambda t, base: knee(t[5:], overfit(t[2:5], redecayed(falling(t), base)), False),
            [np.log(30.0), 0.5, 1.0, np.log(300.0), 0.0, 1.0, -3.0, np.log(30.0)]),
    }


def _fit_form(form, start, base, loss, rows):
    def objective(t) -> float:
        value = float(np.mean(np.abs(np.log(np.maximum(form(t, base)[rows], 1e-9) / loss[rows]))))
        return value if np.isfinite(value) else 1e9

    with np.errstate(all="ignore"):
        first = minimize(objective, start, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-10})
        # a restart from where the simplex stopped (it stalls on the forms of 4-5 parameters)
        return minimize(objective, first.x, method="Nelder-Mead",
                        options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-10}).x


def other_forms(N, D, U, loss, base, law) -> dict:
    E = D / U
    early, late = E <= CUT * 1.0001, E > CUT * 1.0001
    forms = _forms(N, D, U, law)
    # one training curve: the runs of one model size on one unique-token budget (its epochs)
    curve = np.unique(np.column_stack([N, U]), axis=0, return_inverse=True)[1].reshape(-1)
    out = {}
    for name, (form, start) in forms.items():
        row = {}
        with np.errstate(all="ignore"):
            theta = _fit_form(form, start, base, loss, early)   # every run of <= 4 epochs, one epoch included
            row["fitted on <= 4 epochs"] = scored(form(theta, base)[late] / loss[late] - 1, None, E[late])
            for label, group in (("leave one U out", U), ("leave one N out", N), ("leave one curve out", curve)):
                predicted = np.empty(len(N))
                for value in np.unique(group[late]):
                    test = late & (group == value)
                    predicted[test] = form(_fit_form(form, start, base, loss, late & (group != value)), base)[test]
                errors = predicted[late] / loss[late] - 1
                errors = np.where(np.isfinite(errors), errors, 1e6)
                row[label] = scored(errors, None, E[late])
            row["in-sample (not a prediction)"] = scored(form(_fit_form(form, start, base, loss, late), base)[late]
                                                         / loss[late] - 1, None, E[late])
            for cut in LONGER:   # a user with longer runs: constants fitted up to `cut` epochs, those beyond scored
                beyond = E > cut * 1.0001
                errors = form(_fit_form(form, start, base, loss, ~beyond), base)[beyond] / loss[beyond] - 1
                row[f"fitted on <= {cut:g} epochs, beyond"] = summary(np.where(np.isfinite(errors), errors, 1e6), None)
        out[name] = row
    return out


# Longer fitted ranges for the forms' constants (the law and its R_D* stay those of <= 4 epochs).
LONGER = (16.0, 64.0)


# Predict only up to a stated epoch ratio (LIMITS: candidates, a multiple of the fit's 4 epochs),
# refusing beyond it. Scored on the runs it predicts, with the refused share; the limit is chosen
# leaving one unique-token budget out (the largest limit whose mean error on the other budgets'
# runs is <= 3%), and that choice scored on the left-out budget.
LIMITS = (8.0, 16.0, 32.0, 64.0)
TARGET = 0.03


def epoch_limit(errors, errors_ignore, covered, E, U) -> dict:
    def at(limit, rows):
        kept = rows & (E <= limit * 1.0001)
        return {"n": int(kept.sum()), "refused": float(1 - kept.sum() / max(rows.sum(), 1)),
                "mean_abs_error": float(np.mean(np.abs(errors[kept]))) if kept.any() else None,
                "mean_abs_error_ignore": float(np.mean(np.abs(errors_ignore[kept]))) if kept.any() else None,
                "max_abs_error": float(np.max(np.abs(errors[kept]))) if kept.any() else None,
                "over_predicted": float(np.mean(errors[kept] > 0)) if kept.any() else None,
                "coverage": None if covered is None or not kept.any() else float(np.mean(covered[kept]))}

    everything = np.ones(len(E), bool)
    out = {"fixed": {f"{limit:g}": at(limit, everything) for limit in LIMITS}}
    chosen, kept = {}, np.zeros(len(E), bool)
    for value in np.unique(U):
        others = U != value
        ok = [limit for limit in LIMITS if (at(limit, others)["mean_abs_error"] or 1.0) <= TARGET]
        limit = max(ok) if ok else 4.0
        chosen[f"{value:g}"] = limit
        kept |= (U == value) & (E <= limit * 1.0001)
    out["leave one U out"] = {"limits": chosen, "n": int(kept.sum()), "refused": float(1 - kept.mean()),
                              "mean_abs_error": float(np.mean(np.abs(errors[kept]))),
                              "mean_abs_error_ignore": float(np.mean(np.abs(errors_ignore[kept]))),
                              "max_abs_error": float(np.max(np.abs(errors[kept]))),
                              "over_predicted": float(np.mean(errors[kept] > 0)),
                              "coverage": None if covered is None else float(np.mean(covered[kept]))}
    return out


def line(label: str, s: dict) -> str:
    coverage = "-" if s["coverage"] is None else f"{s['coverage']:.0%}"
    return (f"  {label:<26} n={s['n']:>3}  mean {s['mean_abs_error']:6.2%}  max {s['max_abs_error']:6.1%}  "
            f"covered {coverage:>4}  over-predicted {s['over_predicted']:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--bootstrap", type=int, default=0)
    parser.add_argument("--prior-median", type=float, default=None,
                        help="R_D* prior median instead of the default (needs the prior; not in older code)")
    parser.add_argument("--forms", action="store_true",
                        help="also score other forms (held out by group) and an epoch limit (refusing beyond it)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for name in args.sets:
        result = evaluate(name, args.bootstrap, args.prior_median, args.forms)
        results.append(result)
        interval = result["R_D_star_interval"]
        print(f"{name}: fitted on {result['fitted_runs']} runs of <= {CUT:g} epochs, {result['held_out']} beyond "
              f"({result['fit_seconds']:.0f} s); chosen: {result['chosen']}; R_D* = "
              + ("none of its own" if result["R_D_star"] is None else f"{result['R_D_star']:.3g}")
              + (f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval else ""))
        record = (result["record"] or {}).get("backtest")
        if record:
            print(f"  the fit's own gate (fitted <= {record['fitted_up_to_epochs']:g} epochs, {record['n']} beyond): "
                  f"data-constrained {record['mean_abs_error_data_constrained']:.2%}, plain {record['mean_abs_error_plain']:.2%}")
        for kind, label in (("data_constrained", "fit + predict --unique-tokens"), ("ignore", "ignore repetition"),
                            ("published", "plain law + 15.4/5.3")):
            for band, s in result[kind].items():
                print(line(f"{label} {band}" if band != "all" else label, s))
        for name_, row in result.get("forms", {}).items():
            print(f"  form {name_} (on the data-constrained fit; no intervals):")
            for how, bands in row.items():
                bands = bands if "all" in bands else {"all": bands}   # the longer fits: one summary
                s = bands["all"]
                by_band = ", ".join(f"{band} {b['mean_abs_error']:.2%} (max {min(b['max_abs_error'], 99.99):.0%})"
                                    for band, b in bands.items() if band != "all")
                print(f"    {how:<30} mean {s['mean_abs_error']:7.2%}  max {min(s['max_abs_error'], 99.99):6.1%}  "
                      f"over-predicted {s['over_predicted']:.0%}" + (f"  by band: {by_band}" if by_band else ""))
        for key, label in (("limit", "fit + predict --unique-tokens"), ("limit_ignore", "ignore repetition")):
            if key not in result:
                continue
            print(f"  {label}, predicting only up to an epoch limit (refusing beyond):")
            for limit, s in list(result[key]["fixed"].items()) + [("chosen leaving one U out",
                                                                    result[key]["leave one U out"])]:
                coverage = "-" if s["coverage"] is None else f"{s['coverage']:.0%}"
                print(f"    <= {limit:<24} n={s['n']:>3} refused {s['refused']:4.0%}  mean {s['mean_abs_error']:6.2%} "
                      f"(ignoring repetition {s['mean_abs_error_ignore']:.2%})  max {s['max_abs_error']:6.1%}  "
                      f"covered {coverage:>4}  over-predicted {s['over_predicted']:.0%}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
