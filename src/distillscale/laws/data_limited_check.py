"""The data-limited law's fit checked left out a corpus at a time: each corpus's runs predicted by the
constants fitted on the others (`laws.data_limited_fit.fit_law`), through the form's own predictions, with
the interval the product prints (the constants' draws and the residual, `laws.data_limited_form`); later
generations against both naive rules (each as the measured generation 1; as the model trained alone),
coverage of each kind, and the sign of Delta against the seeds trained alone where it is clear."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from distillscale.errors import UserError
from distillscale.laws.data_limited_fit import (DataLimitedFit, chain_prediction, ensemble_prediction,
                                                ensemble_student_prediction, fit_law, student_prediction)
from distillscale.laws.data_limited_form import SHARE_NAMES, Z90, quadrature, spread
from distillscale.laws.data_limited_runs import Group, MeasuredRun, Observations, observations


@dataclass(frozen=True)
class Check:
    """One left-out prediction: what, where, the measured and predicted loss (nats/token) with the 90%
    interval, and Delta against the cell's seeds trained alone (measured, predicted), their spread."""

    kind: str            # generation g, larger's student, ensemble of k, its student
    group: Group
    measured: float
    predicted: float
    low: float
    high: float
    alone_mean: float
    alone_sd: float | None
    generation: int | None = None
    members: int | None = None
    naive_first: float | None = None    # a later generation predicted as the measured generation 1
    naive_alone: float | None = None    # ... as the model trained alone (generation 0)

    @property
    def covered(self) -> bool:
        return self.low <= self.measured <= self.high

    @property
    def error(self) -> float:
        return abs(self.predicted - self.measured) / self.measured

    @property
    def measured_delta(self) -> float:
        return self.measured - self.alone_mean

    @property
    def predicted_delta(self) -> float:
        return self.predicted - self.alone_mean

    @property
    def clear(self) -> bool:
        """Whether the measured Delta exceeds two seeds' standard deviations."""
        return self.alone_sd is not None and abs(self.measured_delta) > 2 * self.alone_sd

    @property
    def sign_right(self) -> bool:
        return np.sign(self.measured_delta) == np.sign(self.predicted_delta)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "corpus": self.group[0], "size": self.group[1], "pool": self.group[2],
                "generation": self.generation, "members": self.members, "measured": self.measured,
                "predicted": self.predicted, "interval": [self.low, self.high], "covered": self.covered,
                "error": self.error, "measured_delta": self.measured_delta, "predicted_delta": self.predicted_delta,
                "alone_sd": self.alone_sd, "clear": self.clear, "sign_right": bool(self.sign_right),
                "naive_first": self.naive_first, "naive_alone": self.naive_alone}


def _interval(value: float, at_draws: np.ndarray, residual_sd: float, level: float) -> tuple[float, float]:
    """`value`'s interval: the draws' spread and the residual, combined (`laws.data_limited_form`)."""
    below, above = spread(at_draws, value, level)
    half = Z90 * residual_sd
    return value - float(quadrature(below, half)), value + float(quadrature(above, half))


def predict_cell(obs: Observations, law: DataLimitedFit, corpus: str) -> list[Check]:
    """Every prediction `law` makes of `corpus`'s runs from its runs trained alone and its fresh twins: each
    chain's generations, each larger teacher's student, each ensemble's own loss and its student's."""
    draws, shares, rho, level = law.draw_shares(), law.fit.shares, law.fit.rho, law.level
    rhos = law.draws[:, len(SHARE_NAMES)]
    summary = {c.group: c for c in obs.cells}
    checks = []
    for cell in (c for c in obs.chains if c.corpus == corpus):
        alone = summary[cell.group]
        predicted = chain_prediction(cell, shares, rho)
        at_draws = chain_prediction(cell, draws, rhos)
        for g in range(1, len(cell.losses)):
            value = float(predicted[g - 1])
            low, high = _interval(value, at_draws[g - 1], law.residuals.at_generation(g) * cell.penalty, level)
            checks.append(Check(f"generation {g}", cell.group, cell.losses[g], value, low, high, alone.alone_mean,
                                alone.alone_sd, generation=g, naive_first=cell.losses[1] if g > 1 else None,
                                naive_alone=cell.losses[0] if g > 1 else None))
    for s in (s for s in obs.students if s.group[0] == corpus):
        alone = summary[s.group]
        value = float(student_prediction(s, shares))
        low, high = _interval(value, student_prediction(s, draws), law.residuals.student * s.own_penalty, level)
        checks.append(Check("larger teacher's student", s.group, s.L_S, value, low, high, alone.alone_mean,
                            alone.alone_sd))
    for e in (e for e in obs.ensembles if e.group[0] == corpus):
        alone = summary[e.group]
        value = float(ensemble_prediction(e, shares))
        low, high = _interval(value, ensemble_prediction(e, draws), law.residuals.ensemble * e.L_1, level)
        checks.append(Check(f"ensemble of {e.members}", e.group, e.L_k, value, low, high, alone.alone_mean,
                            alone.alone_sd, members=e.members))
        if e.student is None or e.one_member_student is None:
            continue
        # its student from the predicted ensemble (what a user has before training it)
        value = float(ensemble_student_prediction(e, shares, value))
        at_draws = ensemble_student_prediction(e, draws, ensemble_prediction(e, draws))
        sd = float(quadrature(law.residuals.ensemble_student, law.residuals.ensemble * shares.theta)) * e.L_1
        low, high = _interval(value, at_draws, sd, level)
        checks.append(Check(f"student of an ensemble of {e.members}", e.group, e.student, value, low, high,
                            alone.alone_mean, alone.alone_sd, members=e.members))
    return checks


@dataclass(frozen=True)
class LeftOutChecks:
    """Each corpus's runs predicted by the law fitted on the other corpora (`predict_cell`)."""

    checks: tuple[Check, ...]
    fits: dict[str, DataLimitedFit] = field(default_factory=dict)

    def of(self, kind: str) -> list[Check]:
        return [c for c in self.checks if c.kind.startswith(kind)]

    def later_generations(self) -> list[Check]:
        return [c for c in self.checks if c.generation is not None and c.generation > 1]

    def last_generations(self) -> list[Check]:
        last: dict[Group, Check] = {}
        for c in self.checks:
            if c.generation is not None and (c.group not in last or c.generation > last[c.group].generation):
                last[c.group] = c
        return list(last.values())

    def summary(self) -> dict:
        """Errors (relative, mean and worst) of generations 2..K against both naive rules; coverage of
        the first generation, the chain's last, the larger teacher's students, the ensembles and their
        students; signs where the measured Delta exceeds two seeds' standard deviations."""
        later = self.later_generations()

        def errors(rule):
            values = [abs(rule(c) - c.measured) / c.measured for c in later]
            return {"mean": float(np.mean(values)), "worst": float(np.max(values))} if values else None

        def coverage(checks):
            return {"covered": sum(c.covered for c in checks), "of": len(checks)}
        ks = sorted({c.members for c in self.checks if c.members})
        clear = [c for c in self.checks if c.clear]
        return {"later_generations": {"law": errors(lambda c: c.predicted), "as_generation_1": errors(lambda c: c.naive_first),
                                      "as_alone": errors(lambda c: c.naive_alone), "n": len(later)},
                "coverage": {"first_generation": coverage([c for c in self.checks if c.generation == 1]),
                             "last_generation": coverage(self.last_generations()),
                             "larger_teacher_student": coverage(self.of("larger")),
                             **{f"ensemble_of_{k}": coverage([c for c in self.of("ensemble") if c.members == k])
                                for k in ks},
                             **{f"student_of_ensemble_of_{k}": coverage([c for c in self.of("student of an ensemble")
                                                                         if c.members == k]) for k in ks},
                             "all": coverage(list(self.checks))},
                "signs": {"clear": len(clear), "right": int(sum(c.sign_right for c in clear))}}


def left_out(runs: Sequence[MeasuredRun], draws: int = 200, seed: int = 0,
             fallback: Shares | None = None) -> LeftOutChecks:
    """Each corpus left out: the law fitted on the others (`fit_law`, `draws` bootstrap draws) predicts its
    runs (`predict_cell`)."""
    obs = observations(runs)
    corpora = sorted({g[0] for g in obs.groups()})
    checks, fits = [], {}
    for corpus in corpora:
        kept = [r for r in runs if r.corpus != corpus]
        try:
            fits[corpus] = fit_law(kept, draws, seed, fallback=fallback)
        except UserError:
            continue
        checks += predict_cell(obs, fits[corpus], corpus)
    return LeftOutChecks(tuple(checks), fits)
