"""What a fit by selection returns and what it chose among: `LawFit` (the chosen law, why, and the
candidates' backtests), `SupervisedCandidate` (one way to fit the supervised law: form, E, runs, N
column), the distillation candidates, and each candidate's `CandidateScore`. `laws.selection` makes
them; `laws.repetition_fit` refits a chosen candidate with repetition.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from distillscale.data.loss_identity import LossIdentity
from distillscale.laws.backtest import Backtest
from distillscale.laws.fitting import DistillationLawFitter, SupervisedLawFitter
from distillscale.laws.objective import ExponentPrior
from distillscale.laws.forms import DistillationLaw, SupervisedLaw
from distillscale.laws.interaction import INTERACTION_FORMS, N_PARAMETERS
from distillscale.laws.lawset import ComputeSettings, LawSet, check_path_argument
from distillscale.laws.logspace import SUPERVISED_FORMS
from distillscale.laws.record import FitRecord
from distillscale.laws.uncertainty import ExtrapolationError, Prediction

AUTO_SUPERVISED = ("tied", "chinchilla", "busbridge")
# form="auto": the median of these forms' predictions, refitted into one law (`laws.ensemble`).
MEDIAN = "median"


@dataclass(frozen=True)
class SupervisedCandidate:
    """One way to fit the supervised law: a form, what it assumes of E, which runs, which N."""

    form: str
    irreducible_loss: float | None = None
    irreducible_loss_prior: tuple[float, float] | None = None
    min_tokens_per_param: float | None = None
    params: str = "non-embedding"   # or "total"
    exponent_prior: ExponentPrior | None = None

    @property
    def name(self) -> str:
        parts = [f"median of {', '.join(AUTO_SUPERVISED)}" if self.form == MEDIAN else self.form]
        if self.irreducible_loss is not None:
            parts.append(f"E = {self.irreducible_loss:g}")
        if self.irreducible_loss_prior is not None:
            parts.append("E ~ N({:g}, {:g})".format(*self.irreducible_loss_prior))
        if self.min_tokens_per_param is not None:
            parts.append(f"D/N >= {self.min_tokens_per_param:g}")
        if self.params != "non-embedding":
            parts.append(f"{self.params} params")
        if self.exponent_prior is not None:
            parts.append(self.exponent_prior.description)
        return ", ".join(parts)

    @property
    def n_parameters(self) -> int:
        form = "busbridge" if self.form == MEDIAN else self.form  # the median is refitted in the busbridge form
        count = N_PARAMETERS[form] if form in INTERACTION_FORMS else len(SUPERVISED_FORMS[form].parameters)
        return count - (self.irreducible_loss is not None)

    def members(self) -> list["SupervisedCandidate"]:
        """The forms whose median this candidate is (itself for a single form)."""
        if self.form != MEDIAN:
            return [self]
        return [replace(self, form=f) for f in AUTO_SUPERVISED]


@dataclass(frozen=True)
class CandidateScore:
    """A candidate's backtest: its score (mean |relative error| by distance band, see
    `Backtest.score`), or why it has none."""

    name: str
    n_parameters: int
    backtest: Backtest | None
    score: float | None
    note: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "n_parameters": self.n_parameters, "score": self.score,
                "note": self.note,
                "bands": [{"label": b.label, "n": b.n, "mean_abs_error": b.mean_abs_error,
                           "worst_error": b.worst_error} for b in (self.backtest.bands() if self.backtest else [])]}


@dataclass
class LawFit:
    """The outcome of `fit_supervised` / `fit_distillation`: the chosen law (its fit record,
    `law.fit`, holds the selection, backtest and extrapolation error, so a saved law keeps them),
    the candidates and why the winner won."""

    law: SupervisedLaw | DistillationLaw
    fitter: SupervisedLawFitter | DistillationLawFitter
    chosen: str
    reason: str
    candidates: list[CandidateScore]
    backtest: Backtest | None
    extrapolation_error: ExtrapolationError | None
    rows: np.ndarray = field(repr=False)   # the runs the chosen law was fitted on
    repetition_record: dict | None = None  # with unique tokens: the data-constrained candidate's errors
    candidate: "SupervisedCandidate | DistillationCandidate | None" = None  # the one chosen

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        return self.fitter.intervals_

    @property
    def not_identified(self) -> dict[str, str]:
        return self.fitter.not_identified_

    @property
    def record(self) -> FitRecord:
        return self.law.fit

    @property
    def warnings(self) -> list[str]:
        """What to know before using the fit (`fit` prints these): coefficients the runs do not pin
        down, no backtest, intervals from few bootstrap resamples or that miss their estimate."""
        from distillscale.laws.fitting import ROUGH_BELOW

        record, messages = self.record, []
        for name, why in record.not_identified.items():
            messages.append(f"{name} is not identified by these runs ({why}): its value is not an estimate")
        if not any(c.backtest is not None and c.backtest.held_out for c in self.candidates):
            messages.append(f"no extrapolation backtest ({self.reason})")
        resamples = self.fitter.bootstrap
        if 0 < resamples < ROUGH_BELOW:
            messages.append(f"the {record.level:.0%} intervals come from only {resamples} bootstrap resamples: "
                            f"rough; use {ROUGH_BELOW} or more (--bootstrap / bootstrap=) to rely on them")
        values = self.law.coefficients()
        missed = [name for name, (low, high) in record.intervals.items()
                  if name in values and name not in record.not_identified and not low <= values[name] <= high]
        if missed:
            messages.append(f"the {record.level:.0%} interval of {', '.join(missed)} does not contain the "
                            "estimate (the bootstrap fits land elsewhere): not a meaningful interval; "
                            "use more resamples or more runs")
        return messages

    def predict(self, *args) -> Prediction:
        """The law's prediction with its interval: `predict(N, D)` for a supervised law,
        `predict(N_S, D_S, L_T)` for a distillation law (floats or arrays)."""
        return self.law.prediction(*args)

    def laws(self, name: str = "fitted", source: str = "", losses: LossIdentity | None = None) -> LawSet:
        """The law as a law set (a distillation law with the student's supervised law), as plan reads it;
        `losses`: what the runs' losses are (`ds.loss_identity(tokenizer=..., text=...)`; None: not given)."""
        losses, compute = losses or LossIdentity(), ComputeSettings.of(losses)
        if isinstance(self.law, DistillationLaw):
            return LawSet(name, self.law.student_law, self.law, compute, source=source, losses=losses)
        return LawSet(name, self.law, compute=compute, source=source, losses=losses)

    def save(self, path: str | Path, name: str | None = None, overwrite: bool = False,
             losses: LossIdentity | None = None) -> None:
        """Write the law with its fit record to law.json (atomically), for `distillscale ... --law`,
        recording what its losses are (`losses`; None: not given). An existing file is replaced only
        with `overwrite=True`, and only if it is a law file (never the table the law was fitted to)."""
        check_path_argument(path)
        source = (self.record.source or {}).get("file") if self.record is not None else None
        self.laws(name or Path(path).stem, source="fitted with distillscale", losses=losses).save(
            path, overwrite=overwrite, inputs=[source])


@dataclass(frozen=True)
class DistillationCandidate:
    name: str

    @property
    def n_parameters(self) -> int:
        return 7 if self.name == "tied" else 9
