"""The presets' intervals (`laws.preset_error`): each published law's own error inside its runs and,
where the runs are public, its coefficients' bootstrap; written to src/distillscale/laws/preset_error.json.

    python bench/laws/preset_intervals.py                       # print what it would write
    python bench/laws/preset_intervals.py --write --date 2026-11-27

- chinchilla2022 and epoch2024 are fitted to the same runs (Hoffmann et al. 2022's, as Epoch extracted
  them from Chinchilla's Fig. 4; 240 after Epoch's five highest losses are dropped): each law's error
  there is the 90% quantile of |observed / predicted - 1| over those runs. Epoch's bootstrap of the
  fit is reproduced (their protocol: the Chinchilla form, a summed Huber loss with delta 1e-3, runs
  resampled with replacement) and each resample's coefficients are moved by the difference between
  Epoch's published estimate and this fit's (log A, log B, log E, alpha, beta), so the samples scatter
  about the preset. Hoffmann et al. published no interval of their Eq. 10: chinchilla2022 has none.
- busbridge2025: its runs are not public. Its stated fit error ("about 1% relative error, also when
  extrapolating from weaker to stronger models") is read as the mean |error| of normal errors, whose
  90% half-width is 1.645 / 0.798 = 2.06x the mean. Their Table 6's bootstrap intervals of the
  coefficients are not in distillscale's reference material: not included, and said so.
Needs ../shared/data (the extracted runs) beside the checkout; about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from statistics import NormalDist

import numpy as np

from distillscale.laws import PRESETS, published
from distillscale.laws.crossladder import FitSummary
from distillscale.laws.fitting import SupervisedLawFitter
from distillscale.laws.preset_error import FILE, LEVEL, PUBLISHED_RANGES

RESAMPLES = 1000
SEED = 0
# The ratio of a normal 90% half-width to the mean |error|: z_0.95 / sqrt(2 / pi).
HALF_NORMAL = NormalDist().inv_cdf((1 + LEVEL) / 2) / math.sqrt(2 / math.pi)
BUSBRIDGE_STATED = 0.01  # "about 1% relative error" (Busbridge et al. 2025, Sec. 4 and App. F)


def own_error(name: str, N, D, loss) -> dict:
    law = PRESETS[name]().supervised
    error = np.abs(loss / law.predict(N, D) - 1.0)
    return {"half_width": float(np.quantile(error, LEVEL)), "mean_abs_error": float(error.mean()),
            "runs": len(loss)}


def epoch_bootstrap(N, D, loss) -> dict:
    fitted = SupervisedLawFitter("chinchilla", bootstrap=RESAMPLES, seed=SEED, level=LEVEL).fit(N, D, loss).law_
    preset = PRESETS["epoch2024"]().supervised
    names = list(fitted.fit.bootstrap.coefficients)
    shift = {name: (math.log(getattr(preset, name)) - math.log(getattr(fitted, name)) if name in ("E", "A", "B")
                    else getattr(preset, name) - getattr(fitted, name)) for name in names}
    samples = []
    for row in fitted.fit.bootstrap.samples:
        moved = [math.exp(math.log(v) + shift[n]) if n in ("E", "A", "B") else v + shift[n] for n, v in zip(names, row)]
        samples.append([float(f"{v:.8g}") for v in moved])
    return {"resamples": RESAMPLES, "seed": SEED, "convergence": fitted.fit.bootstrap.convergence,
            "coefficients": names, "samples": samples,
            "fitted": {name: getattr(fitted, name) for name in names}}


def build(date: str) -> dict:
    runs = published.load("epoch2024_chinchilla").runs
    N, D, loss = (runs[c].to_numpy(float) for c in ("params", "tokens", "loss"))
    out = {"date": date, "command": f"python bench/laws/preset_intervals.py --write --date {date}", "level": LEVEL,
           "presets": {}}
    for name, source in (("chinchilla2022", "Hoffmann et al. 2022 published no interval of Eq. 10's coefficients"),
                         ("epoch2024", "Besiroglu et al. 2024's bootstrap of the fit, reproduced on the same runs")):
        own = own_error(name, N, D, loss)
        entry = {"stated": {"half_width": own["half_width"], "level": LEVEL, "source": (
            f"its error on the {own['runs']} runs it was fitted to (Hoffmann et al. 2022's, as extracted by "
            f"Besiroglu et al. 2024): 90% of them within {own['half_width']:.2%} (mean |error| "
            f"{own['mean_abs_error']:.2%})")},
            "coefficients": source, "summary": FitSummary.of_runs(N, D, PRESETS[name]().supervised).to_dict()}
        if name == "epoch2024":
            entry["bootstrap"] = epoch_bootstrap(N, D, loss)
        out["presets"][name] = entry
    busbridge = PRESETS["busbridge2025"]()
    r = PUBLISHED_RANGES["busbridge2025"]
    half = BUSBRIDGE_STATED * HALF_NORMAL
    stated = {"half_width": half, "level": LEVEL, "source": (
        f"its authors' stated fit error, about {BUSBRIDGE_STATED:.0%} relative (read as the mean |error|: "
        f"{half:.2%} at 90%)")}
    teacher_losses = busbridge.supervised.predict(np.array([r.params[0], 7.75e9]), np.array([20 * r.params[0], 512e9]))
    out["presets"]["busbridge2025"] = {
        "stated": stated,
        "coefficients": "the bootstrap intervals of Busbridge et al. 2025's Table 6 are not shipped with distillscale",
        "summary": {"params_max": r.params[1], "params_min": r.params[0], "tokens_max": r.tokens[1],
                    "sizes": 10, "runs": 73, "log_ratio_median": math.log(20.0),
                    "alpha": busbridge.supervised.alpha * busbridge.supervised.gamma,
                    "beta": busbridge.supervised.beta * busbridge.supervised.gamma},
        # The distillation law's teachers: from the smallest model at 20 tokens per parameter to the
        # 7.75B teacher of 512B tokens (their strongest), as teacher strength 1 / L_T.
        "distillation": {"half_width": half, "level": LEVEL, "source": stated["source"],
                         "teacher_strength": [1.0 / float(teacher_losses[0]), 1.0 / float(teacher_losses[1])]},
    }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {FILE}")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    args = parser.parse_args(argv)
    out = build(args.date)
    for name, entry in out["presets"].items():
        boot = entry.get("bootstrap")
        print(f"{name}: {entry['stated']['half_width']:.2%} at 90% inside the runs; "
              f"{'bootstrap of ' + str(boot['resamples']) + ' resamples' if boot else entry['coefficients']}")
        if boot:
            print(f"  this fit: {boot['fitted']}")
    if args.write:
        tmp = FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        tmp.replace(FILE)
        print(f"written {FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
