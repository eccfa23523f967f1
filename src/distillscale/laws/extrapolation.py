"""Where a law can be trusted: the sizes, token counts and tokens per parameter of the runs behind it.

A fitted law records its data range in its fit record (`laws.record`, written by `laws.fitting`); for the
published presets the ranges below are read from the papers, roughly. The student-size sweep
searches inside the distillation law's range, and plans far outside a range say so.
"""

from __future__ import annotations

import math

import numpy as np

from distillscale.laws import LawSet
from distillscale.laws.preset_error import PUBLISHED_RANGES
from distillscale.laws.record import DataRange
from distillscale.laws.uncertainty import ExtrapolationError, Prediction
from distillscale.units import format_count, format_quantity

# How far beyond the data a quantity may go before the warning: a law extrapolates reasonably
# over a few-fold (Busbridge et al. report ~1% error from weaker to stronger models).
FAR_BEYOND = 10.0




def data_range(laws: LawSet, students: bool = False) -> DataRange | None:
    """The data range behind a law set: of its supervised runs (teachers, baselines), or with
    `students` of its distilled students (the distillation law's fit, else the supervised one).
    A preset without a recorded range gets its published one."""
    fits = [laws.supervised.fit if laws.supervised is not None else None]
    if students and laws.distillation is not None:
        fits.insert(0, laws.distillation.fit)
    for fit in fits:
        if fit is not None and fit.data_range is not None:
            return fit.data_range
    return PUBLISHED_RANGES.get(laws.name)


# The verdict (distil or not) where a loss lies farther than the backtest reached and the intervals
# overlap: `planning.results.verdict_difference`, the mode comparison, `predict distillation`.
CANNOT_TELL = "cannot tell at this distance"


def far_beyond(prediction: Prediction | None) -> bool:
    """Whether a loss lies beyond the runs and farther than the backtest reached (or no backtest
    measured any distance): its interval is itself an extrapolation."""
    return (prediction is not None and prediction.has_interval and prediction.beyond_backtest
            and prediction.distance is not None and float(np.max(prediction.distance)) > 1.0)


def backtest_reach(error: ExtrapolationError | None) -> float:
    """How far beyond the largest fitted scale (as a ratio, >= 1) the backtest behind an extrapolation
    error checked the law's predictions: 1 when none was measured. Beyond it, intervals are
    themselves extrapolated (`ExtrapolationError.beyond_reach`)."""
    if error is None or not error.measured or error.beyond_reach(1.0):
        return 1.0
    low, high = 0.0, math.log(1e12)
    if not error.beyond_reach(math.exp(high)):
        return math.exp(high)
    for _ in range(60):  # bisection in log distance
        middle = (low + high) / 2
        low, high = (middle, high) if not error.beyond_reach(math.exp(middle)) else (low, middle)
    return math.exp(low)


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio < 1e6 else f"{ratio:.1e}x"


def _times_short(ratio: float) -> str:
    return f"{ratio:.2g}x" if ratio < 10 else _times(ratio)


# What a quantity outside the data is, counted in a class's one line ("7 of the plan's sizes and tokens").
NOUNS = {"parameters": "sizes", "tokens": "tokens", "tokens per parameter": "tokens per parameter",
         "FLOPs": "budgets"}


class OutsideData(str):
    """One warning that a quantity lies outside a law's data: the message itself (a str, as every list
    of warnings holds it), with what puts warnings in one class (`group`: the law and what it makes an
    extrapolation), which side of the data (`side`: above or below) and how far (`ratio`, >= 1).
    `summary` says a class in one line."""

    def __new__(cls, message: str, law: str = "", side: str = "", ratio: float = 1.0, noun: str = "numbers",
                consequence: str = "extrapolations") -> "OutsideData":
        self = super().__new__(cls, message)
        self.law, self.side, self.ratio, self.noun, self.consequence = law, side, ratio, noun, consequence
        return self

    @property
    def group(self) -> tuple:
        return type(self).__name__, self.law, self.consequence

    @staticmethod
    def summary(members: list["OutsideData"], more: str = "--explain lists each") -> str:
        """Warnings of one class in one line: how many, what, which side of whose data, how far at most,
        and where each is said (`more`)."""
        first, nouns = members[0], list(dict.fromkeys(m.noun for m in members))
        nouns = ", ".join(nouns[:-1]) + " and " + nouns[-1] if len(nouns) > 1 else nouns[0]
        sides = " and ".join(dict.fromkeys(m.side for m in members))
        return (f"{len(members)} of the plan's {nouns} lie {sides} {first.law}'s data, up to "
                f"{_times_short(max(m.ratio for m in members))}: {first.consequence} ({more})")


def beyond_data(name: str, value: float, kind: str, low: float, high: float, law: str, what: str = "the prediction",
                far: bool = True) -> OutsideData:
    """The one wording of a quantity outside a law's data, for every law (the loss laws' warnings,
    a hyperparameter law's note): '{name} ({value} {kind}) is [far] above the largest ({edge}) in
    the data behind law {law}, {k}x beyond it: {what} is an extrapolation'."""
    side, edge = ("above the largest", high) if value > high else ("below the smallest", low)
    show = (lambda x: f"{x:.3g}") if kind == "FLOPs" else format_quantity   # FLOPs as 1e+21, counts as 546M
    ratio = max(value / edge, edge / value)
    return OutsideData(f"{name} ({show(value)} {kind}) is {'far ' if far else ''}{side} ({show(edge)}) in "
                       f"the data behind law {law!r}, {_times(ratio)} beyond it: {what} is an extrapolation",
                       law, side.split()[0], ratio, NOUNS.get(kind, kind),
                       "extrapolations" if what == "the prediction" else f"{what} extrapolated")


def extrapolation_warnings(laws: LawSet, params: dict[str, float | None],
                           tokens: dict[str, float | None],
                           tokens_per_param: dict[str, float | None] | None = None, *,
                           students: bool = False) -> list[OutsideData]:
    """One message per named quantity lying more than FAR_BEYOND times outside the data range
    (the students' range with `students`), saying how far; tokens per parameter below the range's
    by any factor (`fewer_tokens_per_param`)."""
    known = data_range(laws, students)
    if known is None:
        return []
    messages = []
    for kind, quantities, (low, high) in (
            ("parameters", params, known.params), ("tokens", tokens, known.tokens),
            ("tokens per parameter", tokens_per_param or {}, known.tokens_per_param)):
        for name, value in quantities.items():
            if value is not None and kind == "tokens per parameter" and value < low:
                messages.append(fewer_tokens_per_param(name, value, low, laws.name))
            elif value is not None and not low / FAR_BEYOND <= value <= high * FAR_BEYOND:
                messages.append(beyond_data(name, value, kind, low, high, laws.name))
    return messages


def fewer_tokens_per_param(name: str, value: float, low: float, law: str) -> OutsideData:
    """A target trained on fewer tokens per parameter than every run behind the law, by any factor
    (not only FAR_BEYOND): its loss is an extrapolation in D/N, which the interval (its distance is
    in model size) does not measure."""
    far = value < low / FAR_BEYOND
    outside = beyond_data(name, value, 'tokens per parameter', low, low, law, far=far)
    return OutsideData(f"{outside} in tokens per parameter: fewer than every run it was fitted on, a distance its "
                       "interval (which grows with model size beyond the runs) does not measure",
                       law, outside.side, outside.ratio, outside.noun, outside.consequence)


class UniformGuess(str):
    """One warning that a predicted loss is no better than a uniform guess over its law's vocabulary:
    the message (a str), with what puts such warnings in one class (`group`: the law) and `summary`,
    a class in one line."""

    def __new__(cls, message: str, law: str = "", name: str = "", uniform: float = 0.0) -> "UniformGuess":
        self = super().__new__(cls, message)
        self.law, self.name, self.uniform = law, name, uniform
        return self

    @property
    def group(self) -> tuple:
        return type(self).__name__, self.law

    @staticmethod
    def summary(members: list["UniformGuess"], more: str = "--explain lists each") -> str:
        first = members[0]
        return (f"{len(members)} of the plan's losses are not below {first.uniform:.4f} nats/token, a uniform guess "
                f"over the vocabulary of law {first.law!r}: predictions no better than a uniform guess (the law is "
                f"carried far outside its runs), whose intervals mean nothing ({more})")


def uniform_guess_warnings(laws: LawSet, losses: dict[str, float]) -> list[str]:
    """One message per named loss (nats/token) not below a uniform guess over the law's vocabulary
    (`LawSet.uniform_loss`): a prediction no better than a uniform guess, the law carried far outside
    its runs, where its interval says nothing."""
    uniform = laws.uniform_loss
    return [UniformGuess(f"{name} ({loss:.4f} nats/token) is not below {uniform:.4f} nats/token, a uniform guess over "
                         f"the {laws.compute.n_vocab:,}-token vocabulary of law {laws.name!r}: a prediction no better "
                         "than a uniform guess (the law is carried far outside its runs), and its interval means "
                         "nothing here", laws.name, name, uniform)
            for name, loss in losses.items() if loss is not None and float(loss) >= uniform]


def meaningless(laws: LawSet, loss: float, params: float | None = None, tokens: float | None = None, *,
                students: bool = False) -> str | None:
    """Why a predicted loss's interval means nothing, or None: the loss no better than a uniform guess
    over the law's vocabulary, or its model (`params`, `tokens`) more than FAR_BEYOND times outside the
    data behind the law (its students' with `students`) on a side its interval's distance does not
    measure: fewer parameters than the smallest run, or tokens per parameter on either side (the
    distance measures the size above the runs, and a model's tokens grow with its size). A verdict
    there cannot tell."""
    if loss is not None and float(loss) >= laws.uniform_loss:
        return f"a loss of {float(loss):.4f} nats/token is no better than a uniform guess ({laws.uniform_loss:.4f})"
    known = data_range(laws, students)
    if known is None:
        return None
    checks = []
    if params is not None:
        checks.append(("parameters", params, known.params[0], math.inf))
    if params is not None and tokens is not None:
        checks.append(("tokens per parameter", tokens / params, *known.tokens_per_param))
    for kind, value, low, high in checks:
        if not low / FAR_BEYOND <= value <= high * FAR_BEYOND:
            side, edge = ("below", low) if value < low else ("above", high)
            ratio = max(value / edge, edge / value)
            return (f"{format_quantity(value)} {kind} is {_times(ratio)} {side} the data behind law "
                    f"{laws.name!r}, a distance its interval does not measure")
    return None


def marked(prediction: Prediction | None, laws: LawSet, params: float | None = None, tokens: float | None = None,
           *, students: bool = False) -> Prediction | None:
    """`prediction` with `outside` set where its interval means nothing (`meaningless`)."""
    if prediction is None:
        return None
    reason = meaningless(laws, float(np.max(prediction.value)), params, tokens, students=students)
    if reason is None or prediction.outside is not None:
        return prediction
    from dataclasses import replace

    return replace(prediction, outside=reason)


def teacher_loss_note(laws: LawSet, loss: float, flag: str = "--teacher-loss") -> str:
    """What a teacher loss given as a number is taken as (the law's losses: nats/token of its tokenizer
    on its text), said by every command that takes one."""
    losses = laws.losses
    if losses.given:
        return (f"{flag} {loss:g} is taken as {losses.describe()}: the teacher's loss must be measured in that "
                "tokenizer on that text (`distillscale loss`)")
    return (f"law {laws.name!r} does not record what its losses are (the tokenizer and text of its runs: fit it with "
            f"--tokenizer and --text): {flag} must be in the tokenizer and on the text of the runs it was fitted on")


def smaller_teacher_warning(name: str, teacher_params: float | None, student_params: float) -> list[str]:
    """A teacher smaller than its student, in one line (none otherwise)."""
    if teacher_params is None or teacher_params >= student_params:
        return []
    return [f"{name} ({format_quantity(teacher_params)} parameters) is smaller than its "
            f"{format_quantity(student_params)}-parameter student"]


def pool_floor(laws: LawSet) -> float | None:
    """The fewest unique tokens a law can price a pool of (None: the law records no data range): a pool
    of U tokens is worth at most U (1 + R_D*) fresh tokens however often it is read (Muennighoff et al.'s
    decay, `laws.repetition`; R_D* the largest the law prices, a distilled student's or one trained
    alone), and where even that lies more than FAR_BEYOND times below the fewest tokens of the runs behind
    the law, every loss on the pool is the law carried into data it never saw (a 125M model's loss on one
    unique token came out at 76.75 nats/token, seven times a uniform guess). busbridge2025: 2.86B tokens
    / 10 / (1 + 37) = 7.53M tokens."""
    from distillscale.laws.repetition import PUBLISHED, distilled_repetition

    known = data_range(laws)
    if known is None or laws.supervised is None:
        return None
    decays = [(laws.supervised.repetition or PUBLISHED).R_D_star]
    if laws.distillation is not None:
        decays.append(distilled_repetition(laws.distillation).R_D_star)
    return known.tokens[0] / FAR_BEYOND / (1.0 + max(decays))


def check_pool(laws: LawSet, field: str, unique_tokens: float | None) -> None:
    """Refuse a pool of unique tokens (`field`: the setting that gave it) below `pool_floor`, in one line
    naming the bound and where it comes from. Every surface that prices a pool calls it first (`plan`,
    `predict`, `teacher`, their Python functions and the planner page)."""
    from distillscale.errors import ParameterError

    floor = pool_floor(laws)
    if unique_tokens is None or floor is None or unique_tokens >= floor:
        return
    known = data_range(laws)
    worth = known.tokens[0] / FAR_BEYOND / floor   # 1 + R_D*
    raise ParameterError(field, f"{{}} {format_count(unique_tokens)} is far below what law {laws.name!r} was measured "
                         f"on: read however often, a pool is worth at most {worth:.3g}x itself as fresh data (1 + "
                         f"R_D*), {format_count(unique_tokens * worth)} tokens here, over {FAR_BEYOND:g}x below the "
                         f"fewest tokens of its runs ({format_quantity(known.tokens[0])}), where its losses mean "
                         f"nothing: give at least {format_count(floor)} unique tokens, or a law fitted on runs this small")


def check_losses(laws: LawSet, losses: dict[str, float | None], fix: str) -> None:
    """Refuse, in one line, a result that would print a loss (`losses`, named) not below a uniform guess
    over the law's vocabulary (ln V): no model does worse than guessing, so the law is carried far
    outside its runs and its number means nothing. `fix`: what to change. The one check of every loss
    `plan`, `predict` and `teacher` print (their text, --json, Python objects and the planner page)."""
    from distillscale.errors import UserError

    uniform = laws.uniform_loss
    for name, loss in losses.items():
        if loss is not None and np.all(np.isfinite(loss)) and float(np.max(loss)) >= uniform:
            raise UserError(f"{name} would be {float(np.max(loss)):.4f} nats/token, no better than a uniform guess "
                            f"over the {laws.compute.n_vocab:,}-token vocabulary of law {laws.name!r} "
                            f"({uniform:.4f}): the law is carried far outside its runs there; {fix}")

