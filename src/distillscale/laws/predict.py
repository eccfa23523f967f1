"""What loss will a model reach under a law: `distillscale predict` as a library call.

    loss = predict_supervised(laws, params=546e6, tokens=10.92e9)
    loss.prediction.value, loss.prediction.low, loss.warnings
    student = predict_distillation(laws, student_params=546e6, student_tokens=10.92e9, teacher_loss=2.0)
    student.difference.verdict, student.distilled_minus_alone, student.capacity_gap_ratio

Each result carries the warnings `plan` gives too: a quantity far outside the runs behind the law.
"""

from __future__ import annotations

from dataclasses import dataclass


from distillscale.errors import ParameterError, UserError
from distillscale.laws.data_limited import DataLimitedConstants, DataLimitedLaw, ModelState
from distillscale.laws.difference import LossDifference, decide, used_interval
from distillscale.laws.extrapolation import (check_losses, check_pool, extrapolation_warnings, marked,
                                            smaller_teacher_warning, teacher_loss_note)
from distillscale.laws.lawset import LawSet
from distillscale.laws.repetition import (DEFAULT_MAX_PENALTY, FAR_EPOCHS_FACTOR, RepetitionAssessment, assess,
                                          fitted_epochs, pooled_loss, pooled_prediction)
from distillscale.laws.uncertainty import Prediction
from distillscale.units import Quantity, check_parameter, format_quantity


def _interval_record(prediction: Prediction) -> dict:
    """JSON keys of a prediction's interval and its parts; none for a law fitted without one."""
    if not prediction.has_interval:
        return {}
    record = prediction.to_dict()
    return {"interval": record["interval"], "level": record["level"],
            "noise_half_width": record["noise_half_width"],
            "extrapolation_half_width": record["extrapolation_half_width"],
            "distance_beyond_runs": record["distance"], "beyond_backtest": record["beyond_backtest"],
            "interval_dominated_by": record["dominant"], "interval_scale": record["pairs_scale"]}


def _positive(param: str, value: float, kind: Quantity | None) -> float:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 < value < float("inf")):
        raise ParameterError(param, "{} must be a positive finite number, got {value!r}", value=value)
    return check_parameter(float(value), param, kind=kind)  # inside the limits of what it counts


@dataclass(frozen=True)
class SupervisedLossPrediction:
    law: str
    params: float
    tokens: float
    prediction: Prediction
    warnings: list[str]
    repetition: RepetitionAssessment | None = None   # with unique tokens: epochs and penalty

    def to_dict(self) -> dict:
        out = {"law": self.law, "params": self.params, "tokens": self.tokens, "loss": self.prediction.value,
               **_interval_record(self.prediction), "warnings": list(self.warnings)}
        if self.repetition is not None:
            out["repetition"] = self.repetition.to_dict()
        return out


@dataclass(frozen=True)
class DataLimitedStates:
    """A student and its teacher under the data-limited law: each one's loss on its pool and with
    fresh data; the student's loss inherits `constants.kappa` of the teacher's penalty (`inherited`)."""

    teacher: ModelState
    student: ModelState
    constants: DataLimitedConstants
    size_penalty: float = 0.0   # P_S: what the student's size pays trained alone on its pool
    alone: ModelState | None = None   # the same student trained alone on its pool: what Delta is against

    @property
    def inherited(self) -> float:
        """kappa (L_T - F_T): the part of the teacher's repetition penalty in the student's loss."""
        return self.constants.kappa.value * self.teacher.penalty

    @property
    def own(self) -> float:
        """lambda P_S: the student's own repetition penalty in its loss."""
        return self.constants.lam.value * self.size_penalty

    def to_dict(self) -> dict:
        return {"teacher": self.teacher.to_dict(), "student": self.student.to_dict(), "inherited": self.inherited,
                "own": self.own, "size_penalty": self.size_penalty,
                "constants": self.constants.to_dict() | {"draws": None}}


@dataclass(frozen=True)
class DistilledLossPrediction:
    """A distilled student's loss beside the loss it would reach without a teacher."""

    law: str
    student_params: float
    student_tokens: float
    teacher_loss: float
    prediction: Prediction
    supervised_loss: float     # Ltilde_S: the same student trained on the same tokens, no teacher
    d1: float                  # where the capacity gap sets in, on the L_T / Ltilde_S scale
    warnings: list[str]
    supervised: Prediction | None = None   # Ltilde_S with its interval
    # With a pool of unique tokens (`unique_tokens`): the student's check (its own decay of repeated
    # tokens, a distilled student's), and the same student's trained alone (Ltilde_S's, already in
    # `supervised_loss`); with a teacher given by its size and tokens trained on a pool (the student's
    # unless `teacher_unique_tokens`), the teacher's check (`teacher_loss` is then after repeating).
    repetition: RepetitionAssessment | None = None
    supervised_repetition: RepetitionAssessment | None = None
    teacher_repetition: RepetitionAssessment | None = None
    teacher_measured: bool = False   # the teacher given by its loss: kept as given, whatever the pools
    # With a pool: the data-limited law's states of the teacher and the student (each loss on its
    # pool and with fresh data) and its constants (`laws.data_limited`); `prediction` is the student's.
    data_limited: DataLimitedStates | None = None

    @property
    def pools(self) -> dict[str, dict]:
        """Which pool of unique tokens each model reads and how many times (epochs): the student, the
        student trained alone, and the teacher (a measured teacher: its loss as given); empty on fresh
        data."""
        if self.repetition is None and self.teacher_repetition is None and not self.teacher_measured:
            return {}
        out = {name: {"unique_tokens": check.unique_tokens, "tokens": check.tokens, "epochs": check.epochs}
               for name, check in (("student", self.repetition), ("student_alone", self.supervised_repetition),
                                   ("teacher", self.teacher_repetition)) if check is not None}
        if self.teacher_measured:
            teacher = None if self.data_limited is None else self.data_limited.teacher
            out["teacher"] = {"measured": True} if teacher is None or teacher.unique_tokens is None else {
                "measured": True, "unique_tokens": teacher.unique_tokens, "tokens": teacher.tokens,
                "epochs": teacher.epochs}
        return out

    @property
    def difference(self) -> LossDifference:
        """Delta = the distilled loss - Ltilde_S with its interval (`laws.difference`): what says
        whether distillation helps."""
        if self.data_limited is not None and self.data_limited.alone is not None:   # on a pool: the data-limited law's
            from distillscale.laws.data_limited import difference

            return difference(self.data_limited.student, self.data_limited.alone)
        return decide(float(self.prediction.value), self.prediction, self.supervised_loss, self.supervised)

    @property
    def distilled_minus_alone(self) -> float:
        """Delta (nats/token): the distilled loss minus the supervised one, negative when distillation helps."""
        return float(self.prediction.value) - self.supervised_loss

    @property
    def helps(self) -> bool:
        """Whether distillation helps: Delta's interval lies below 0 (the verdict "distill")."""
        return self.difference.verdict == "distill"

    @property
    def capacity_gap_ratio(self) -> float:
        return self.teacher_loss / self.supervised_loss

    def to_dict(self) -> dict:
        return {"law": self.law, "student_params": self.student_params, "student_tokens": self.student_tokens,
                "teacher_loss": self.teacher_loss, "student_loss": self.prediction.value,
                **_interval_record(self.prediction), "student_supervised_loss": self.supervised_loss,
                "capacity_gap_ratio": self.capacity_gap_ratio, "d1": self.d1, "verdict": self.difference.verdict,
                **self.difference.to_dict(), "warnings": list(self.warnings), **self._pool_record()}

    def _pool_record(self) -> dict:
        """The pools and each check (none on fresh data: the record is then as it always was)."""
        if not self.pools:
            return {}
        return {"pools": self.pools, **({} if self.data_limited is None else {"data_limited": self.data_limited.to_dict()}), "repetition": {name: check.to_dict() for name, check in (
            ("student", self.repetition), ("student_alone", self.supervised_repetition),
            ("teacher", self.teacher_repetition)) if check is not None}}


# What a prediction no better than a uniform guess asks for (`laws.extrapolation.check_losses`).
GUESS_FIX = "predict for models and tokens nearer the law's runs"


def predict_supervised(laws: LawSet, params: float, tokens: float, unique_tokens: float | None = None,
                       max_penalty: float = DEFAULT_MAX_PENALTY) -> SupervisedLossPrediction:
    """L(N, D) with its interval: N non-embedding parameters, D training tokens. With
    `unique_tokens` U < D the data repeats: the loss is the data-constrained law's (`laws.repetition`,
    the law's R_D* or Muennighoff et al.'s), its interval the fresh-data one shifted by the same
    factor and widened to the losses at the ends of R_D*'s interval, and `repetition` says the epochs, the penalty and the unique data that keeps it within
    `max_penalty`."""
    N, D = _positive("params", params, Quantity.PARAMS), _positive("tokens", tokens, Quantity.TOKENS)
    law = laws.require_supervised()
    warnings = extrapolation_warnings(laws, {"the model": N}, {"the model": D}, {"the model": D / N})
    prediction = law.prediction(N, D)
    repetition = None
    if unique_tokens is not None:
        U = _positive("unique_tokens", unique_tokens, Quantity.TOKENS)
        check_pool(laws, "unique_tokens", U)
        if not 0 < max_penalty < 1:
            raise ParameterError("max_penalty", f"{{}} must be a fraction between 0 and 1, got {max_penalty}")
        repetition = assess(law, N, D, U, max_penalty)
        warnings += extrapolation_warnings(laws, {}, {"the model's tokens as fresh data (D' after repetition)":
                                                      repetition.effective_tokens})
        prediction = pooled_prediction(law, prediction, N, D, U, repetition.repetition)
        warnings += _published_constants(laws, law, repetition)
        fitted = fitted_epochs(law.repetition)
        if fitted and repetition.epochs > FAR_EPOCHS_FACTOR * fitted:
            warnings.append(f"the data repeats {repetition.epochs:.3g} times, more than {FAR_EPOCHS_FACTOR:g}x the "
                            f"most epochs of the runs the law's repetition was fitted on ({fitted:.3g}): on "
                            "published runs, predictions that far missed by 12-19% on average whatever the form "
                            "(docs/repetition.md); measure a few runs that repeat this much rather than extrapolate")
        if repetition.epochs > 1 and not repetition.within:
            warnings.append(f"the data repeats {repetition.epochs:.3g} times: the loss is {repetition.penalty:.2%} "
                            f"above fresh data; {format_quantity(repetition.unique_tokens_needed)} unique tokens keep it within "
                            f"{max_penalty:.1%}")
    check_losses(laws, {"the predicted loss": prediction.value}, GUESS_FIX)
    return SupervisedLossPrediction(laws.name, N, D, prediction, warnings, repetition)


def predict_distillation(laws: LawSet, student_params: float, student_tokens: float, *,
                         teacher_loss: float | None = None, teacher_params: float | None = None,
                         teacher_tokens: float | None = None, unique_tokens: float | None = None,
                         teacher_unique_tokens: float | None = None,
                         max_penalty: float = DEFAULT_MAX_PENALTY,
                         constants: DataLimitedConstants | None = None) -> DistilledLossPrediction:
    """L_S(N_S, D_S, L_T) with its interval, the teacher given by its loss (measured: kept as given)
    or by its size and pre-training tokens (its loss then from the law's supervised law). With
    `unique_tokens` U the student's D_S tokens are drawn from U unique ones (its loss and the loss
    trained alone carry the penalty of repeating them, each under its own decay); a teacher given by
    its size reads the same pool unless `teacher_unique_tokens` gives its own, and its loss is then
    `predict_supervised(laws, N_T, D_T, U_T)`'s (`laws.repetition.pooled_loss`). With a pool the
    student's loss is the data-limited law's (`laws.data_limited`: its loss as if its teacher had
    seen fresh data, plus `constants`' kappa of the teacher's repetition penalty; default constants:
    the shipped ones); on fresh data it is the distillation law's."""
    distillation = laws.require_distillation()
    N_S, D_S = (_positive("student_params", student_params, Quantity.PARAMS),
                _positive("student_tokens", student_tokens, Quantity.TOKENS))
    U_S = None if unique_tokens is None else _positive("unique_tokens", unique_tokens, Quantity.TOKENS)
    U_T = None if teacher_unique_tokens is None else _positive("teacher_unique_tokens", teacher_unique_tokens,
                                                                Quantity.TOKENS)
    for field, pool in (("unique_tokens", U_S), ("teacher_unique_tokens", U_T)):
        check_pool(laws, field, pool)
    if not 0 < max_penalty < 1:
        raise ParameterError("max_penalty", f"{{}} must be a fraction between 0 and 1, got {max_penalty}")
    law, warnings, teacher_check = distillation.student_law, [], None
    data_limited = DataLimitedLaw(laws, constants)
    teacher_state = None   # a teacher trained on a pool, under the data-limited law
    if teacher_loss is not None:
        # a measured teacher whose pool is known: its size, tokens and pool with its loss
        pooled = teacher_params is not None and teacher_tokens is not None and U_T is not None
        if (teacher_params is not None or teacher_tokens is not None) and not pooled:
            raise ParameterError(("teacher_loss", "teacher_params", "teacher_tokens"),
                                 "give either {} or {} with {}, not both")
        if U_T is not None and not pooled:
            raise ParameterError(("teacher_unique_tokens", "teacher_loss", "teacher_params", "teacher_tokens"),
                                 "{} is the pool a teacher given by its size and tokens was trained on; a teacher "
                                 "given by {} keeps its measured loss: leave one out, or give {} and {} too (its "
                                 "loss with fresh data is then its measured loss less its pool's penalty)")
        L_T = _positive("teacher_loss", teacher_loss, None)
        try:  # the law's own check, its message naming the parameter
            laws.check_teacher_loss(L_T, flag=ParameterError.NAME)
        except UserError as exc:
            raise ParameterError.about("teacher_loss", str(exc)) from None
        warnings.append(teacher_loss_note(laws, L_T, flag="the teacher loss"))
        if pooled:   # the data-limited law's measured teacher: F_T = L_T less the pool's penalty at its run
            N_T, D_T = (_positive("teacher_params", teacher_params, Quantity.PARAMS),
                        _positive("teacher_tokens", teacher_tokens, Quantity.TOKENS))
            teacher_state = data_limited.measured_teacher(L_T, N_T, D_T, U_T)
            fresh, E = float(teacher_state.fresh.value), law.E
            if not fresh > E:   # the pool's penalty alone is more than the loss measured above E
                raise ParameterError(("teacher_loss", "teacher_unique_tokens", "teacher_params", "teacher_tokens"),
                                     f"{{}} {L_T:g} is below what repeating {{}} {format_quantity(U_T)} costs a teacher "
                                     f"of {{}} {format_quantity(N_T)} on {{}} {format_quantity(D_T)} under law "
                                     f"{laws.name!r} ({L_T - fresh:+.4f} nats/token): its loss with fresh data would be "
                                     f"{fresh:.4f}, not above the law's E = {E:.4f}; check the teacher's loss, pool, "
                                     "size and tokens")
    elif teacher_params is not None and teacher_tokens is not None:
        N_T, D_T = (_positive("teacher_params", teacher_params, Quantity.PARAMS),
                    _positive("teacher_tokens", teacher_tokens, Quantity.TOKENS))
        warnings += extrapolation_warnings(laws, {"the teacher": N_T}, {"the teacher": D_T},
                                           {"the teacher": D_T / N_T})
        L_T = law.predict(N_T, D_T)
        pool = U_T if U_T is not None else U_S
        if pool is not None:   # trained on a pool: the loss `predict supervised --unique-tokens` gives
            teacher_check = assess(law, N_T, D_T, pool, max_penalty)
            L_T = pooled_loss(law, N_T, D_T, pool, teacher_check.repetition)
            teacher_state = data_limited.alone(N_T, D_T, pool)
            warnings += _pool_warnings("the teacher", teacher_check) + _published_constants(laws, law, teacher_check)
        warnings += smaller_teacher_warning("the teacher", N_T, N_S)
    else:
        raise ParameterError(("teacher_loss", "teacher_params", "teacher_tokens"),
                             "the teacher is missing: give {} L, or {} N with {} D")
    warnings += extrapolation_warnings(laws, {"the student": N_S}, {"the student": D_S},
                                       {"the student": D_S / N_S}, students=True)
    # each loss with the interval its verdict's Δ is built from (`laws.difference.used_interval`)
    prediction = used_interval(marked(distillation.prediction(N_S, D_S, L_T), laws, N_S, D_S, students=True),
                               "distilled")
    alone = used_interval(marked(distillation.student_law.prediction(N_S, D_S), laws, N_S, D_S), "alone")
    student_check = alone_check = states = None
    if U_S is not None or teacher_state is not None:   # a pool: the data-limited law's student
        teacher_state = teacher_state or data_limited.measured_teacher(float(L_T))
        states = DataLimitedStates(teacher_state, data_limited.student(N_S, D_S, U_S, teacher_state),
                                   data_limited.constants, data_limited.alone_penalty(N_S, D_S, U_S),
                                   data_limited.alone(N_S, D_S, U_S))
        prediction = states.student.loss
    if U_S is not None:   # the student's tokens drawn from the pool: its own penalty the data-limited law's (lam)
        student_check = data_limited.own_check(N_S, D_S, U_S, max_penalty, float(states.student.fresh.value))
        alone_check = assess(law, N_S, D_S, U_S, max_penalty)
        alone = pooled_prediction(law, alone, N_S, D_S, U_S, alone_check.repetition)
        warnings += (_pool_warnings("the student", student_check) + _pool_warnings("the student trained alone", alone_check)
                     + _published_constants(laws, law, alone_check))
    supervised = float(alone.value)
    check_losses(laws, {"the teacher's loss": float(L_T), "the predicted student loss": prediction.value,
                        "the student's loss without a teacher": supervised}, GUESS_FIX)
    return DistilledLossPrediction(laws.name, N_S, D_S, float(L_T) if teacher_check is not None else L_T, prediction,
                                   supervised, distillation.d1, list(dict.fromkeys(warnings)), alone if alone.has_interval else None,
                                   student_check, alone_check, teacher_check,
                                   teacher_measured=teacher_loss is not None and (U_S is not None or U_T is not None),
                                   data_limited=states)


def predict_data_limited(laws: LawSet, student_params: float, student_tokens: float, unique_tokens: float, *,
                         generations: int | None = None, members: int | None = None,
                         constants: DataLimitedConstants | None = None):
    """At fixed tokens per model (`laws.data_limited.DataLimitedLaw.at_fixed_tokens`): a chain of `generations`
    and ensembles of up to `members` models of `student_params` each trained on `student_tokens` of a pool of
    `unique_tokens`, every loss and Delta against the model trained alone with its interval, where another
    generation (member) stops paying by the verdict rule, and the FLOPs (6N per token trained, 2N per token a
    teacher reads)."""
    N, D = (_positive("student_params", student_params, Quantity.PARAMS),
            _positive("student_tokens", student_tokens, Quantity.TOKENS))
    U = _positive("unique_tokens", unique_tokens, Quantity.TOKENS)
    for name, value, least in (("generations", generations, 1), ("members", members, 2)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ParameterError(name, f"{{}} must be a whole number of at least {least}, got {value!r}")
    return DataLimitedLaw(laws, constants).at_fixed_tokens(N, D, U, generations, members)


def _published_constants(laws: LawSet, law, check: RepetitionAssessment) -> list[str]:
    """A law without repetition constants of its own repeats under Muennighoff et al.'s: said once."""
    if law.repetition is not None or check.epochs <= 1 or check.repetition.R_N_star is None:
        return []
    return [f"law {laws.name!r} has no repetition constants of its own (fit it with --unique-tokens-col on runs that "
            f"repeat data): using Muennighoff et al. 2023's R_D* = {check.repetition.R_D_star:.3g}, "
            f"R_N* = {check.repetition.R_N_star:.3g}"]


def _pool_warnings(who: str, check: RepetitionAssessment) -> list[str]:
    """A model that repeats its pool past the penalty allowed, in one line."""
    if check.epochs <= 1 or check.within:
        return []
    return [f"{who} repeats its {format_quantity(check.unique_tokens)} unique tokens {check.epochs:.3g} times: its "
            f"loss is {check.penalty:.2%} above fresh data; {format_quantity(check.unique_tokens_needed)} unique "
            f"tokens keep it within {check.max_penalty:.1%}"]
