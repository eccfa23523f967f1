"""The presets' intervals and data ranges: what each published law says of its own error, and where
its runs lie.

A preset's interval is its coefficients' uncertainty (the published bootstrap, where one can be had:
Epoch's, reproduced on the same runs) propagated to the prediction, plus the law's own error inside
its runs (`pack_interval.StatedError`: its error on its runs, or its authors' stated fit error),
widened beyond the runs as the calibration on the published ladders says errors grow with distance
(`pack_interval.CalibratedInterval`). A preset with no published coefficient interval says so
(`coefficients_note`). The numbers are made by bench/laws/preset_intervals.py (preset_error.json records the
command and date).

    preset_record("epoch2024")                 # the FitRecord its supervised law carries
    distillation_record("busbridge2025")       # the distillation law's, or None
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from distillscale.laws.crossladder import FitSummary
from distillscale.laws.pack_interval import CalibratedInterval, StatedError, shipped_interval
from distillscale.laws.record import Bootstrap, DataRange, FitRecord
from distillscale.laws.uncertainty import ExtrapolationError

FILE = Path(__file__).resolve().parent / "preset_error.json"
LEVEL = 0.9

PUBLISHED_RANGES = {
    # Busbridge et al. 2025: models 143M..12.6B, teachers up to 512B tokens. Students: fixed-M
    # protocols at 20..320 tokens per parameter and IsoFLOP profiles reaching from about 1 to a
    # few thousand; the bounds below are that rough span, not an exact record of their runs.
    "busbridge2025": DataRange(params=(143e6, 12.6e9), tokens=(2.86e9, 1e12),
                               tokens_per_param=(1.0, 5000.0)),
    # Hoffmann et al. 2022: 70M..16B parameters, 5B..500B tokens (Epoch refit the same runs);
    # D/N spans 0.04..340 in Epoch's extraction of their Fig. 4.
    "chinchilla2022": DataRange(params=(70e6, 16e9), tokens=(5e9, 500e9),
                                tokens_per_param=(0.04, 340.0)),
    "epoch2024": DataRange(params=(70e6, 16e9), tokens=(5e9, 500e9),
                           tokens_per_param=(0.04, 340.0)),
}


@lru_cache(maxsize=1)
def _entries() -> dict:
    """The presets' entries of preset_error.json ({} before bench/laws/preset_intervals.py first wrote it)."""
    return json.loads(FILE.read_text())["presets"] if FILE.exists() else {}


def coefficients_note(name: str) -> str | None:
    """What a preset has of its coefficients' uncertainty, in words (None for no preset of that name)."""
    entry = _entries().get(name)
    return None if entry is None else entry["coefficients"]


def preset_record(name: str) -> FitRecord | None:
    """The fit record a preset's supervised law carries: its interval (see the module), its data range
    and its runs; None for a name without one."""
    entry, model = _entries().get(name), shipped_interval()
    if entry is None or model is None:
        return None
    boot = entry.get("bootstrap")
    bootstrap = None if boot is None else Bootstrap(**{k: boot[k] for k in
                                                       ("resamples", "seed", "convergence", "coefficients", "samples")})
    interval = CalibratedInterval(model=model, summary=FitSummary(**entry["summary"]),
                                  stated=StatedError(**entry["stated"]))
    return FitRecord(form="chinchilla" if name != "busbridge2025" else "busbridge", n_runs=entry["summary"]["runs"],
                     data_range=PUBLISHED_RANGES[name], level=LEVEL, bootstrap=bootstrap, interval=interval,
                     source={"preset": name, "interval": f"distillscale/laws/{FILE.name}"})


def distillation_record(name: str) -> FitRecord | None:
    """The fit record a preset's distillation law carries: its stated error inside the teachers it
    was fitted on, growing beyond the strongest with the lever of `laws.uncertainty` (the pack holds
    no distillation ladders to calibrate the growth on); None for a preset without one."""
    entry = _entries().get(name, {}).get("distillation")
    if entry is None:
        return None
    weakest, strongest = entry["teacher_strength"]
    error = ExtrapolationError(level=entry["level"], q=entry["half_width"], n_points=0,
                               scale_name="teacher strength 1/L_T", fitted_min=weakest, fitted_max=strongest,
                               exact=False)
    return FitRecord(form="distillation", level=LEVEL, extrapolation_error=error,
                     data_range=PUBLISHED_RANGES[name],
                     source={"preset": name, "interval": f"distillscale/laws/{FILE.name}", "error": entry["source"]})
