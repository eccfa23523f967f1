"""The data-limited law's fit checked out of sample: each corpus's runs (or each student size's) predicted
by the constants fitted on the others (`laws.data_limited_fit.fit_law`), through the form's own
predictions, with the interval the product prints (`laws.data_limited_form.loss_interval`: the constants'
draws and the residual); later generations against both naive rules (each as its chain's measured
generation 1; as the run alone it was distilled from), each kind's error and coverage, the sign of Delta against
the seeds trained alone where it exceeds two seeds' standard deviations, and the cells whose gains do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from distillscale.errors import UserError
from distillscale.laws.data_limited_fit import (DataLimitedFit, chain_prediction, ensemble_prediction,
                                                ensemble_student_prediction, fit_law, student_prediction)
from distillscale.laws.data_limited_form import SHARE_NAMES, Shares, loss_interval, quadrature
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
    naive_alone: float | None = None    # ... as the run alone its chain was distilled from (generation 0)
    chain: int | None = None            # which chain of its cell
    params: float | None = None         # the student's parameters, its pool's epochs and parameters per
    epochs: float | None = None         # unique token: where it lies against the fit's measured range
    params_per_unique_token: float | None = None

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

    @property
    def gain(self) -> bool:
        """Whether it measured a gain (a lower loss) against the seeds trained alone beyond two seeds' sds."""
        return self.clear and self.measured_delta < 0

    @property
    def half_width(self) -> float:
        """The interval's half-width on the measured side (what an error is scored against)."""
        return self.predicted - self.low if self.measured < self.predicted else self.high - self.predicted

    @property
    def interval_score(self) -> float:
        """The interval score of the central 90% interval (Gneiting & Raftery 2007; lower is better):
        its width plus 20 times how far the measured loss lies outside it (nats/token)."""
        alpha = 0.1
        return (self.high - self.low + (2 / alpha) * max(0.0, self.low - self.measured)
                + (2 / alpha) * max(0.0, self.measured - self.high))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "corpus": self.group[0], "size": self.group[1], "pool": self.group[2],
                "generation": self.generation, "chain": self.chain, "members": self.members,
                "alone_mean": self.alone_mean, "measured": self.measured,
                "predicted": self.predicted, "interval": [self.low, self.high], "covered": self.covered,
                "error": self.error, "measured_delta": self.measured_delta, "predicted_delta": self.predicted_delta,
                "alone_sd": self.alone_sd, "clear": self.clear, "sign_right": bool(self.sign_right),
                "naive_first": self.naive_first, "naive_alone": self.naive_alone, "params": self.params,
                "epochs": self.epochs, "params_per_unique_token": self.params_per_unique_token}


def predict_cell(obs: Observations, law: DataLimitedFit, keep: Callable[[Group], bool]) -> list[Check]:
    """Every prediction `law` makes of the runs of the cells `keep` takes, from their runs trained alone
    and their fresh twins: each chain's generations, each larger teacher's student, each ensemble's own loss
    and its student's; each with the interval the product prints (`laws.data_limited_form.loss_interval`:
    the constants' draws and the residual; the base is measured, so no law's own error)."""
    draws, shares, rho, level = law.draw_shares(), law.fit.shares, law.fit.rho, law.level
    rhos = law.draws[:, len(SHARE_NAMES)]
    summary = {c.group: c for c in obs.cells}
    checks = []

    def where(group: Group) -> dict:
        cell = summary[group]
        return {"params": cell.params, "epochs": cell.epochs,
                "params_per_unique_token": cell.params / cell.unique_tokens if cell.params else None}

    for cell in (c for c in obs.chains if keep(c.group)):
        alone = summary[cell.group]
        predicted = chain_prediction(cell, shares, rho)
        at_draws = chain_prediction(cell, draws, rhos)
        for g in range(1, len(cell.losses)):
            value = float(predicted[g - 1])
            low, high = loss_interval(value, at_draws[g - 1], law.residuals.at_generation(g) * cell.penalty, level)
            checks.append(Check(f"generation {g}", cell.group, cell.losses[g], value, low, high, alone.alone_mean,
                                alone.alone_sd, generation=g, naive_first=cell.losses[1] if g > 1 else None,
                                naive_alone=cell.losses[0] if g > 1 else None, chain=cell.chain,
                                **where(cell.group)))
    for s in (s for s in obs.students if keep(s.group)):
        alone = summary[s.group]
        value = float(student_prediction(s, shares))
        low, high = loss_interval(value, student_prediction(s, draws), law.residuals.student * s.own_penalty, level)
        checks.append(Check("larger teacher's student", s.group, s.L_S, value, low, high, alone.alone_mean,
                            alone.alone_sd, **where(s.group)))
    for e in (e for e in obs.ensembles if keep(e.group)):
        alone = summary[e.group]
        value = float(ensemble_prediction(e, shares))
        low, high = loss_interval(value, ensemble_prediction(e, draws), law.residuals.ensemble * e.L_1, level)
        checks.append(Check(f"ensemble of {e.members}", e.group, e.L_k, value, low, high, alone.alone_mean,
                            alone.alone_sd, members=e.members, **where(e.group)))
        if e.student is None or e.one_member_student is None:
            continue
        # its student from the predicted ensemble (what a user has before training it)
        value = float(ensemble_student_prediction(e, shares, value))
        at_draws = ensemble_student_prediction(e, draws, ensemble_prediction(e, draws))
        sd = float(quadrature(law.residuals.ensemble_student, law.residuals.ensemble * shares.theta)) * e.L_1
        low, high = loss_interval(value, at_draws, sd, level)
        checks.append(Check(f"student of an ensemble of {e.members}", e.group, e.student, value, low, high,
                            alone.alone_mean, alone.alone_sd, members=e.members, **where(e.group)))
    return checks


# The share of held-out runs a 90% interval should cover, at least and at most (a calibrated interval is
# neither too narrow nor much wider than its errors need).
COVERAGE_TARGET = (0.85, 0.97)


def coverage(checks: Sequence[Check]) -> dict:
    """How many of `checks` their interval covers, of how many, and whether that lies in COVERAGE_TARGET."""
    covered, n = sum(c.covered for c in checks), len(checks)
    low, high = COVERAGE_TARGET
    return {"covered": covered, "of": n, "share": covered / n if n else None,
            "in_target": bool(n and low <= covered / n <= high)}


def errors(values: Sequence[float]) -> dict | None:
    """Mean and worst of relative errors."""
    return {"mean": float(np.mean(values)), "worst": float(np.max(values)), "n": len(values)} if len(values) else None


@dataclass(frozen=True)
class LeftOutChecks:
    """The runs of each fold (a corpus, or a student size) predicted by the law fitted on the others
    (`predict_cell`); `by` names the folds."""

    checks: tuple[Check, ...]
    fits: dict[str, DataLimitedFit] = field(default_factory=dict)
    by: str = "corpus"

    def of(self, kind: str) -> list[Check]:
        return [c for c in self.checks if c.kind.startswith(kind)]

    def later_generations(self) -> list[Check]:
        return [c for c in self.checks if c.generation is not None and c.generation > 1]

    def last_generations(self) -> list[Check]:
        """Each chain's last generation (a cell's chains each)."""
        last: dict[tuple, Check] = {}
        for c in self.checks:
            key = (c.group, c.chain)
            if c.generation is not None and (key not in last or c.generation > last[key].generation):
                last[key] = c
        return list(last.values())

    def kinds(self) -> dict[str, list[Check]]:
        """The checks by what they predict: the first generation, the chain's last, every generation from
        the second, the larger teacher's students, each ensemble size and its students."""
        ks = sorted({c.members for c in self.checks if c.members})
        return {"first_generation": [c for c in self.checks if c.generation == 1],
                "last_generation": self.last_generations(),
                "later_generations": self.later_generations(),
                "larger_teacher_student": self.of("larger"),
                **{f"ensemble_of_{k}": [c for c in self.of("ensemble") if c.members == k] for k in ks},
                **{f"student_of_ensemble_of_{k}": [c for c in self.of("student of an ensemble") if c.members == k]
                   for k in ks},
                "all": list(self.checks)}

    def summary(self) -> dict:
        """Errors (relative, mean and worst) of generations 2..K against both naive rules (each as the
        measured generation 1 of its chain; as the run alone it was distilled from); each kind's error and
        coverage by its 90% interval; signs where the measured Delta exceeds two seeds' standard deviations;
        and the cells whose measured gains exceed them."""
        later = self.later_generations()

        def later_errors(rule):
            return errors([abs(rule(c) - c.measured) / c.measured for c in later])
        clear = [c for c in self.checks if c.clear]
        gains: dict[str, dict] = {}
        for c in self.checks:
            if not c.gain:
                continue
            cell = gains.setdefault("/".join(c.group), {"chains": {}, "ensembles": [], "students_of_ensembles": [],
                                                        "larger_teacher_student": False})
            if c.generation is not None:
                cell["chains"].setdefault(c.chain or 1, []).append(c.generation)
            elif c.kind.startswith("ensemble of"):
                cell["ensembles"].append(c.members)
            elif c.kind.startswith("student of an ensemble"):
                cell["students_of_ensembles"].append(c.members)
            else:
                cell["larger_teacher_student"] = True
        return {"later_generations": {"law": later_errors(lambda c: c.predicted),
                                      "as_generation_1": later_errors(lambda c: c.naive_first),
                                      "as_alone": later_errors(lambda c: c.naive_alone), "n": len(later)},
                "by_generation": {g: errors([c.error for c in self.checks if c.generation == g])
                                  for g in sorted({c.generation for c in self.checks if c.generation})},
                "errors": {kind: errors([c.error for c in checks]) for kind, checks in self.kinds().items()},
                "coverage": {kind: coverage(checks) for kind, checks in self.kinds().items()},
                "interval_score": {kind: float(np.mean([c.interval_score for c in checks])) if checks else None
                                   for kind, checks in self.kinds().items()},
                "signs": {"clear": len(clear), "right": int(sum(c.sign_right for c in clear))},
                "gains_beyond_2_seed_sds": gains}


FOLDS = {"corpus": 0, "size": 1}


def left_out(runs: Sequence[MeasuredRun], draws: int = 200, seed: int = 0, fallback: Shares | None = None,
             by: str = "corpus") -> LeftOutChecks:
    """Each corpus (`by="corpus"`) or student size (`by="size"`) left out: the law fitted on the others'
    runs (`fit_law`, `draws` bootstrap draws) predicts its runs (`predict_cell`)."""
    index = FOLDS[by]
    obs = observations(runs)
    folds = sorted({g[index] for g in obs.groups()})
    checks, fits = [], {}
    for fold in folds:
        kept = [r for r in runs if (r.corpus, r.size)[index] != fold]
        try:
            fits[fold] = fit_law(kept, draws, seed, fallback=fallback)
        except UserError:
            continue
        checks += predict_cell(obs, fits[fold], lambda group, fold=fold: group[index] == fold)
    return LeftOutChecks(tuple(checks), fits, by)
